"""The category registry: every category file from the search path, checked once.

Search path: the shipped ``library/`` folder, then ``Settings.categories_paths``
in order. A later folder's category with the same id overrides an earlier one
(a notice is logged and kept in ``registry.notices``). Two files with the same id
in one folder are an error: the second is skipped.
"""

from __future__ import annotations

import builtins
import difflib
import logging
import re
import threading
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from comfy_gen.categories.loader import CategoryProblem, load_file
from comfy_gen.categories.model import TYPES, Category
from comfy_gen.categories.policy import filter_allowed
from comfy_gen.config import Settings, get_settings
from comfy_gen.errors import CategoryError, ConfigError

log = logging.getLogger(__name__)

#: The neutral starter library shipped with the package.
LIBRARY_DIR = Path(__file__).with_name("library")
_SKIP_NAMES = {"schema_version.yaml"}


class UnknownCategory(ConfigError):
    """No category has this id (``suggestions`` holds close ids)."""

    def __init__(self, category_id: str, suggestions: Sequence[str] = ()) -> None:
        hint = f"Did you mean: {', '.join(suggestions)}?" if suggestions else \
            "Run `comfy-gen categories list` to see the available ids."
        super().__init__(f"Unknown category {category_id!r}", hint=hint)
        self.category_id = category_id
        self.suggestions = list(suggestions)


class CategoryRegistry:
    """Categories by id, with listing, keyword search and load problems."""

    def __init__(self, categories: Iterable[Category] = (), *, problems: Iterable[CategoryProblem] = (),
                 notices: Iterable[str] = (), roots: Sequence[Path] = ()) -> None:
        self._by_id: dict[str, Category] = {c.id: c for c in categories}
        self.problems: builtins.list[CategoryProblem] = list(problems)
        self.notices: builtins.list[str] = list(notices)
        self.roots: builtins.list[Path] = list(roots)

    # --- lookup ---

    def __contains__(self, category_id: object) -> bool:
        return category_id in self._by_id

    def __iter__(self) -> Iterator[Category]:
        return iter(sorted(self._by_id.values(), key=lambda c: c.id))

    def __len__(self) -> int:
        return len(self._by_id)

    def ids(self) -> builtins.list[str]:
        return sorted(self._by_id)

    def get(self, category_id: str, *, tier: str | None = None) -> Category:
        """The category with this id; UnknownCategory (a ConfigError) with suggestions if none.

        With ``tier``, categories above it are treated as unknown (not revealed).
        """
        cat = self._by_id.get(category_id.lower())
        visible = self._visible(tier)
        if cat is None or (tier is not None and cat not in visible):
            raise UnknownCategory(category_id, self.suggest(category_id, tier=tier))
        return cat

    def suggest(self, word: str, *, tier: str | None = None, limit: int = 3) -> builtins.list[str]:
        """Close ids (difflib) for a misspelt id or keyword."""
        names: dict[str, str] = {}
        for cat in self._visible(tier):
            names.setdefault(cat.id, cat.id)
            for kw in cat.keyword_weights():
                names.setdefault(kw.replace(" ", "_"), cat.id)
        close = difflib.get_close_matches(word.lower(), list(names), n=limit * 2, cutoff=0.6)
        out: builtins.list[str] = []
        for name in close:
            if names[name] not in out:
                out.append(names[name])
        return out[:limit]

    def types(self) -> builtins.list[str]:
        return list(TYPES)

    def list(self, type: str | None = None, tier: str | None = None) -> builtins.list[Category]:  # noqa: A002
        """Categories sorted by type then id, optionally of one type and allowed at ``tier``."""
        if type is not None and type not in TYPES:
            raise ConfigError(f"Unknown category type {type!r}; expected one of {', '.join(TYPES)}")
        cats = [c for c in self._visible(tier) if type is None or c.type == type]
        return sorted(cats, key=lambda c: (TYPES.index(c.type), c.id))

    def search(self, query: str, *, tier: str | None = None) -> builtins.list[Category]:
        """Categories ranked by id/display-name matches and whole-word keyword hits."""
        q = _norm(query)
        if not q:
            return []
        scored = []
        for cat in self._visible(tier):
            score = 0.0
            names = {_norm(cat.id), _norm(cat.display_name)}
            if q in names:
                score += 3.0
            elif any(_has_phrase(n, q) or _has_phrase(q, n) for n in names):
                score += 2.0
            for kw, weight in cat.keyword_weights().items():
                kwn = _norm(kw)
                if _has_phrase(q, kwn) or _has_phrase(kwn, q):
                    score += weight
            if score:
                scored.append((-score, cat.id, cat))
        return [cat for _, _, cat in sorted(scored, key=lambda t: (t[0], t[1]))]

    def _visible(self, tier: str | None) -> builtins.list[Category]:
        cats = list(self._by_id.values())
        return cats if tier is None else filter_allowed(cats, tier)

    # --- problems ---

    @property
    def errors(self) -> builtins.list[CategoryProblem]:
        return [p for p in self.problems if p.severity == "error"]


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def _has_phrase(text: str, phrase: str) -> bool:
    return bool(phrase) and f" {phrase} " in f" {text} "


def search_roots(settings: Settings | None = None) -> list[Path]:
    """Shipped library first, then the user's folders (later ones override)."""
    settings = settings or get_settings()
    return [LIBRARY_DIR, *[Path(p).expanduser() for p in settings.categories_paths]]


def load_registry(settings: Settings | None = None, *, paths: Sequence[Path | str] | None = None,
                  strict: bool | None = None) -> CategoryRegistry:
    """Load every ``*.yaml``/``*.yml`` under the search path (``paths`` replaces it entirely).

    strict (default ``Settings.categories_strict``): raise CategoryError with every
    error instead of skipping bad files.
    """
    if paths is None or strict is None:
        settings = settings or get_settings()
    roots = [Path(p).expanduser() for p in paths] if paths is not None else search_roots(settings)
    strict = settings.categories_strict if strict is None else strict  # type: ignore[union-attr]
    found: dict[str, Category] = {}
    problems: list[CategoryProblem] = []
    notices: list[str] = []
    for root in roots:
        if not root.is_dir():
            problems.append(CategoryProblem(str(root), "", "category folder does not exist", "warning"))
            continue
        in_root: dict[str, Category] = {}
        for path in _category_files(root):
            cat, file_problems = load_file(path)
            problems += file_problems
            if cat is None:
                continue
            if cat.id in in_root:
                problems.append(CategoryProblem(str(path), "id", f"duplicate id {cat.id!r}, "
                                                f"already defined in {in_root[cat.id].source}"))
                continue
            in_root[cat.id] = cat
        for cid, cat in in_root.items():
            if cid in found:
                notice = f"category {cid!r} from {cat.source} overrides {found[cid].source}"
                log.warning(notice)
                notices.append(notice)
            found[cid] = cat
    problems += _reference_warnings(found.values())
    errors = [p for p in problems if p.severity == "error"]
    if errors and strict:
        raise CategoryError(f"{len(errors)} problem(s) in category files", errors,
                            hint="Fix the files, or set COMFY_GEN_CATEGORIES_STRICT=false to skip them.")
    for p in problems:
        if p.severity == "error":
            log.warning("skipped category file: %s", p)
        else:
            log.info("category warning: %s", p)
    return CategoryRegistry(found.values(), problems=problems, notices=notices, roots=roots)


def _category_files(root: Path) -> list[Path]:
    files = [p for pattern in ("*.yaml", "*.yml") for p in root.rglob(pattern)]
    return sorted(p for p in files if p.is_file() and not p.name.startswith(("_", "."))
                  and p.name not in _SKIP_NAMES)


def _reference_warnings(categories: Iterable[Category]) -> list[CategoryProblem]:
    cats = list(categories)
    known = {c.id for c in cats}
    out = []
    for cat in sorted(cats, key=lambda c: c.id):
        for key in ("conflicts_with", "requires", "enhances"):
            for i, ref in enumerate(getattr(cat, key)):
                if ref not in known:
                    out.append(CategoryProblem(str(cat.source), f"composition.{key}[{i}]",
                                               f"unknown category id {ref!r}", "warning"))
    return out


_cache: dict[tuple[object, ...], CategoryRegistry] = {}
_cache_lock = threading.Lock()


def get_registry(settings: Settings | None = None, *, reload: bool = False) -> CategoryRegistry:
    """The process-wide registry for these settings (loaded once; ``reload=True`` re-reads)."""
    settings = settings or get_settings()
    key = (tuple(str(p) for p in search_roots(settings)), settings.categories_strict)
    with _cache_lock:
        if reload or key not in _cache:
            _cache[key] = load_registry(settings)
        return _cache[key]


def clear_registry_cache() -> None:
    """Forget every cached registry (tests, or after editing category files)."""
    with _cache_lock:
        _cache.clear()


"""Prompt templates (dynamicprompts) and fixed seeds.

Templates use the dynamicprompts syntax: ``{a|b}`` alternatives and
``__name__`` wildcards read from ``wildcards/name.txt`` next to the recipe.
Every combination is produced (CombinatorialPromptGenerator), in the library's
order, so the same recipe gives the same prompts on every machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import warnings
from pathlib import Path
from typing import Any, Iterator

from comfy_gen.errors import UsageError
from comfy_gen.params import SEED_MAX

#: Upper bound on the prompts one template may produce (a typo in a wildcard
#: file should not silently turn into a million renders).
MAX_VARIANTS = 10_000

#: Bump when the seed derivation changes; old recipes would get new seeds.
SEED_SCHEME = "comfy-gen-seed:v1"


def derive_seeds(salt: str | int, count: int) -> list[int]:
    """``count`` distinct seeds in [0, 2^32-1] from sha256 of ``salt`` and a counter.

    Pure hashing (not ``random``) so every Python version and machine agrees.
    """
    seeds: list[int] = []
    seen: set[int] = set()
    counter = 0
    while len(seeds) < count:
        digest = hashlib.sha256(f"{SEED_SCHEME}:{salt}:{counter}".encode()).hexdigest()
        seed = int(digest[:8], 16) & SEED_MAX
        counter += 1
        if seed not in seen:  # collisions are rare, but duplicates would render twice
            seen.add(seed)
            seeds.append(seed)
    return seeds


def resolve_seeds(spec: Any, *, salt: str) -> list[int]:
    """A schema-valid seeds spec (list, range or count) -> the list of seeds."""
    if isinstance(spec, list):
        return [int(s) for s in spec]
    if "count" in spec:
        return derive_seeds(spec.get("base", salt), int(spec["count"]))
    return list(range(int(spec["start"]), int(spec["stop"]), int(spec.get("step", 1))))


def is_template(text: str) -> bool:
    """True when ``text`` may use dynamicprompts syntax (cheap pre-check)."""
    return "{" in text or "__" in text


def _walk_wildcards(node: Any) -> Iterator[str]:
    """Yield wildcard names in a dynamicprompts command tree (nested variants too)."""
    from dynamicprompts.commands import WildcardCommand

    if isinstance(node, WildcardCommand):
        if isinstance(node.wildcard, str):
            yield node.wildcard
        else:
            yield from _walk_wildcards(node.wildcard)
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        for f in dataclasses.fields(node):
            yield from _walk_wildcards(getattr(node, f.name))
    elif isinstance(node, (list, tuple)):
        for child in node:
            yield from _walk_wildcards(child)
    elif isinstance(node, dict):
        for child in node.values():
            yield from _walk_wildcards(child)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # dynamicprompts uses pyparsing names that pyparsing 3.2 deprecates; the
    # warnings are theirs, not the user's, and must not fail a strict test run.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


class PromptExpander:
    """Expands templates against one wildcards folder; caches per template."""

    def __init__(self, wildcards_dir: Path) -> None:
        self.wildcards_dir = wildcards_dir
        self._generator: Any = None
        self._manager: Any = None
        self._cache: dict[str, list[str]] = {}

    def _setup(self) -> None:
        if self._generator is not None:
            return
        # Imported here: dynamicprompts pulls in pyparsing (~0.1 s) and the CLI
        # must not pay for it at start-up.
        with _quiet():
            from dynamicprompts.generators import CombinatorialPromptGenerator
            from dynamicprompts.wildcards import WildcardManager

        # No folder -> no wildcards (and no dynamicprompts warning about it).
        folder = self.wildcards_dir if self.wildcards_dir.is_dir() else None
        self._manager = WildcardManager(folder)
        self._generator = CombinatorialPromptGenerator(self._manager)

    def check(self, template: str) -> list[str]:
        """Problems with a template: syntax errors and missing wildcard files."""
        if not is_template(template):
            return []
        self._setup()
        from dynamicprompts.parser.parse import parse

        try:
            with _quiet():
                tree = parse(template)
        except Exception as exc:  # pyparsing.ParseException: translate here, once
            return [f"invalid prompt template: {exc}"]
        problems = []
        for name in dict.fromkeys(_walk_wildcards(tree)):
            if not self._manager.get_values(name):
                problems.append(f"wildcard __{name}__ not found (no wildcards/{name}.txt next to the recipe)"
                                + self._available_hint())
        return problems

    def _available_hint(self) -> str:
        names = sorted(p.stem for p in self.wildcards_dir.glob("*.txt")) if self.wildcards_dir.is_dir() else []
        return f" (available: {', '.join(names)})" if names else ""

    def expand(self, template: str) -> list[str]:
        """Every combination of a checked template, duplicates dropped, order kept."""
        if not is_template(template):
            return [template]
        cached = self._cache.get(template)
        if cached is None:
            self._setup()
            try:
                with _quiet():
                    variants = self._generator.generate(template, max_prompts=MAX_VARIANTS + 1)
            except Exception as exc:  # parse errors surface here if check() was skipped
                raise UsageError(f"Invalid prompt template {template!r}: {exc}") from exc
            cached = list(dict.fromkeys(str(v) for v in variants))
            if len(cached) > MAX_VARIANTS:
                raise UsageError(f"Prompt template {template!r} expands to more than {MAX_VARIANTS} prompts")
            self._cache[template] = cached
        return list(cached)


def short_label(text: str, limit: int = 40) -> str:
    """A one-line label for a contact sheet or table (ellipsis when cut)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"

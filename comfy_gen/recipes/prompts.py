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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from comfy_gen.errors import UsageError
from comfy_gen.params import SEED_MAX

#: Upper bound on the prompts one template may produce (a typo in a wildcard
#: file should not silently turn into a million renders).
MAX_VARIANTS = 10_000

#: Upper bound on the characters of every prompt a recipe expands to (a long
#: template with a few alternatives multiplies its length by their count).
MAX_PROMPT_CHARS = 32 * 1024 * 1024

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


def seed_count(spec: Any) -> int:
    """How many seeds a schema-valid spec gives, computed without building them."""
    if isinstance(spec, list):
        return len(spec)
    if "count" in spec:
        return int(spec["count"])
    return len(range(int(spec["start"]), int(spec["stop"]), int(spec.get("step", 1))))


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


class PromptLimitExceeded(UsageError):
    """Prompts would exceed a count or size limit (found before building them)."""


@dataclass
class PromptBudget:
    """What the prompts of one axis may still add: prompt count and characters.

    Expansion stops as soon as either would be exceeded, so a template that
    would give millions of prompts costs only the budget, not the millions.
    """

    items: int
    chars: int = MAX_PROMPT_CHARS

    def __post_init__(self) -> None:
        self.limit = self.items

    def take(self, variants: int, chars: int) -> None:
        if variants > self.items:
            raise PromptLimitExceeded(f"prompts expand to more than {self.limit_text()}")
        if chars > self.chars:
            raise PromptLimitExceeded(f"prompts expand to more than {MAX_PROMPT_CHARS} characters in all")
        self.items -= variants
        self.chars -= chars

    def limit_text(self) -> str:
        return f"{self.limit} prompts (the item limit)"


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
            from dynamicprompts.enums import SamplingMethod
            from dynamicprompts.sampling_context import SamplingContext
            from dynamicprompts.wildcards import WildcardManager

        # No folder -> no wildcards (and no dynamicprompts warning about it).
        folder = self.wildcards_dir if self.wildcards_dir.is_dir() else None
        self._manager = WildcardManager(folder)
        # The sampling context (what CombinatorialPromptGenerator wraps) yields
        # prompts lazily, so expansion can stop at a budget instead of listing all.
        self._generator = SamplingContext(wildcard_manager=self._manager,
                                          default_sampling_method=SamplingMethod.COMBINATORIAL)

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

    @staticmethod
    def _over(template: str, limit: int, budget: PromptBudget) -> PromptLimitExceeded:
        if limit == MAX_VARIANTS:
            return PromptLimitExceeded(f"Prompt template {template!r} expands to more than {MAX_VARIANTS} prompts")
        return PromptLimitExceeded(f"prompts expand to more than {budget.limit_text()}")

    def count(self, template: str) -> int | None:
        """How many prompts a checked template produces (duplicates included), from
        its parse tree without generating them; None when the syntax used has no
        simple count (``{2$$a|b|c}`` picks, variables), where the lazy budget in
        :meth:`expand` still applies."""
        if not is_template(template):
            return 1
        self._setup()
        from dynamicprompts.parser.parse import parse

        try:
            with _quiet():
                return _count(parse(template), self._manager)
        except Exception:  # a template check() would reject: expand() reports it
            return None

    def _available_hint(self) -> str:
        names = sorted(p.stem for p in self.wildcards_dir.glob("*.txt")) if self.wildcards_dir.is_dir() else []
        return f" (available: {', '.join(names)})" if names else ""

    def expand(self, template: str, budget: PromptBudget | None = None) -> list[str]:
        """Every combination of a checked template, duplicates dropped, order kept.

        UsageError when the template gives more than MAX_VARIANTS prompts or more
        than ``budget`` allows; either is found while generating, never after.
        """
        budget = budget if budget is not None else PromptBudget(items=MAX_VARIANTS)
        if not is_template(template):
            budget.take(1, len(template))
            return [template]
        cached = self._cache.get(template)
        if cached is None:
            cached = self._generate(template, budget)
            self._cache[template] = cached
        budget.take(len(cached), sum(map(len, cached)))
        return list(cached)

    def _generate(self, template: str, budget: PromptBudget) -> list[str]:
        self._setup()
        limit = min(MAX_VARIANTS, budget.items)
        known = self.count(template)
        if known is not None and known > limit:
            raise self._over(template, limit, budget)
        seen: dict[str, None] = {}
        chars = 0
        try:
            with _quiet():
                # Combinations are counted before duplicates are dropped: a template
                # of repeated alternatives must not loop through 2^n copies.
                for produced, result in enumerate(self._generator.sample_prompts(template, None), 1):
                    text = str(result)
                    if produced > limit:
                        raise self._over(template, limit, budget)
                    if text in seen:
                        continue
                    seen[text] = None
                    chars += len(text)
                    if chars > budget.chars:
                        raise PromptLimitExceeded(f"prompts expand to more than {MAX_PROMPT_CHARS} characters in all")
        except UsageError:
            raise
        except Exception as exc:  # parse errors surface here if check() was skipped
            raise UsageError(f"Invalid prompt template {template!r}: {exc}") from exc
        return list(seen)


def _count(node: Any, manager: Any) -> int | None:
    from dynamicprompts.commands import LiteralCommand, SequenceCommand, VariantCommand, WildcardCommand

    if isinstance(node, LiteralCommand):
        return 1
    if isinstance(node, SequenceCommand):
        total = 1
        for token in node.tokens:
            part = _count(token, manager)
            if part is None:
                return None
            total *= part
        return total
    if isinstance(node, VariantCommand) and node.min_bound == node.max_bound == 1:
        parts = [_count(option.value, manager) for option in node.variants]
        return None if any(p is None for p in parts) else sum(p for p in parts if p is not None)
    if isinstance(node, WildcardCommand) and isinstance(node.wildcard, str) and not node.variables:
        return len(manager.get_values(node.wildcard))
    return None


def short_label(text: str, limit: int = 40) -> str:
    """A one-line label for a contact sheet or table (ellipsis when cut)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"

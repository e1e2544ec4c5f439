"""Splitting a large run into chunks of bounded size (plain functions, no Prefect).

A recipe of more than ``Settings.flow_chunk_size`` items runs as one subflow run
per chunk, so no flow run holds more task runs than the chunk size (the Prefect
server and its UI slow down with thousands of task runs in one flow run; see
docs/SCALING.md). Chunks are cut by *item number* (the 1-based position in the
recipe's expansion, ``RecipeItem.index + 1``), never by what is left to render,
so a chunk keeps its name ("items 1001-2000") across re-runs and can be run
alone with the flow's ``items`` parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from comfy_gen.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.recipes import RecipeItem


@dataclass(frozen=True)
class Chunk:
    """Items ``first``..``last`` (item numbers, inclusive) and those of them to render."""

    first: int
    last: int
    to_render: tuple["RecipeItem", ...]

    @property
    def label(self) -> str:
        return f"items {self.first}-{self.last}"


def item_number(item: "RecipeItem") -> int:
    return item.index + 1


def plan_chunks(items: Sequence["RecipeItem"], to_render: Sequence["RecipeItem"], size: int) -> list[Chunk]:
    """The chunks of ``items`` (``size`` consecutive items each) that have something to
    render; a chunk whose items are all stored gets no subflow run at all. Within a
    chunk, items keep their order in ``to_render`` (a submission order, e.g. grouped
    by model, applies inside each chunk)."""
    if size < 1:
        raise ValueError("chunk size must be at least 1")
    position = {id(it): n for n, it in enumerate(items)}
    buckets: dict[int, list["RecipeItem"]] = {}
    for it in to_render:
        buckets.setdefault(position[id(it)] // size, []).append(it)
    chunks = []
    for index in sorted(buckets):
        first, last = index * size, min((index + 1) * size, len(items)) - 1
        chunks.append(Chunk(item_number(items[first]), item_number(items[last]), tuple(buckets[index])))
    return chunks


def parse_item_range(spec: str) -> tuple[int, int]:
    """``"1001-2000"`` (or one number, ``"17"``) -> (1001, 2000); UsageError otherwise."""
    text = spec.strip()
    head, sep, tail = text.partition("-")
    try:
        first = int(head)
        last = int(tail) if sep else first
    except ValueError:
        raise UsageError(f"items: expected a range of item numbers like 1001-2000, got {spec!r}") from None
    if first < 1 or last < first:
        raise UsageError(f"items: {spec!r} is not a range of item numbers (1-based, first <= last)")
    return first, last


def select_items(items: Sequence["RecipeItem"], spec: str) -> tuple["RecipeItem", ...]:
    """The items whose number falls in ``spec`` (see ``parse_item_range``)."""
    first, last = parse_item_range(spec)
    chosen = tuple(it for it in items if first <= item_number(it) <= last)
    if not chosen:
        raise UsageError(f"items: {spec!r} selects none of the recipe's {len(items)} items")
    return chosen


__all__ = ["Chunk", "item_number", "parse_item_range", "plan_chunks", "select_items"]

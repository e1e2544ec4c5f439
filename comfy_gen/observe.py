"""Progress of a run as it happens, for whoever watches from the same process.

The render flow and ``comfy_gen.batch`` report here: a run started (``total``
items), an item is waiting for the GPU, rendering, validating or saving, an
item finished (its ``ItemResult``). Observers are plain callbacks registered
with ``observing``; nothing here knows Prefect. The CLI registers one around
the flow run it starts and draws a live display from it; a Prefect worker or
the API registers none, and every report is then a no-op (the gate is not even
wrapped).

Reports arrive on the threads doing the work (the flow's item threads), so an
observer must be quick and thread-safe. An observer that raises is logged and
ignored: watching a run must never fail it.

    with observing(my_observer):
        render_recipe(recipe="recipes/demo.yaml")
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import TYPE_CHECKING, Any, ContextManager, Iterator, Literal, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.results import ItemResult

log = logging.getLogger(__name__)

#: Where an item is: before the GPU gate, holding it (queued or running in
#: ComfyUI), then judging or keeping its output after the job finished.
ItemState = Literal["waiting", "rendering", "validating", "saving"]
ITEM_STATES: tuple[ItemState, ...] = ("waiting", "rendering", "validating", "saving")


class RunObserver(Protocol):
    """What a watcher of runs implements (all three; each must return quickly)."""

    def run_started(self, run_id: str, recipe: str, total: int) -> None: ...

    def item_state(self, item_id: str, state: ItemState) -> None: ...

    def item_finished(self, result: "ItemResult") -> None: ...


_observers: list[RunObserver] = []
_lock = threading.Lock()


@contextlib.contextmanager
def observing(observer: RunObserver) -> Iterator[RunObserver]:
    """Register ``observer`` for every run in this process while the block runs."""
    with _lock:
        _observers.append(observer)
    try:
        yield observer
    finally:
        with _lock:
            _observers.remove(observer)


def watched() -> bool:
    """Whether anyone observes (the callers skip work when not)."""
    return bool(_observers)


def _each(method: str, *args: Any) -> None:
    with _lock:
        observers = list(_observers)
    for observer in observers:
        try:
            getattr(observer, method)(*args)
        except Exception:  # noqa: BLE001 - a display bug must not fail a render
            log.debug("Run observer %r failed in %s", observer, method, exc_info=True)


def run_started(run_id: str, recipe: str, total: int) -> None:
    """A run planned ``total`` items (cached ones included)."""
    _each("run_started", run_id, recipe, total)


def item_state(item_id: str, state: ItemState) -> None:
    """Item ``item_id`` moved to ``state``."""
    _each("item_state", item_id, state)


def item_finished(result: "ItemResult") -> None:
    """An item is done: rendered, taken from storage, or failed (verdict ``error``)."""
    _each("item_finished", result)


def watch_gate(gate: ContextManager[Any], item_id: str, *, validating: bool) -> ContextManager[Any]:
    """``gate`` (the GPU bound) reporting ``item_id``'s state around it: waiting
    before it is entered, rendering while held, then validating (or saving when
    the item is not validated). ``gate`` itself when nobody observes."""
    if not watched():
        return gate
    return _WatchedGate(gate, item_id, "validating" if validating else "saving")


class _WatchedGate:
    def __init__(self, gate: ContextManager[Any], item_id: str, after: ItemState) -> None:
        self._gate = gate
        self._item_id = item_id
        self._after = after

    def __enter__(self) -> Any:
        item_state(self._item_id, "waiting")
        entered = self._gate.__enter__()
        item_state(self._item_id, "rendering")
        return entered

    def __exit__(self, *exc: Any) -> Any:
        try:
            return self._gate.__exit__(*exc)
        finally:
            item_state(self._item_id, self._after)


__all__ = ["ITEM_STATES", "ItemState", "RunObserver", "item_finished", "item_state", "observing", "run_started",
           "watch_gate", "watched"]

"""Model affinity: keep consecutive jobs on a backend on the same models.

ComfyUI reloads weights whenever a job's checkpoint (or UNET) or LoRA set
differs from the previous job's: 8 jobs alternating between two checkpoints
took 1.62x as long as the same 8 grouped, on a CPU; on a GPU each switch costs
seconds. Three pieces, none of which changes what is rendered or how it is
named (item ids, job keys, prompt ids, the cache and resume are untouched;
only the order of processing changes):

* ``graph_signature`` / ``item_signature``: the models a job loads.
* ``affinity_order``: a run's items grouped by signature, deterministic and
  stable (recipe order within a group, groups in order of first appearance).
* ``TurnOrder``: the order in which items waiting for the GPU bound get a slot.
  Submitting items in order is not enough: every item thread composes its job
  and then races for a free slot, and whichever thread wins goes next. Each
  item's *first* job waits until the items of the earlier groups of its lane
  (the backend it is placed on) are queued, so jobs reach each ComfyUI group by
  group. Within a group any ready item goes first, so the bound stays full.
* ``prefer``: which backend an item should lease, given the backends' states
  (the dispatcher calls it): a free one that already has the item's models.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ContextManager, TypeVar

from comfy_gen.errors import ExecutionInterrupted

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.params import GenerationParams

T = TypeVar("T")

#: The models a job loads: sorted ``"<input>=<file>[@strengths]"`` strings; () = none.
ModelSignature = tuple[str, ...]

#: Inputs that name the weights ComfyUI keeps loaded between jobs. VAEs and text
#: encoders are small next to a checkpoint and are left out on purpose.
_MODEL_INPUTS = ("ckpt_name", "unet_name", "lora_name")
_LORA_STRENGTHS = ("strength_model", "strength_clip")


def graph_signature(graph: Mapping[str, Any]) -> ModelSignature:
    """The checkpoints/UNETs and LoRAs an API-format graph loads (pure).

    A LoRA carries its strengths: ComfyUI re-patches the weights when one changes.
    """
    found: set[str] = set()
    for node in graph.values():
        inputs = node.get("inputs") if isinstance(node, Mapping) else None
        if not isinstance(inputs, Mapping):
            continue
        for name in _MODEL_INPUTS:
            value = inputs.get(name)
            if isinstance(value, str):  # a link is a list: not a file name
                entry = f"{name}={value}"
                if name == "lora_name":
                    entry += "@" + "/".join(str(inputs[k]) for k in _LORA_STRENGTHS if k in inputs)
                found.add(entry)
    return tuple(sorted(found))


def item_signature(workflow: Mapping[str, Any], params: "GenerationParams") -> ModelSignature:
    """The signature of ``workflow`` composed with ``params`` (pure).

    Only the checkpoint and the LoRAs are composed: no other parameter changes a
    model loader, so items sharing them share one composition (see ``Signatures``).
    """
    from comfy_gen.params import GenerationParams
    from comfy_gen.workflow import apply_params

    models_only = GenerationParams(checkpoint=params.checkpoint, loras=params.loras)
    return graph_signature(apply_params(dict(workflow), models_only, rng=random.Random(0)))


class Signatures:
    """``item_signature`` memoised per (workflow name, checkpoint, LoRAs): a
    20,000-item recipe over three checkpoints composes three graphs, not 20,000."""

    def __init__(self, workflow: Callable[[str], Mapping[str, Any]]) -> None:
        self._workflow = workflow
        self._memo: dict[tuple[Any, ...], ModelSignature] = {}

    def __call__(self, workflow_name: str, params: "GenerationParams") -> ModelSignature:
        key = (workflow_name, params.checkpoint, params.loras)
        if key not in self._memo:
            self._memo[key] = item_signature(self._workflow(workflow_name), params)
        return self._memo[key]


def affinity_order(items: Iterable[T], key: Callable[[T], Hashable]) -> list[T]:
    """``items`` grouped by ``key``: groups in order of first appearance, the
    original order within each group (a stable, deterministic reordering)."""
    groups: dict[Hashable, list[T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return [item for group in groups.values() for item in group]


# --- backend choice ---------------------------------------------------------------


@dataclass(frozen=True)
class BackendState:
    """What ``prefer`` needs to know about one candidate backend."""

    name: str
    outstanding: int                            # jobs queued or rendering there (ours)
    capacity: int                               # the most it may have outstanding
    last_models: ModelSignature | None = None   # signature of the last job sent there

    @property
    def free(self) -> bool:
        return self.outstanding < self.capacity


def prefer(candidates: Sequence[BackendState], models: ModelSignature | None) -> BackendState | None:
    """The backend an item with ``models`` should go to; None without candidates.

    A backend with a free slot whose last job loaded the same models; else the
    free one with the least outstanding work (a free slot beats a warm model:
    the bound must stay full); with no free slot, the same rule over all of them
    (the caller waits there). Ties go to the earlier candidate (deterministic).
    """
    pool = [c for c in candidates if c.free] or list(candidates)
    if not pool:
        return None
    warm = [c for c in pool if models and c.last_models == models]
    return min(warm or pool, key=lambda c: (c.outstanding, -c.capacity))


# --- turn order at the GPU gate ----------------------------------------------------


class _Lane:
    def __init__(self, groups: Sequence[Sequence[str]]) -> None:
        self.groups = [list(g) for g in groups]
        self.left = [len(g) for g in self.groups]   # items per group whose turn has not passed
        self.head = 0                     # the first group with an item whose turn has not passed
        self.since: float | None = None   # when ``head`` last moved (or the lane's first wait)


class TurnOrder:
    """Items' first GPU-gate entries, group by group per lane (one lane per backend).

    ``started(id)`` when an item begins; ``gate(id, inner)`` wraps the item's GPU
    gate: its first entry waits until every item of the earlier groups of its
    lane has passed its turn. Within a group (items with the same models) any
    ready item goes first, so a slow-starting item never idles the GPU; between
    groups the order is strict, so each backend switches models once per group.
    A turn passes (``passed(id)``) once the item's first job is queued, when it
    leaves the gate, or when the item ends without using it (cached, failed,
    cancelled). Later entries (refinement attempts, retries) never wait.

    Safety net: items of the open group that have not even started ``stall``
    seconds after the group opened (a task that never ran) are skipped, so a
    lane can be delayed but never blocked. Waits end with ``ExecutionInterrupted``
    once ``cancelled`` is set.
    """

    def __init__(self, lanes: Mapping[str, Sequence[Sequence[str]]], *,
                 cancelled: threading.Event | None = None, stall: float = 30.0) -> None:
        self._lanes = {name: _Lane(groups) for name, groups in lanes.items()}
        self._where = {item_id: (name, index) for name, groups in lanes.items()
                       for index, group in enumerate(groups) for item_id in group}
        self._passed: set[str] = set()
        self._started: set[str] = set()
        self._cond = threading.Condition()
        self._cancelled = cancelled or threading.Event()
        self._stall = stall

    @classmethod
    def of(cls, items: Iterable[T], *, item_id: Callable[[T], str], lane: Callable[[T], str],
           group: Callable[[T], Hashable] | None = None, cancelled: threading.Event | None = None,
           stall: float = 30.0) -> "TurnOrder":
        """Lanes from ``items`` in the order given (the submission order); consecutive
        items of a lane with the same ``group`` key form a group (no key: one item each)."""
        lanes: dict[str, list[list[str]]] = {}
        keys: dict[str, Hashable] = {}
        for n, item in enumerate(items):
            name, key = lane(item), (group(item) if group is not None else n)
            groups = lanes.setdefault(name, [])
            if not groups or keys[name] != key:
                groups.append([])
            groups[-1].append(item_id(item))
            keys[name] = key
        return cls(lanes, cancelled=cancelled, stall=stall)

    def started(self, item_id: str) -> None:
        with self._cond:
            self._started.add(item_id)

    def passed(self, item_id: str) -> None:
        """The item's turn is over (idempotent); the next group of its lane may go."""
        with self._cond:
            if item_id not in self._passed and item_id in self._where:
                self._pass(item_id)
                self._cond.notify_all()

    def wait(self, item_id: str) -> None:
        """Block until ``item_id``'s group is open (at once for an unknown or passed item)."""
        with self._cond:
            name, index = self._where.get(item_id, ("", -1))
            lane = self._lanes.get(name)
            while lane is not None and item_id not in self._passed and lane.head < index:
                if self._cancelled.is_set():
                    raise ExecutionInterrupted("The run was cancelled before this job was queued")
                now = time.monotonic()
                if lane.since is None:  # not from construction: preflight may take minutes
                    lane.since = now
                if now - lane.since > self._stall:
                    # Items of the open group that never started: skip them, do not block the lane.
                    for other in lane.groups[lane.head]:
                        if other not in self._passed and other not in self._started:
                            self._pass(other)
                    lane.since = now
                    continue
                self._cond.wait(timeout=0.25)  # wakes on passed(); the timeout re-checks cancel/stall

    def gate(self, item_id: str, inner: ContextManager[Any]) -> ContextManager[Any]:
        """``inner`` (the GPU gate), entered for the first time only on ``item_id``'s turn."""
        return _TurnGate(self, item_id, inner)

    def _pass(self, item_id: str) -> None:
        self._passed.add(item_id)
        name, index = self._where[item_id]
        lane = self._lanes[name]
        lane.left[index] -= 1
        moved = False
        while lane.head < len(lane.groups) and lane.left[lane.head] == 0:
            lane.head += 1
            moved = True
        if moved:
            lane.since = time.monotonic()


class _TurnGate:
    def __init__(self, turns: TurnOrder, item_id: str, inner: ContextManager[Any]) -> None:
        self._turns, self._id, self._inner = turns, item_id, inner

    def __enter__(self) -> Any:
        self._turns.wait(self._id)
        try:
            return self._inner.__enter__()
        except BaseException:
            self._turns.passed(self._id)
            raise

    def __exit__(self, *exc: Any) -> Any:
        try:
            return self._inner.__exit__(*exc)
        finally:
            self._turns.passed(self._id)


__all__ = ["BackendState", "ModelSignature", "Signatures", "TurnOrder", "affinity_order", "graph_signature",
           "item_signature", "prefer"]

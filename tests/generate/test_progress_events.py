"""The seed's progress dictionaries: one pure mapping, shared by the CLI and the MCP server."""

from __future__ import annotations

import pytest

from comfy_gen.comfyui import events as ev
from comfy_gen.progress_events import SEED_TYPES, SeedEvents, seed_event

P = "p1"


@pytest.mark.parametrize(("event", "expected"), [
    pytest.param(ev.Status(sid="abc"), {"type": "connected", "client_id": "abc"}, id="connected"),
    pytest.param(ev.ExecutionStart(prompt_id=P), {"type": "start", "prompt_id": P}, id="start"),
    pytest.param(ev.Executing(prompt_id=P, node="5"), {"type": "node", "node": "5", "status": "executing"},
                 id="node"),
    pytest.param(ev.Executed(prompt_id=P, node="7"), {"type": "node", "message": "Completed node 7"},
                 id="executed"),
    pytest.param(ev.Progress(prompt_id=P, node="5", step=15, max=30, eta_seconds=12.54),
                 {"type": "progress", "step": 15, "max_steps": 30, "percent": 50, "eta_seconds": 12.5,
                  "message": "Sampling: 15/30 steps (50%)"}, id="progress"),
    pytest.param(ev.ExecutionCached(prompt_id=P, nodes=("1", "2")),
                 {"type": "cached", "cached_nodes": ["1", "2"], "count": 2}, id="cached"),
    pytest.param(ev.ExecutionError(prompt_id=P, node_id="5", node_type="KSampler", exception_type="OOM",
                                   exception_message="out of memory"),
                 {"type": "error", "node": "5", "message": "Error in KSampler 5: OOM: out of memory"}, id="error"),
    pytest.param(ev.ExecutionInterrupted(prompt_id=P), {"type": "error", "message": "Execution interrupted"},
                 id="interrupted"),
])
def test_seed_event_shapes(event: ev.Event, expected: dict) -> None:
    got = seed_event(event)
    assert got is not None and got["type"] in SEED_TYPES and "message" in got
    assert {k: got[k] for k in expected} == expected


def test_events_without_a_seed_shape_are_dropped() -> None:
    assert seed_event(ev.Status(queue_remaining=2)) is None
    assert seed_event(ev.ExecutionSuccess(prompt_id=P)) is None
    assert seed_event(ev.Preview(prompt_id=P)) is None
    assert seed_event(ev.Executing(node=None)) is None  # no prompt: not a completion


def test_stream_says_connected_once_and_measures_elapsed() -> None:
    now = iter([10.0, 10.5, 13.25, 20.0, 21.0])
    stream = SeedEvents(clock=lambda: next(now))
    out = [d for e in (ev.ExecutionStart(prompt_id=P), ev.Progress(prompt_id=P, step=1, max=2),
                       ev.Executing(prompt_id=P, node=None), ev.Status(sid="x"),
                       ev.Status(queue_remaining=0)) for d in stream(e)]
    assert [d["type"] for d in out] == ["connected", "start", "progress", "complete"]
    assert out[-1]["elapsed_seconds"] == 3.25 and out[-1]["message"] == "Generation complete in 3.2s"

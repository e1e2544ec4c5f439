"""The terminal progress of `comfy-gen run`: the display's model fed by a real flow
run (comfy_gen.observe), its plain lines off a terminal, its live screen under a
pseudo-terminal, and per-item Prefect log lines only with -v."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from comfy_gen import observe
from comfy_gen.cli.progress import RunDisplay, RunProgress
from comfy_gen.config import reset_settings_cache
from comfy_gen.results import ItemResult

from tests.pty_run import run_in_pty, screen_lines

SMALL = """
name: {name}
workflow: tiny-sd15.json
prompts: [a lighthouse, a lake, a fox]
seeds: [1, 2]
"""

ITEM_LINE = re.compile(r"^\[(\d+)/(\d+)\] item-\d{4}-[0-9a-f]{12} ")


class Recorder:
    """A second observer: every state change, and the display's model at each finish."""

    def __init__(self, display: RunDisplay) -> None:
        self.display = display
        self.states: dict[str, list[str]] = {}
        self.snapshots = []
        self._lock = threading.Lock()

    def run_started(self, run_id: str, recipe: str, total: int) -> None:
        pass

    def item_state(self, item_id: str, state: str) -> None:
        with self._lock:
            self.states.setdefault(item_id, []).append(state)

    def item_finished(self, result: ItemResult) -> None:
        self.snapshots.append(self.display.model.snapshot())


# -- the model, on a clock the test turns -----------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _result(item_id: str, verdict: str, source: str = "rendered") -> ItemResult:
    return ItemResult(item_id=item_id, index=0, verdict=verdict, source=source)  # type: ignore[arg-type]


def test_model_counts_states_pass_rate_and_eta_from_measured_job_times() -> None:
    clock = Clock()
    model = RunProgress(clock=clock)
    assert model.snapshot().total is None and model.snapshot().eta_seconds is None
    model.run_started("r1", "demo", 6)
    model.item_finished(_result("c", "passed", source="cached"))   # stored earlier: no job, no rate
    for item in ("a", "b", "d"):
        model.item_state(item, "waiting")
    model.item_state("a", "rendering")
    model.item_state("b", "rendering")
    snap = model.snapshot()
    assert snap.states == {"waiting": 1, "rendering": 2, "validating": 0, "saving": 0}
    assert snap.done == 1 and snap.cached == 1 and snap.eta_seconds is None  # no job time measured yet
    clock.now += 4.0
    model.item_state("a", "validating")   # a held the GPU 4 s, with 2 jobs on it at once
    snap = model.snapshot()
    assert snap.states == {"waiting": 1, "rendering": 1, "validating": 1, "saving": 0}
    assert snap.eta_seconds == pytest.approx(5 * 4.0 / 2)   # 5 outstanding x 4 s / 2 at once
    clock.now += 1.0
    model.item_finished(_result("a", "passed"))
    model.item_state("b", "validating")   # 5 s
    clock.now += 1.0
    model.item_finished(_result("b", "best_effort"))
    snap = model.snapshot()
    assert snap.done == 3 and snap.counts == {"passed": 2, "best_effort": 1}
    assert snap.pass_rate == pytest.approx(0.5)   # among rendered, validated items, as the run summary
    # GPU: 3 outstanding x 4.5 s / 2 = 6.75 s; finish rate: 1 item per s -> 3 s; the slower wins.
    assert snap.eta_seconds == pytest.approx(6.75)
    model.item_finished(_result("d", "error", source="none"))
    model.item_finished(_result("e", "unvalidated"))
    clock.now += 10.0
    model.item_finished(_result("f", "passed"))
    final = model.snapshot()
    assert final.done == 6 and final.failed == 1 and final.eta_seconds == 0.0
    assert final.states == {"waiting": 0, "rendering": 0, "validating": 0, "saving": 0}
    clock.now += 30.0
    assert model.snapshot().elapsed == final.elapsed   # the clock stops with the last item


# -- a real flow run feeds the display ----------------------------------------------

@pytest.mark.usefixtures("prefect_harness")
def test_a_flow_run_drives_the_display_model_and_its_plain_lines(
        emulator_factory, use_backend, write_recipe, monkeypatch, tiny_clip_dir) -> None:
    from flows.render_recipe import render_recipe

    emu = emulator_factory()
    use_backend(emu.url)
    monkeypatch.setenv("COMFY_GEN_CLIP_MODEL", str(tiny_clip_dir))
    reset_settings_cache()
    path = write_recipe("watched", """
        name: watched
        workflow: tiny-sd15.json
        prompts: [a red car, a blue boat]
        seeds: [1, 2]
        validation: {enabled: true, positive_threshold: 0}
    """)
    out = io.StringIO()
    with RunDisplay(out, live=False) as display:
        recorder = Recorder(display)
        with observe.observing(recorder):
            summary = render_recipe(recipe=str(path))
    assert not observe.watched()   # both observers are gone with their blocks

    snap = display.model.snapshot()
    assert (snap.recipe, snap.total, snap.done) == ("watched", 4, 4)
    assert snap.counts == summary["counts"] == {"passed": 4}
    assert snap.pass_rate == summary["pass_rate"] == 1.0
    assert snap.states == {"waiting": 0, "rendering": 0, "validating": 0, "saving": 0}
    # Every item went through the GPU gate and then validation, in that order.
    assert sorted(recorder.states.values()) == [["waiting", "rendering", "validating"]] * 4
    # An ETA from measured job times while items were outstanding.
    assert [s.done for s in recorder.snapshots] == [1, 2, 3, 4]
    assert all(s.eta_seconds is not None and s.eta_seconds > 0 for s in recorder.snapshots[:-1])
    assert recorder.snapshots[-1].eta_seconds == 0.0

    lines = out.getvalue().splitlines()
    assert len(lines) == 4, lines   # one line per finished item, nothing else
    assert [ITEM_LINE.match(line).group(1, 2) for line in lines] == [("1", "4"), ("2", "4"), ("3", "4"), ("4", "4")]
    assert all("Passed: CLIP" in line for line in lines)
    assert all("ETA" in line for line in lines[:-1]) and "ETA" not in lines[-1]

    # Stored items finish at once and say so; no GPU state is reported for them.
    out = io.StringIO()
    with RunDisplay(out, live=False) as display:
        recorder = Recorder(display)
        with observe.observing(recorder):
            render_recipe(recipe=str(path))
    assert display.model.snapshot().cached == 4 and recorder.states == {}
    assert all("(stored earlier)" in line for line in out.getvalue().splitlines())


def test_nobody_watching_leaves_the_gate_as_it_is() -> None:
    import contextlib

    gate = contextlib.nullcontext()
    assert observe.watch_gate(gate, "x", validating=True) is gate


# -- the command, as a user runs it -------------------------------------------------

def _cli_env(emu_url: str) -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ)
    # The session's Prefect test server: `run` then starts none of its own.
    env.update(PREFECT_API_URL=str(PREFECT_API_URL.value()), COMFY_GEN_COMFYUI_URL=emu_url,
               PREFECT_LOGGING_LEVEL="INFO", COLUMNS="120", TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    return env


def _run(path: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "comfy_gen.cli", "run", str(path), *extra], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.usefixtures("prefect_harness")
def test_per_item_log_lines_only_with_verbose_and_plain_lines_off_a_terminal(
        emulator_factory, write_recipe) -> None:
    emu = emulator_factory()
    env = _cli_env(emu.url)
    path = write_recipe("plain", SMALL.format(name="plain"))

    quiet = _run(path, env)
    items = [line for line in quiet.stdout.splitlines() if ITEM_LINE.match(line)]
    assert len(items) == 6 and items[-1].startswith("[6/6] ")
    assert "Recipe plain: 6 items (unvalidated 6)" in quiet.stdout
    assert "Task run 'item-" not in quiet.stderr + quiet.stdout
    assert "Flow run 'recipe-plain-" in quiet.stderr and "Done: 6 items" in quiet.stderr   # flow-level lines stay

    verbose = _run(path, env, "--force", "-v")
    assert len([line for line in verbose.stdout.splitlines() if ITEM_LINE.match(line)]) == 6
    task_lines = [line for line in verbose.stderr.splitlines() if "Task run 'item-" in line]
    assert len(task_lines) == 6, verbose.stderr[-3000:]
    assert len(verbose.stderr.splitlines()) >= len(quiet.stderr.splitlines()) + 6

    # --json keeps stdout for the JSON; the progress lines move to stderr.
    as_json = _run(path, env, "--json")
    assert as_json.stdout.lstrip().startswith("{")
    assert len([line for line in as_json.stderr.splitlines() if ITEM_LINE.match(line)]) == 6


@pytest.mark.usefixtures("prefect_harness")
def test_live_display_on_a_terminal_ends_with_the_totals(emulator_factory, write_recipe) -> None:
    emu = emulator_factory()
    path = write_recipe("live", SMALL.format(name="live"))
    code, text = run_in_pty([sys.executable, "-m", "comfy_gen.cli", "run", str(path)], env=_cli_env(emu.url),
                            timeout=300)
    lines = screen_lines(text)
    assert code == 0, "\n".join(lines[-40:])
    bars = [line for line in lines if re.search(r"\d+/6 items", line)]
    assert bars and bars[-1].startswith("live ") and bars[-1].endswith("6/6 items"), bars[-3:]
    status = [line for line in lines if "pass rate" in line]
    assert status[-1].startswith("rendering 0 · waiting for GPU 0 · validating 0"), status[-1]
    assert "ETA" not in status[-1]   # nothing is outstanding
    assert any("Recipe live: 6 items (unvalidated 6)" in line for line in lines)
    # No per-item log lines and no plain item lines on a terminal: the display says it.
    assert not any("Task run 'item-" in line or ITEM_LINE.match(line) for line in lines)

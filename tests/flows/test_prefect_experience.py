"""What a Prefect user sees: re-runs that touch nothing, stage task runs, one line per
expected failure, run names, progress, and hints for the context (issue #10)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from comfy_gen.config import reset_settings_cache

pytestmark = pytest.mark.usefixtures("prefect_harness")

TWO_ITEMS = """
name: {name}
workflow: tiny-sd15.json
prompts: [a red car, a blue boat]
seeds: [5]
"""


def _render(path: Path, **kwargs: Any) -> dict[str, Any]:
    from flows.render_recipe import render_recipe

    return render_recipe(recipe=str(path), **kwargs)


def _wait_for(read: Callable[[], Any], done: Callable[[Any], bool], what: str, timeout: float = 60) -> Any:
    """Poll the Prefect API until ``done(read())``: the server records runs and logs
    asynchronously, from events."""
    deadline = time.monotonic() + timeout
    value = read()
    while not done(value):
        assert time.monotonic() < deadline, f"{what}: still {value!r}"
        time.sleep(0.2)
        value = read()
    return value


def _task_runs(flow_run_id: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        return list(client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])), limit=200))


def _children(runs: list[Any]) -> dict[str, list[str]]:
    """Item task run name -> the sorted names of its nested stage runs."""
    items = {str(r.id): r.name for r in runs if r.name.startswith("item-")}
    nested: dict[str, list[str]] = {name: [] for name in items.values()}
    for run in runs:
        for parent in run.task_inputs.get("__parents__", []):
            if str(parent.id) in items:
                nested[items[str(parent.id)]].append(run.name)
    return {name: sorted(children) for name, children in nested.items()}


def test_unchanged_rerun_needs_neither_comfyui_nor_the_model(
        emulator_factory, use_backend, write_recipe, monkeypatch, tiny_clip_dir, tmp_path):
    emu = emulator_factory()
    use_backend(emu.url)
    monkeypatch.setenv("COMFY_GEN_CLIP_MODEL", str(tiny_clip_dir))
    reset_settings_cache()
    body = TWO_ITEMS.format(name="judged") + "validation: {enabled: true, positive_threshold: 0}\n"
    path = write_recipe("judged", body)
    first = _render(path)
    assert first["counts"] == {"passed": 2} and first["jobs"] == 2

    # Nothing to render: no ComfyUI (stopped) and no model (gone) is needed.
    emu.stop()
    monkeypatch.setenv("COMFY_GEN_CLIP_MODEL", str(tmp_path / "no-model-here"))
    reset_settings_cache()
    again = _render(path)
    assert again["cached"] == 2 and again["jobs"] == 0 and again["counts"] == {"passed": 2}

    # A stricter threshold re-judges the stored scores, still without the model.
    path.write_text(body.replace("positive_threshold: 0", "positive_threshold: 100"))
    stricter = _render(path)
    assert stricter["cached"] == 2 and stricter["counts"] == {"best_effort": 2}
    # No item task run: the stored items were decided before any task started.
    assert not [r for r in _task_runs(stricter["flow_run_id"]) if r.name.startswith("item-")]


def test_stages_are_nested_task_runs_when_on_and_absent_when_off(
        emulator_factory, use_backend, write_recipe, monkeypatch, tiny_clip_dir):
    emu = emulator_factory()
    use_backend(emu.url)
    monkeypatch.setenv("COMFY_GEN_CLIP_MODEL", str(tiny_clip_dir))
    reset_settings_cache()
    body = TWO_ITEMS.format(name="stages") + """
validation: {enabled: true, positive_threshold: 100}
refinement: {strategy: progressive, max_attempts: 2}
stage_tasks: on
"""
    path = write_recipe("stages", body)
    summary = _render(path)
    assert summary["counts"] == {"best_effort": 2} and summary["jobs"] == 4
    attempt = ["compose", "queue", "await", "validate"]
    expected = sorted(attempt + ["refine"] + attempt + ["store"])
    runs = _wait_for(lambda: _task_runs(summary["flow_run_id"]),
                     lambda runs: len(runs) == 1 + 2 * (1 + len(expected))
                     and all(r.state and r.state.is_final() for r in runs), "task runs recorded")
    nested = _children(runs)
    assert sorted(nested) == sorted(r.name for r in runs if r.name.startswith("item-"))
    assert all(stages == expected for stages in nested.values()), nested
    assert all(r.state.is_completed() for r in runs)

    # off (here from the setting; the recipe says auto): one task run per item, same results.
    path.write_text(body.replace("stage_tasks: on", "stage_tasks: auto"))
    monkeypatch.setenv("COMFY_GEN_STAGE_TASKS", "off")
    reset_settings_cache()
    plain = _render(path, force=True)
    assert plain["counts"] == {"best_effort": 2} and plain["jobs"] == 4
    runs = _wait_for(lambda: _task_runs(plain["flow_run_id"]), lambda runs: len(runs) >= 3, "task runs")
    assert sorted(r.name.split("-")[0] for r in runs) == ["item", "item", "preflight"]


def test_an_expected_item_failure_is_a_failed_state_with_one_line_not_tracebacks(
        emulator_factory, use_backend, write_recipe):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    from comfy_gen.errors import BatchFailed

    emu = emulator_factory()
    use_backend(emu.url)
    emu.faults.error_node_class = "VAEDecode"
    path = write_recipe("faulty", TWO_ITEMS.format(name="faulty"))
    with pytest.raises(BatchFailed) as info:
        _render(path)
    summary = info.value.summary
    assert summary is not None and summary["counts"] == {"error": 2}
    runs = _wait_for(lambda: _task_runs(summary["flow_run_id"]),
                     lambda runs: sum(bool(r.state and r.state.is_failed()) for r in runs) >= 4, "failed runs recorded")
    items = [r for r in runs if r.name.startswith("item-")]
    assert len(items) == 2
    for item in items:
        # Failed at once (not retried: retrying cannot fix a node error), one line, the node named.
        assert item.state.is_failed() and item.run_count == 1
        assert "VAEDecode" in item.state.message and "\n" not in item.state.message
    assert sorted(r.name for r in runs if r.state.is_failed()) == ["await", "await", *sorted(r.name for r in items)]

    def logs() -> list[Any]:
        with get_client(sync_client=True) as client:
            return list(client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[summary["flow_run_id"]]))))

    records = _wait_for(logs, lambda recs: sum("failed: " in r.message for r in recs) >= 2, "item log lines")
    with_traceback = [r for r in records if "Traceback" in r.message]
    # Only the flow's own BatchFailed carries a traceback; no item or stage logs one.
    assert len(with_traceback) <= 1 and all(r.task_run_id is None for r in with_traceback), with_traceback


def test_nightly_runs_are_named_by_date_and_progress_says_what_items_do(
        emulator_factory, use_backend, write_recipe):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter
    from prefect.client.schemas.filters import FlowRunFilterParentFlowRunId

    from flows.render_recipe import render_nightly

    emu = emulator_factory()
    use_backend(emu.url)
    path = write_recipe("night", TWO_ITEMS.format(name="night"))
    state = render_nightly(recipes=[str(path)], return_state=True)
    assert state.is_completed()
    nightly_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        nightly = client.read_flow_run(nightly_id)
        (child,) = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[nightly_id])))
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[child.id])))
    today = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    assert nightly.name.startswith(f"nightly-{today}")
    (progress,) = [a for a in artifacts if a.type == "progress"]
    assert progress.description == "2 of 2 items done"


def test_errors_raised_inside_a_deployment_name_settings_not_cli_flags(
        use_backend, write_recipe, monkeypatch, tmp_path):
    from comfy_gen.errors import ComfyUIUnavailable, ValidatorUnavailable, hint_context
    from comfy_gen.stack import free_port

    use_backend(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("COMFY_GEN_HTTP_RETRIES", "1")
    reset_settings_cache()
    path = write_recipe("nowhere", TWO_ITEMS.format(name="nowhere"))
    with pytest.raises(ComfyUIUnavailable) as cli:
        _render(path)
    assert "--url" in (cli.value.hint or "")
    with hint_context("deployment"), pytest.raises(ComfyUIUnavailable) as deployed:
        _render(path)
    hint = deployed.value.hint or ""
    assert "COMFY_GEN_COMFYUI_URL" in hint and "worker" in hint and "--url" not in hint

    monkeypatch.setenv("COMFY_GEN_CLIP_MODEL", str(tmp_path / "no-model-here"))
    reset_settings_cache()
    from comfy_gen.validation.clip import precheck

    with hint_context("deployment"), pytest.raises(ValidatorUnavailable) as clip:
        precheck(str(tmp_path / "no-model-here"))
    hint = clip.value.hint or ""
    assert "allow_skip" in hint and "COMFY_GEN_CLIP_MODEL" in hint and "--no-validate" not in hint

"""Run planning, per-item batch work and the run record, without Prefect.

``plan_run`` / ``run_item`` / ``finish_run`` are plain functions: the flow, and
later the API and MCP, call them. These tests drive them against the emulator.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from comfy_gen.batch import BatchRun, run_item
from comfy_gen.config import get_settings, reset_settings_cache
from comfy_gen.errors import ConfigError, PathNotAllowed, UsageError
from comfy_gen.recipes.expand import legacy_item_id
from comfy_gen.results import ItemResult, RunSummary, error_result, summarize
from comfy_gen.runs import finish_run, plan_run

RECIPE = """
name: plan
workflow: tiny-sd15.json
prompts: [a red kite, a green door]
seeds: [1, 2]
output: {contact_sheet: true}
"""


@pytest.fixture()
def recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "recipes"
    folder.mkdir()
    monkeypatch.setenv("COMFY_GEN_RECIPES_DIR", str(folder))
    reset_settings_cache()
    path = folder / "plan.yaml"
    path.write_text(textwrap.dedent(RECIPE).lstrip())
    return path


@pytest.fixture()
def emu(tmp_path: Path, use_backend):
    from comfy_gen.emulator import Emulator

    emulator = Emulator(port=0, step_time=0.005, data_dir=tmp_path / "emu").start()
    use_backend(emulator.url)
    yield emulator
    emulator.stop()


def _run(plan, run_id: str = "r1") -> BatchRun:
    return BatchRun(settings=get_settings(), recipe=plan.recipe, run_id=run_id,
                    layout=(plan.rows_axis, plan.cols_axis))


def test_plan_run_expands_in_order_and_checks_options_before_any_work(recipe: Path) -> None:
    plan = plan_run(recipe, settings=get_settings())
    assert [it.params.prompt for it in plan.items] == ["a red kite", "a red kite", "a green door", "a green door"]
    assert plan.backends == ["default"] and plan.upload is False and plan.migrated == 0
    assert len(plan_run(recipe, settings=get_settings(), max_items=3).items) == 3
    with pytest.raises(UsageError, match="max_items"):
        plan_run(recipe, settings=get_settings(), max_items=0)
    with pytest.raises(ConfigError, match="Unknown backend 'nope'"):
        plan_run(recipe, settings=get_settings(), backend="nope")


def test_plan_run_confines_recipe_paths_unless_told_the_caller_owns_them(
        recipe: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("elsewhere") / "plan.yaml"  # not under cwd nor the recipes folder
    outside.write_text(recipe.read_text())
    with pytest.raises(PathNotAllowed):
        plan_run(outside, settings=get_settings())
    assert len(plan_run(outside, settings=get_settings(), confine=False).items) == 4


def test_backend_is_placement_not_identity(recipe: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMFY_GEN_BACKENDS", '{"gpu1": "http://127.0.0.1:9", "gpu2": "http://127.0.0.1:10"}')
    reset_settings_cache()
    one = plan_run(recipe, settings=get_settings())
    two = plan_run(recipe, settings=get_settings(), backend="gpu2")
    assert [it.id for it in one.items] == [it.id for it in two.items]
    assert {it.backend for it in two.items} == {"gpu2"}


def test_run_item_renders_once_then_finds_the_stored_item(recipe: Path, emu) -> None:
    plan = plan_run(recipe, settings=get_settings())
    first = [run_item(_run(plan), item) for item in plan.items]
    assert all(isinstance(r, ItemResult) for r in first)
    assert [(r.verdict, r.source, r.jobs) for r in first] == [("unvalidated", "rendered", 1)] * 4
    assert all(Path(r.file or "").exists() and Path(r.sidecar or "").exists() for r in first)
    assert emu.stats()["jobs_completed"] == 4

    again = [run_item(_run(plan, "r2"), item) for item in plan.items]
    assert [(r.verdict, r.source, r.jobs) for r in again] == [("unvalidated", "cached", 0)] * 4
    assert [r.file for r in again] == [r.file for r in first]
    assert emu.stats()["jobs_completed"] == 4


def test_items_stored_under_v1_ids_are_renamed_not_rendered_again(recipe: Path, emu) -> None:
    plan = plan_run(recipe, settings=get_settings())
    run = _run(plan)
    results = [run_item(run, item) for item in plan.items]
    # Put the outputs back where item-id v1 (backend hashed in) had them.
    for item, result in zip(plan.items, results):
        old = legacy_item_id(item.workflow, item.params, item.backend)
        image, sidecar = Path(result.file or ""), Path(result.sidecar or "")
        meta = json.loads(sidecar.read_text())
        meta["comfy_gen"]["item_id"] = old
        image.rename(image.with_name(old + ".png"))
        sidecar.unlink()
        (image.parent / f"{old}.png.json").write_text(json.dumps(meta))

    replanned = plan_run(recipe, settings=get_settings())
    assert replanned.migrated == 4
    again = [run_item(_run(replanned, "r2"), item) for item in replanned.items]
    assert all(r.source == "cached" for r in again)
    assert emu.stats()["jobs_completed"] == 4
    meta = json.loads(Path(again[0].sidecar or "").read_text())
    assert meta["comfy_gen"]["item_id"] == again[0].item_id and "migrated_from" in meta["comfy_gen"]
    assert plan_run(recipe, settings=get_settings()).migrated == 0  # nothing left to migrate


def test_finish_run_writes_the_record_and_counts_verdicts_and_sources(recipe: Path, emu) -> None:
    plan = plan_run(recipe, settings=get_settings())
    run = _run(plan)
    results = [run_item(run, item) for item in plan.items[:3]]
    summary = finish_run(run, results, wall_seconds=1.5)
    assert isinstance(summary, RunSummary)
    assert summary.counts == {"unvalidated": 3} and summary.rendered == 3 and summary.jobs == 3
    record = Path(summary.run_dir)
    assert RunSummary.from_dict(json.loads((record / "summary.json").read_text())) == summary
    rows = [ItemResult.from_dict(json.loads(line)) for line in (record / "results.jsonl").read_text().splitlines()]
    assert rows == sorted(results, key=lambda r: r.index)
    assert Path(summary.contact_sheet or "").exists()
    markdown = (record / "summary.md").read_text()
    # A local contact sheet is named, never linked as a file:// image a browser refuses.
    assert "file://" not in markdown and summary.contact_sheet in markdown


def test_a_failed_item_counts_its_job_and_is_named_by_prompt_and_seed(recipe: Path) -> None:
    from comfy_gen.errors import ExecutionFailed

    plan = plan_run(recipe, settings=get_settings())
    item = plan.items[1]
    failed = error_result(item, ExecutionFailed("VAEDecode blew up", prompt_id="p-1", node_type="VAEDecode"))
    ok = ItemResult(item_id="x", index=0, verdict="passed", attempts=2, jobs=2)
    summary = summarize([ok, failed], wall_seconds=1.0)
    assert summary.counts == {"passed": 1, "error": 1}
    assert summary.rendered == 1 and summary.jobs == 3 and summary.failed == 1
    (err,) = summary.errors
    assert "seed 2" in err.describe() and "a red kite" in err.describe() and "VAEDecode" in err.describe()


def test_v1_result_records_are_read_with_verdict_and_source_apart() -> None:
    old = {"item_id": "abc", "index": 3, "status": "cached", "previous_status": "best_effort",
           "outcome": "passed", "cached": True, "attempts": 2}
    result = ItemResult.from_dict(old)
    assert (result.verdict, result.source, result.jobs) == ("passed", "cached", 0)
    plain = ItemResult.from_dict({"item_id": "d", "index": 0, "status": "best_effort", "attempts": 3})
    assert (plain.verdict, plain.source, plain.jobs) == ("best_effort", "rendered", 3)


def test_triage_splits_stored_from_to_render_with_local_files_only(recipe: Path, emu) -> None:
    from comfy_gen.batch import triage

    plan = plan_run(recipe, settings=get_settings())
    assert triage(_run(plan), plan.items).render_count == 4
    run_item(_run(plan), plan.items[0])
    emu.stop()  # deciding needs no server
    split = triage(_run(plan, "r2"), plan.items)
    assert [r.item_id for r in split.stored] == [plan.items[0].id]
    assert [it.id for it in split.to_render] == [it.id for it in plan.items[1:]]
    assert split.to_publish == ()
    forced = _run(plan, "r3")
    forced.force = True
    assert triage(forced, plan.items).render_count == 4


def test_stored_scores_are_rejudged_by_a_plan_that_loads_nothing(tmp_path: Path) -> None:
    from comfy_gen.config import Settings
    from comfy_gen.validation.plan import ValidationPlan, Verdict

    settings = Settings(clip_model=str(tmp_path / "no-model-here"))
    rejudger = ValidationPlan.from_options(validate=True, positive_threshold=25).rejudger(settings)
    stored = [Verdict("clip", True, {"positive_score": 24.0}, "ok").to_dict()]
    (verdict,) = rejudger.rejudge(stored)
    assert not verdict.passed and "24.00 < 25.00" in verdict.reason
    assert rejudger.active and not rejudger.loaded
    with pytest.raises(RuntimeError, match="only re-judges"):
        rejudger.judge(tmp_path / "x.png", "a red car")


@pytest.mark.parametrize(("recipe_mode", "setting", "rendering", "wanted"), [
    pytest.param("auto", "auto", 10, True, id="auto-small"),
    pytest.param("auto", "auto", 151, False, id="auto-large"),
    pytest.param("auto", "off", 10, False, id="setting-off"),
    pytest.param("auto", "on", 5000, True, id="setting-on"),
    pytest.param("on", "off", 10, True, id="recipe-on-wins"),
    pytest.param("off", "on", 10, False, id="recipe-off-wins"),
])
def test_stage_tasks_follow_recipe_then_setting_then_size(recipe: Path, recipe_mode: str, setting: str,
                                                          rendering: int, wanted: bool) -> None:
    from dataclasses import replace

    from comfy_gen.config import Settings
    from comfy_gen.runs import stage_tasks_wanted

    loaded = replace(plan_run(recipe, settings=get_settings()).recipe, stage_tasks=recipe_mode)
    settings = Settings(stage_tasks=setting, stage_tasks_max_items=150)
    assert stage_tasks_wanted(loaded, settings, rendering) is wanted


def test_the_gate_counts_who_holds_a_slot_and_who_waits_for_one(tmp_path: Path) -> None:
    import threading
    import time

    from comfy_gen.backends import BackendPool, GateActivity
    from comfy_gen.config import Settings

    pool = BackendPool(Settings(gpu_limit=1, gpu_gate="none", comfyui_url="http://127.0.0.1:9"))
    gate = pool.lease("default").gate
    release = threading.Event()

    def hold() -> None:
        with gate:
            release.wait(30)

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while pool.activity() != GateActivity(holding=1, waiting=2):
        assert time.monotonic() < deadline, pool.activity()
        time.sleep(0.01)
    release.set()
    for thread in threads:
        thread.join(30)
    assert pool.activity() == GateActivity(holding=0, waiting=0)


@pytest.mark.parametrize("spans, expected", [
    pytest.param({"gpu1": [(0.0, 5.0), (5.0, 10.0)], "gpu2": [(100.0, 110.0)]}, 1.0,
                 id="two-busy-backends-on-their-own-clocks-are-100-percent"),
    pytest.param({"gpu1": [(0.0, 10.0)], "gpu2": [(0.0, 2.0), (8.0, 10.0)]}, 0.7,
                 id="idle-time-of-one-backend-is-pooled"),
    pytest.param({}, None, id="no-jobs"),
])
def test_gpu_busy_is_per_backend_then_pooled(spans, expected):
    results = [ItemResult(item_id=f"{name}-{i}", index=i, verdict="passed", backend=name, gpu_spans=(span,))
               for name, backend_spans in spans.items() for i, span in enumerate(backend_spans)]
    assert summarize(results, wall_seconds=1.0).gpu_busy_fraction == expected

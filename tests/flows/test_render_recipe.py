"""The render-recipe flow against the emulator over loopback, under a Prefect test server."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from comfy_gen.config import reset_settings_cache
from comfy_gen.errors import PolicyViolation, PreflightError, RecipeError, ValidatorUnavailable

pytestmark = pytest.mark.usefixtures("prefect_harness")

BASIC = """
name: {name}
workflow: tiny-sd15.json
prompts:
  - a red lighthouse on a cliff
  - a mountain lake at dawn
seeds: [1, 2]
output:
  contact_sheet: true
"""


def _render(path: Path, **kwargs):
    from flows.render_recipe import render_recipe

    return render_recipe(recipe=str(path), **kwargs)


def _jobs(emu) -> int:
    return emu.stats()["jobs_completed"]


def test_renders_every_item_once_and_unchanged_rerun_sends_zero_jobs(
        emulator_factory, use_backend, write_recipe, tmp_path):
    emu = emulator_factory()
    use_backend(emu.url)
    path = write_recipe("basic", BASIC.format(name="basic"))

    first = _render(path)
    assert first["items"] == 4 and first["rendered"] == 4 and first["jobs"] == 4
    assert first["counts"] == {"unvalidated": 4}
    assert _jobs(emu) == 4
    items_dir = Path(first["items_dir"])
    images = sorted(items_dir.glob("*.png"))
    assert len(images) == 4
    for image in images:
        meta = json.loads(image.with_name(image.name + ".json").read_text())
        assert meta["comfy_gen"]["job_key"].startswith("j1:")
        assert meta["parameters"]["seed"] in (1, 2)
    run_dir = Path(first["run_dir"])
    assert (run_dir / "summary.json").exists() and (run_dir / "results.jsonl").exists()
    assert Path(first["contact_sheet"]).exists()
    assert 0 < first["gpu_busy_fraction"] <= 1

    second = _render(path)
    assert second["jobs"] == 0 and second["cached"] == 4 and second["rendered"] == 0
    assert _jobs(emu) == 4, "an unchanged re-run must not send any job"

    path.write_text(path.read_text().replace("a mountain lake at dawn", "a mountain lake at noon"))
    third = _render(path)
    assert third["jobs"] == 2 and third["cached"] == 2  # one prompt x two seeds changed
    assert _jobs(emu) == 6

    forced = _render(path, force=True)
    assert forced["jobs"] == 4 and forced["cached"] == 0
    assert _jobs(emu) == 10


def test_preflight_lists_every_missing_model_before_any_job(emulator_factory, use_backend, write_recipe):
    emu = emulator_factory()
    use_backend(emu.url)
    path = write_recipe("broken", """
        name: broken
        workflow: tiny-sd15.json
        defaults:
          checkpoint: tiny_sd15_typo.safetensors
          loras: ["no_such_lora.safetensors:0.5"]
        prompts: [a quiet harbour]
        seeds: [3]
    """)
    with pytest.raises(PreflightError) as info:
        _render(path)
    text = str(info.value)
    assert "tiny_sd15_typo.safetensors" in text and "no_such_lora.safetensors" in text
    assert "tiny_sd15.safetensors" in text  # a suggestion
    assert _jobs(emu) == 0


def test_validation_refines_failing_items_and_keeps_the_best_attempt(
        emulator_factory, use_backend, write_recipe, monkeypatch, tiny_clip_dir):
    emu = emulator_factory()
    use_backend(emu.url)
    monkeypatch.setenv("COMFY_GEN_CLIP_MODEL", str(tiny_clip_dir))
    reset_settings_cache()
    path = write_recipe("strict", """
        name: strict
        workflow: tiny-sd15.json
        prompts: [a red car, a blue boat]
        seeds: [5]
        validation: {enabled: true, positive_threshold: 100}
        refinement: {strategy: progressive, max_attempts: 3}
    """)
    summary = _render(path)
    assert summary["counts"] == {"best_effort": 2}
    assert summary["jobs"] == 6 and _jobs(emu) == 6
    for image in Path(summary["items_dir"]).glob("*.png"):
        meta = json.loads(image.with_name(image.name + ".json").read_text())
        attempts = meta["refinement"]["attempts"]
        assert len(attempts) == 3
        scores = [a["scores"]["positive_score"] for a in attempts]
        kept = meta["validation"]["positive_score"]
        assert kept == max(scores)
        # progressive: 3 -> int(3*1.67) -> int(3*2.67) steps from the workflow's own 3 steps
        assert [a["params"]["steps"] for a in attempts] == [3, 5, 8]

    # A new threshold re-judges the stored images from their recorded scores: no GPU work.
    path.write_text(path.read_text().replace("positive_threshold: 100", "positive_threshold: 0"))
    summary = _render(path)
    assert summary["jobs"] == 0 and summary["cached"] == 2
    results = [json.loads(line) for line in (Path(summary["run_dir"]) / "results.jsonl").read_text().splitlines()]
    assert [(r["verdict"], r["source"]) for r in results] == [("passed", "cached"), ("passed", "cached")]
    assert summary["counts"] == {"passed": 2}

    forced = _render(path, force=True)
    assert forced["counts"] == {"passed": 2} and forced["jobs"] == 2 and forced["pass_rate"] == 1.0


def test_unloadable_validator_fails_before_rendering_unless_skipping_is_allowed(
        emulator_factory, use_backend, write_recipe, monkeypatch, tmp_path):
    emu = emulator_factory()
    use_backend(emu.url)
    monkeypatch.setenv("COMFY_GEN_CLIP_MODEL", str(tmp_path / "no-model-here"))
    reset_settings_cache()
    body = """
        name: needs-clip
        workflow: tiny-sd15.json
        prompts: [a green field]
        seeds: [1]
        validation: {{enabled: true, positive_threshold: 20, allow_skip: {skip}}}
    """
    with pytest.raises(ValidatorUnavailable):
        _render(write_recipe("needs-clip", body.format(skip="false")))
    assert _jobs(emu) == 0
    summary = _render(write_recipe("needs-clip", body.format(skip="true")))
    assert summary["validation_skipped"] is True and summary["counts"] == {"unvalidated": 1}


def test_gpu_bound_keeps_at_most_limit_jobs_outstanding(emulator_factory, use_backend, write_recipe,
                                                        monkeypatch):
    emu = emulator_factory(step_time=0.02)
    use_backend(emu.url)
    monkeypatch.setenv("COMFY_GEN_GPU_LIMIT", "2")
    reset_settings_cache()
    path = write_recipe("bound", """
        name: bound
        workflow: tiny-sd15.json
        prompts: [one, two, three, four]
        seeds: [1, 2, 3]
    """)
    summary = _render(path)
    assert summary["jobs"] == 12
    stats = emu.stats()
    assert stats["max_outstanding"] == 2, stats


def test_restart_mid_batch_resubmits_lost_jobs_once(emulator_factory, use_backend, write_recipe):
    emu = emulator_factory(step_time=0.05)
    use_backend(emu.url)
    path = write_recipe("restart", """
        name: restart
        workflow: tiny-sd15.json
        prompts: [a windmill, a harbour, a forest path]
        seeds: [1, 2]
    """)

    def restart_after_first_job():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and emu.stats()["jobs_completed"] < 1:
            time.sleep(0.01)
        emu.restart()

    killer = threading.Thread(target=restart_after_first_job)
    killer.start()
    summary = _render(path)
    killer.join()
    assert summary["counts"] == {"unvalidated": 6}
    assert len(list(Path(summary["items_dir"]).glob("*.png"))) == 6


def test_categories_compose_into_items_and_policy_is_enforced(emulator_factory, use_backend, write_recipe,
                                                              monkeypatch, tmp_path):
    emu = emulator_factory()
    use_backend(emu.url)
    path = write_recipe("cats", """
        name: cats
        workflow: tiny-sd15.json
        categories: [landscape, "@golden_hour"]
        prompts: [a quiet valley]
        seeds: [7]
    """)
    summary = _render(path)
    assert summary["counts"] == {"unvalidated": 1}
    image = next(Path(summary["items_dir"]).glob("*.png"))
    meta = json.loads(image.with_name(image.name + ".json").read_text())
    prompt = meta["input"]["prompt"]
    assert prompt.startswith("a quiet valley")
    assert "golden" in prompt.lower()

    # A category above the server's tier blocks the recipe before anything is queued.
    user_dir = tmp_path / "my-categories" / "styles"
    user_dir.mkdir(parents=True)
    landscape = next((Path(__file__).resolve().parents[2] / "comfy_gen" / "categories").rglob("landscape.yaml"))
    text = landscape.read_text().replace("policy_tier: general", "policy_tier: mature")
    assert "policy_tier: mature" in text
    (user_dir / "landscape.yaml").write_text(text)
    monkeypatch.setenv("COMFY_GEN_CATEGORIES_PATHS", json.dumps([str(tmp_path / "my-categories")]))
    reset_settings_cache()
    from comfy_gen.categories import registry as registry_module

    if hasattr(registry_module, "clear_cache"):
        registry_module.clear_cache()
    before = _jobs(emu)
    # Reported when the recipe is loaded, with its file and line, before anything is queued.
    with pytest.raises((PolicyViolation, RecipeError)) as info:
        _render(path, force=True)
    assert "landscape" in str(info.value) and "policy_tier=mature" in str(info.value)
    assert _jobs(emu) == before


def test_prefect_gate_creates_its_limit_and_bounds_jobs(emulator_factory, use_backend, write_recipe, monkeypatch):
    from prefect.client.orchestration import get_client

    emu = emulator_factory(step_time=0.02)
    use_backend(emu.url)
    monkeypatch.setenv("COMFY_GEN_GPU_GATE", "prefect")
    monkeypatch.setenv("COMFY_GEN_GPU_LIMIT", "1")
    reset_settings_cache()
    path = write_recipe("gcl", """
        name: gcl
        workflow: tiny-sd15.json
        prompts: [first, second, third]
        seeds: [1]
    """)
    summary = _render(path)
    assert summary["jobs"] == 3
    assert emu.stats()["max_outstanding"] == 1
    # The limit was created by comfy-gen (a missing limit would have meant no limit at all).
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name("comfyui:default")
    assert limit.limit == 1 and limit.active and limit.active_slots == 0


def test_failed_items_are_recorded_and_succeed_on_the_next_run_once_fixed(emulator_factory, use_backend,
                                                                         write_recipe):
    from comfy_gen.errors import BatchFailed

    emu = emulator_factory()
    use_backend(emu.url)
    path = write_recipe("faulty", """
        name: faulty
        workflow: tiny-sd15.json
        prompts: [a paper boat, a glass vase]
        seeds: [9]
    """)
    emu.faults.error_node_class = "VAEDecode"
    with pytest.raises(BatchFailed) as info:
        _render(path)
    summary = info.value.summary
    assert summary["counts"] == {"error": 2}
    assert Path(summary["run_dir"], "summary.json").exists()  # the run record is written anyway
    assert all("VAEDecode" in (e["error"] or "") for e in summary["errors"])

    # The failed jobs are not adopted on the next run: they are queued again and succeed.
    emu.faults.error_node_class = None
    fixed = _render(path)
    assert fixed["counts"] == {"unvalidated": 2} and fixed["jobs"] == 2


def test_flow_reads_recipes_only_from_allowed_folders(emulator_factory, use_backend, tmp_path_factory):
    from comfy_gen.errors import PathNotAllowed

    emu = emulator_factory()
    use_backend(emu.url)
    outside = tmp_path_factory.mktemp("elsewhere") / "r.yaml"
    outside.write_text(BASIC.format(name="outside"))
    with pytest.raises(PathNotAllowed):
        _render(outside)
    assert _jobs(emu) == 0


def test_nightly_renders_every_nightly_recipe_and_survives_a_failing_one(emulator_factory, use_backend,
                                                                        write_recipe, monkeypatch, tmp_path):
    from comfy_gen.errors import BatchFailed
    from flows.render_recipe import render_nightly

    emu = emulator_factory()
    use_backend(emu.url)
    write_recipe("a-broken", """
        name: a-broken
        nightly: true
        workflow: tiny-sd15.json
        defaults: {checkpoint: missing_model.safetensors}
        prompts: [a lantern]
        seeds: [1]
    """)
    write_recipe("b-nightly", """
        name: b-nightly
        nightly: true
        workflow: tiny-sd15.json
        prompts: [a kite, a boat]
        seeds: [1]
    """)
    write_recipe("c-daytime", """
        name: c-daytime
        workflow: tiny-sd15.json
        prompts: [a train]
        seeds: [1]
    """)
    monkeypatch.setenv("COMFY_GEN_RECIPES_DIR", str(tmp_path / "recipes"))
    reset_settings_cache()
    with pytest.raises(BatchFailed) as info:
        render_nightly()
    assert "a-broken" in str(info.value) and "1 of 2" in str(info.value)
    # The broken recipe failed in preflight; the other nightly recipe still rendered; c is not nightly.
    assert _jobs(emu) == 2
    out = Path(os.environ["COMFY_GEN_OUTPUT_DIR"])
    assert len(list((out / "b-nightly" / "items").glob("*.png"))) == 2
    assert not (out / "c-daytime").exists()


def test_each_item_task_run_ends_in_a_state_named_for_its_verdict(
        emulator_factory, use_backend, write_recipe, monkeypatch, tiny_clip_dir):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterName

    emu = emulator_factory()
    use_backend(emu.url)
    monkeypatch.setenv("COMFY_GEN_CLIP_MODEL", str(tiny_clip_dir))
    reset_settings_cache()
    path = write_recipe("verdicts", """
        name: verdicts
        workflow: tiny-sd15.json
        prompts: [a red car]
        seeds: [5]
        validation: {enabled: true, positive_threshold: 100}
        refinement: {strategy: progressive, max_attempts: 2}
    """)
    summary = _render(path)
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[summary["flow_run_id"]])),
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="item-")))
    (task_run,) = runs
    assert task_run.state.is_completed() and task_run.state.name == "Best effort"
    assert "CLIP" in (task_run.state.message or "") and "after 2 attempts" in task_run.state.message

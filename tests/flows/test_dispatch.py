"""Dispatch over several backends and failover, against real emulators over loopback.

Mid-batch moments are made with the emulators' hold controls (a job is held at its
first sampler step until released), never with sleeps: "backend B dies with jobs
in flight" is B holding them when it is stopped.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from comfy_gen.config import Settings, reset_settings_cache
from comfy_gen.errors import AllBackendsDown, PreflightError, RecipeError

RECIPE = """
name: {name}
workflow: tiny-sd15.json
{backends}
prompts: [a red lighthouse, a mountain lake, a quiet harbour]
seeds: [1, 2, 3, 4]
"""


@pytest.fixture()
def backends_env(monkeypatch: pytest.MonkeyPatch):
    """Name emulators as backends (short client retries: a dead server is found quickly)."""
    from comfy_gen.comfyui import _jobs

    monkeypatch.setattr(_jobs, "OUTAGE_GRACE", 0.3)   # the real grace (60 s) is too long for a test

    def use(specs: dict[str, Any], **extra: str) -> None:
        monkeypatch.setenv("COMFY_GEN_BACKENDS", json.dumps(specs))
        monkeypatch.setenv("COMFY_GEN_RETRY_DELAY", "0.02")
        monkeypatch.setenv("COMFY_GEN_POLL_INTERVAL", "0.05")
        monkeypatch.setenv("COMFY_GEN_GPU_GATE", "none")
        monkeypatch.setenv("COMFY_GEN_STAGE_TASKS", "off")   # one task run per item: quicker
        for key, value in extra.items():
            monkeypatch.setenv(f"COMFY_GEN_{key.upper()}", value)
        reset_settings_cache()

    return use


def _render(path: Path, **kwargs: Any) -> dict[str, Any]:
    from flows.render_recipe import render_recipe

    return render_recipe(recipe=str(path), **kwargs)


def _results(summary: dict[str, Any]) -> list[dict[str, Any]]:
    lines = (Path(summary["run_dir"]) / "results.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _completed(*emus: Any) -> int:
    return sum(emu.stats()["jobs_completed"] for emu in emus)


# --- the pool: least outstanding, capacity, affinity, probes (no server needed) ---------------


def _pool(**capacities: int):
    from comfy_gen.backends import BackendPool

    specs = {name: {"url": f"http://127.0.0.1:{9 + i}", "capacity": cap}
             for i, (name, cap) in enumerate(capacities.items())}
    return BackendPool(Settings(backends=specs, gpu_gate="none"))


def test_lease_picks_least_outstanding_then_name_and_waits_when_all_are_full() -> None:
    pool = _pool(a=2, b=1)
    first, second, third = (pool.lease(["a", "b"]) for _ in range(3))
    assert [first.backend.name, second.backend.name, third.backend.name] == ["a", "b", "a"]
    got: list[str] = []
    waiter = threading.Thread(target=lambda: got.append(pool.lease(["a", "b"]).backend.name))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive() and not got   # every slot is taken: it waits (on a Condition)
    second.close()                          # b frees a slot: the waiter gets it
    waiter.join(10)
    assert got == ["b"]
    assert pool.status()["a"]["outstanding"] == 2 and pool.status()["b"]["outstanding"] == 1


def test_equal_work_prefers_the_backend_whose_last_job_had_the_same_models() -> None:
    pool = _pool(a=2, b=2)
    pool.lease(["b"], models=("sdxl.safetensors",)).close()
    pool.lease(["a"], models=("sd15.safetensors",)).close()
    assert pool.lease(["a", "b"], models=("sdxl.safetensors",)).backend.name == "b"
    assert pool.lease(["a", "b"], models=("sd15.safetensors",)).backend.name == "a"


def test_a_cancelled_run_stops_a_waiting_lease() -> None:
    from comfy_gen.errors import ExecutionInterrupted

    pool = _pool(a=1)
    pool.lease("a")
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            pool.lease("a")
        except ExecutionInterrupted as exc:
            errors.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    pool.cancelled.set()
    pool.wake()
    waiter.join(10)
    assert len(errors) == 1


def test_a_down_backend_is_probed_and_used_again_once_it_answers(emulator_factory, monkeypatch) -> None:
    from comfy_gen import backends as backends_module
    from comfy_gen.backends import BackendPool
    from comfy_gen.emulator import Emulator

    monkeypatch.setattr(backends_module, "PROBE_BACKOFF", 0.0)   # probe on every lease: no waiting
    a, b = emulator_factory(), emulator_factory()
    port, data_dir = b.port, b.data_dir
    pool = BackendPool(Settings(backends={"a": a.url, "b": b.url}, gpu_gate="none", http_retries=1))
    b.stop()
    pool.mark_down("b", "connection refused")
    assert pool.lease(["a", "b"]).backend.name == "a"          # b's probe failed: still down
    assert pool.is_down("b")
    back = Emulator(port=port, step_time=0.01, data_dir=data_dir).start()
    try:
        assert pool.lease(["a", "b"]).backend.name == "b"      # a has work; b answered its probe
        assert not pool.is_down("b")
        a.stop()
        pool.mark_down("a")
        pool.mark_down("b")
        back.stop()
        with pytest.raises(AllBackendsDown) as info:
            pool.lease(["a", "b"])
        assert info.value.backends == ("a", "b") and "Start the ComfyUI server" in str(info.value)
    finally:
        back.stop()


def test_a_lone_backend_marked_down_that_answers_is_used_again_at_once(emulator_factory) -> None:
    from comfy_gen.backends import BackendPool

    emu = emulator_factory()
    pool = BackendPool(Settings(backends={"a": emu.url}, gpu_gate="none"))
    pool.mark_down("a", "HTTP 503 after 3 attempts")   # a 5xx streak, not a dead server
    assert pool.lease(["a"]).backend.name == "a" and not pool.is_down("a")


# --- settings and recipes: capacity, tags -----------------------------------------------------


def test_backends_setting_takes_urls_or_objects_with_capacity_and_tags(monkeypatch) -> None:
    from comfy_gen.config import get_settings
    from comfy_gen.errors import ConfigError

    monkeypatch.setenv("COMFY_GEN_BACKENDS", json.dumps({
        "gpu1": "http://user:secret@10.0.0.1:8188",
        "gpu2": {"url": "http://10.0.0.2:8188", "capacity": 3, "tags": ["sdxl", "a100"]}}))
    monkeypatch.setenv("COMFY_GEN_GPU_LIMIT", "2")
    reset_settings_cache()
    settings = get_settings()
    assert settings.backend_spec("gpu1").capacity == 2 and settings.backend_spec("gpu2").capacity == 3
    assert settings.backends_tagged(["sdxl"]) == ["gpu2"]
    assert "secret" not in repr(settings.backends) and "secret" not in str(settings.backend_spec("gpu1"))
    monkeypatch.setenv("COMFY_GEN_BACKENDS", json.dumps(
        {"gpu1": {"url": "http://user:secret@h:1", "capacity": 0, "tags": ["a b"]}, "gpu2": 7}))
    reset_settings_cache()
    with pytest.raises(ConfigError) as info:
        get_settings()
    text = str(info.value) + "".join(getattr(info.value, "problems", []))
    assert "COMFY_GEN_BACKENDS[gpu1][capacity]" in text and "COMFY_GEN_BACKENDS[gpu1][tags][0]" in text
    assert "COMFY_GEN_BACKENDS[gpu2]: must be a URL or an object" in text and "secret" not in text


def test_a_recipe_may_ask_for_a_tag_instead_of_names(backends_env, write_recipe) -> None:
    from comfy_gen.runs import plan_run

    backends_env({"gpu1": {"url": "http://127.0.0.1:9", "tags": ["sdxl"]},
                  "gpu2": {"url": "http://127.0.0.1:10", "tags": ["sdxl", "big"]},
                  "gpu3": "http://127.0.0.1:11"})
    from comfy_gen.config import get_settings

    plan = plan_run(write_recipe("tagged", RECIPE.format(name="tagged", backends="backends: {tags: [sdxl]}")),
                    settings=get_settings())
    assert plan.backends == ["gpu1", "gpu2"] and plan.items[0].candidates == ("gpu1", "gpu2")
    with pytest.raises(RecipeError) as info:
        plan_run(write_recipe("untagged", RECIPE.format(name="untagged", backends="backends: {tags: [h100]}")),
                 settings=get_settings())
    assert "backends.tags" in str(info.value.problems) and "'h100'" in str(info.value.problems)


@pytest.mark.parametrize("value, path, words", [
    ('"http://user:secret@h:1"', "$.backends", "not a URL or credentials"),
    ("{tags: []}", "$.backends.tags", "non-empty"),
    ("{tag: [sdxl]}", "$.backends.tag", "did you mean 'tags'"),
])
def test_a_bad_backends_field_is_named_and_never_echoed(backends_env, write_recipe, value, path, words) -> None:
    from comfy_gen.config import get_settings
    from comfy_gen.runs import plan_run

    backends_env({"gpu1": "http://127.0.0.1:9"})
    with pytest.raises(RecipeError) as info:
        plan_run(write_recipe("bad", RECIPE.format(name="bad", backends=f"backends: {value}")),
                 settings=get_settings())
    (problem,) = info.value.problems
    assert problem.path == path and words in problem.message and "secret" not in str(info.value)


# --- the flow: dispatch, eligibility, identity, failover ----------------------------------------


@pytest.mark.usefixtures("prefect_harness")
def test_items_spread_over_both_backends_within_each_capacity(backends_env, emulator_factory, write_recipe):
    small, large = emulator_factory(step_time=0.02), emulator_factory(step_time=0.02)
    backends_env({"small": {"url": small.url, "capacity": 1}, "large": {"url": large.url, "capacity": 3}})
    summary = _render(write_recipe("spread", RECIPE.format(name="spread", backends="backends: [small, large]")))
    assert summary["counts"] == {"unvalidated": 12} and summary["jobs"] == 12
    results = _results(summary)
    used = {r["backend"] for r in results}
    assert used == {"small", "large"}
    # The bound, on each emulator's own record of jobs queued or running at once.
    assert 1 <= small.stats()["max_outstanding"] <= 1 and 1 <= large.stats()["max_outstanding"] <= 3
    assert _completed(small) == sum(r["backend"] == "small" for r in results)
    assert _completed(large) == sum(r["backend"] == "large" for r in results)
    table = (Path(summary["run_dir"]) / "results.jsonl").read_text()
    assert '"backend": "small"' in table
    from comfy_gen.results import ItemResult
    from comfy_gen.runrecord import table_rows

    rows = table_rows([ItemResult.from_dict(r) for r in results])
    assert {row["backend"] for row in rows} == {"small", "large"}


@pytest.mark.usefixtures("prefect_harness")
def test_a_backend_without_the_model_is_left_out_and_none_eligible_fails(backends_env, emulator_factory,
                                                                        write_recipe, tmp_path):
    full = emulator_factory()
    bare = emulator_factory(models={"checkpoints": ["other.safetensors"]})
    backends_env({"full": full.url, "bare": bare.url})
    summary = _render(write_recipe("eligible", RECIPE.format(name="eligible", backends="backends: [full, bare]")))
    assert summary["counts"] == {"unvalidated": 12}
    assert {r["backend"] for r in _results(summary)} == {"full"}
    assert bare.stats()["prompts_accepted"] == 0

    from comfy_gen.batch import BatchRun
    from comfy_gen.config import get_settings
    from comfy_gen.preflight import check_backends
    from comfy_gen.runs import plan_run

    plan = plan_run(write_recipe("eligible2", RECIPE.format(name="eligible2", backends="backends: [full, bare]")),
                    settings=get_settings())
    run = BatchRun(settings=get_settings(), recipe=plan.recipe, run_id="check")
    checked = check_backends(run, list(plan.items))
    assert not checked.problems and set(checked.eligible.values()) == {("full",)}
    assert any(w.startswith("[bare]") and "tiny_sd15.safetensors" in w and "render on full" in w
               for w in checked.warnings), checked.warnings
    run.close()

    backends_env({"bare": bare.url})
    with pytest.raises(PreflightError) as info:
        _render(write_recipe("none", RECIPE.format(name="none", backends="backends: [bare]")))
    assert any(p.startswith("[bare]") for p in info.value.problems)


@pytest.mark.usefixtures("prefect_harness")
def test_where_an_item_rendered_never_makes_a_rerun_render_it_again(backends_env, emulator_factory,
                                                                    write_recipe):
    one, two, three = emulator_factory(), emulator_factory(), emulator_factory()
    backends_env({"one": one.url, "two": two.url, "three": three.url})
    first = _render(write_recipe("same", RECIPE.format(name="same", backends="backends: [one]")))
    assert first["rendered"] == 12 and _completed(one) == 12
    again = _render(write_recipe("same", RECIPE.format(name="same", backends="backends: [two, three]")))
    assert again["rendered"] == 0 and again["cached"] == 12 and _completed(one, two, three) == 12
    override = _render(write_recipe("same", RECIPE.format(name="same", backends="backends: [one, two]")),
                       backend="three")
    assert override["rendered"] == 0 and _completed(one, two, three) == 12


@pytest.mark.usefixtures("prefect_harness")
def test_a_backend_killed_mid_batch_hands_its_items_over_once(backends_env, emulator_factory, write_recipe):
    keep, doomed = emulator_factory(), emulator_factory()
    backends_env({"keep": keep.url, "doomed": doomed.url})
    doomed.hold()   # its first job stays running; the second waits in its queue

    accepted: list[int] = []

    def kill_when_busy() -> None:
        doomed.wait_held(1)
        accepted.append(doomed.stats()["prompts_accepted"])
        doomed.stop()   # sockets dropped, connection refused from now on

    killer = threading.Thread(target=kill_when_busy)
    killer.start()
    summary = _render(write_recipe("failover", RECIPE.format(name="failover", backends="backends: [keep, doomed]")))
    killer.join(30)
    results = _results(summary)
    assert summary["counts"] == {"unvalidated": 12}                             # lost: 0
    assert sorted(r["item_id"] for r in results) == sorted({r["item_id"] for r in results})
    assert len(list(Path(summary["items_dir"]).glob("*.png"))) == 12            # duplicated: 0
    assert accepted and accepted[0] >= 1            # doomed had items in flight when it died
    assert {r["backend"] for r in results} == {"keep"}
    assert _completed(keep) == 12                                              # each rendered once there
    assert summary["jobs"] >= 12


@pytest.mark.usefixtures("prefect_harness")
def test_every_backend_down_fails_fast_and_keeps_what_finished(backends_env, emulator_factory, write_recipe):
    a, b = emulator_factory(), emulator_factory()
    backends_env({"a": a.url, "b": b.url}, gpu_limit="1")
    a.hold(after=2)   # two items finish on a, then a's jobs are held
    b.hold()

    def kill_both() -> None:
        a.wait_held(1)
        b.wait_held(1)
        a.stop()
        b.stop()

    killer = threading.Thread(target=kill_both)
    killer.start()
    path = write_recipe("alldown", RECIPE.format(name="alldown", backends="backends: [a, b]"))
    with pytest.raises(AllBackendsDown) as info:
        _render(path)
    killer.join(30)
    assert info.value.backends == ("a", "b")
    assert "2 of 12 items are stored" in str(info.value)
    items_dir = Path(path).parent.parent / "output" / "alldown" / "items"
    assert len(list(items_dir.glob("*.png"))) == 2
    summary = json.loads(next(items_dir.parent.glob("*/summary.json")).read_text())
    assert summary["counts"] == {"unvalidated": 2, "error": 10}
    from comfy_gen.exit_codes import exit_code_for

    assert exit_code_for(info.value) == 2


@pytest.mark.usefixtures("prefect_harness")
def test_a_job_finished_on_a_backend_whose_result_never_arrived_is_rendered_elsewhere_and_stored_once(
        backends_env, emulator_factory, write_recipe):
    keep, doomed = emulator_factory(), emulator_factory()
    backends_env({"keep": keep.url, "doomed": doomed.url})
    doomed.hold()

    def finish_unseen() -> None:
        doomed.wait_held(1)
        doomed.faults.update({"http_5xx_rate": 1.0})   # every request fails from now on: results never arrive
        doomed.release()                                # ... but its jobs do finish

    breaker = threading.Thread(target=finish_unseen)
    breaker.start()
    summary = _render(write_recipe("unseen", RECIPE.format(name="unseen", backends="backends: [keep, doomed]")))
    breaker.join(30)
    assert doomed.wait_idle(30)
    finished_there = doomed.stats()["jobs_completed"]
    results = _results(summary)
    assert finished_there >= 1                                                  # rendered on doomed ...
    assert {r["backend"] for r in results} == {"keep"} and _completed(keep) == 12   # ... and again on keep
    assert summary["counts"] == {"unvalidated": 12}
    assert len(list(Path(summary["items_dir"]).glob("*.png"))) == 12            # stored once
    assert len({r["item_id"] for r in results}) == len(results) == 12

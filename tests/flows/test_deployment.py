"""Deployments for real: `prefect server start`, a process worker, `prefect deploy --all`,
`prefect deployment run` on a recipe against the emulator, all on 127.0.0.1; the API's
`POST /recipes/{name}/runs` starting that deployment on the same stack (a second stack
would double the start-up cost). `comfy-gen up`, which does the same in one command, is
tested in test_up.py."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from comfy_gen.stack import Stack, free_port


@pytest.fixture()
def stack(tmp_path: Path):
    stack = Stack(home=tmp_path / "prefect-home", port=free_port())
    try:
        yield stack
    finally:
        stack.stop()


def _api(stack: Stack, method: str, path: str, **kwargs):
    response = httpx.request(method, stack.api_url + path, timeout=30, **kwargs)
    response.raise_for_status()
    return response.json()


def test_on_demand_deployment_renders_recipe_and_nightly_is_scheduled(
        stack: Stack, tmp_path: Path, emulator_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.api.conftest import TINY_RECIPE

    emu = emulator_factory(step_time=0.01)
    out = tmp_path / "out"
    recipes = tmp_path / "recipes"  # the API's recipes folder, which the worker accepts too
    recipes.mkdir()
    (recipes / "tiny.yaml").write_text(TINY_RECIPE)
    stack.start_server()
    stack.create_pool()
    stack.deploy()
    stack.start_worker({
        "COMFY_GEN_COMFYUI_URL": emu.url,
        "COMFY_GEN_OUTPUT_DIR": str(out),
        "COMFY_GEN_STATE_DIR": str(tmp_path / "state"),
        "COMFY_GEN_RECIPE_DIRS": json.dumps([str(recipes)]),
    })

    result = stack.prefect("deployment", "run", "render-recipe/on-demand",
                           "--param", "recipe=recipes/demo.yaml", "--watch", "--watch-timeout", "300",
                           check=False, timeout=360)
    assert result.returncode == 0, result.stdout + result.stderr

    runs = _api(stack, "POST", "/flow_runs/filter", json={
        "flow_runs": {"name": {"like_": "recipe-"}}, "limit": 10})
    assert len(runs) == 1
    run = runs[0]
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert run["parameters"]["recipe"] == "recipes/demo.yaml"

    artifacts = _api(stack, "POST", "/artifacts/filter", json={
        "artifacts": {"flow_run_id": {"any_": [run["id"]]}}})
    kinds = {a["type"] for a in artifacts}
    keys = {a.get("key") for a in artifacts}
    assert {"markdown", "table", "progress"} <= kinds, kinds
    # Keys are per run (<recipe>-<run_id>-...), so a UI Retry's artifacts do not mix.
    assert any(k.startswith("demo-") and k.endswith("-summary") for k in keys), keys
    assert any(k.startswith("demo-") and k.endswith("-items") for k in keys), keys
    table = next(a for a in artifacts if a["type"] == "table")
    assert "lighthouse" in str(table["data"]).lower()

    # The worker really rendered: six stored images (3 prompts x 2 seeds) with sidecars.
    images = sorted((out / "demo" / "items").glob("*.png"))
    assert len(images) == 6
    assert all(p.with_name(p.name + ".json").exists() for p in images)
    assert emu.stats()["jobs_completed"] >= 6

    nightly = _api(stack, "GET", "/deployments/name/render-nightly/nightly")
    crons = [s["schedule"].get("cron") for s in nightly.get("schedules", [])]
    assert "0 2 * * *" in crons
    scheduled = _api(stack, "POST", "/flow_runs/filter", json={
        "flow_runs": {"deployment_id": {"any_": [nightly["id"]]}, "state": {"type": {"any_": ["SCHEDULED"]}}}})
    assert scheduled, "the scheduler should have created upcoming nightly runs"

    _api_starts_the_deployment(stack, emu.url, out, recipes, tmp_path, monkeypatch)


def _api_starts_the_deployment(stack: Stack, comfyui_url: str, out: Path, recipes: Path, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    """POST /api/v1/recipes/tiny/runs with this stack's server reachable: the deployment, not
    an in-process run; the worker renders it into the output folder the API reads."""
    # Prefect is imported (its global settings built) before PREFECT_API_URL is set: the URL
    # reaches this test's context only, never a later test's.
    from prefect.flow_runs import wait_for_flow_run
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from comfy_gen.api import create_app
    from comfy_gen.config import Settings
    from tests.api.conftest import REPO, serve

    monkeypatch.setenv("PREFECT_API_URL", stack.api_url)  # what the launcher checks first
    settings = Settings(comfyui_url=comfyui_url, output_dir=out, state_dir=tmp_path / "api-state",
                        recipes_dir=recipes, workflows_dir=REPO / "workflows")
    with temporary_settings({PREFECT_API_URL: stack.api_url}):
        server, thread, port = serve(create_app(settings))
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                started = client.post("/api/v1/recipes/tiny/runs", json={})
                assert started.status_code == 202, started.text
                run = started.json()
                flow_run_id = run["flow_run_id"]
                assert run["mode"] == "deployment" and flow_run_id, run
                assert run["prefect_url"] == f"{stack.ui_url}/runs/flow-run/{flow_run_id}"
                assert run["links"]["prefect"] == run["prefect_url"]
                # Waits on the server's flow-run state events (bounded), not on a sleep.
                final = asyncio.run(wait_for_flow_run(UUID(flow_run_id), timeout=300))
                assert final.state is not None and final.state.type.value == "COMPLETED", final.state
                view = client.get(f"/api/v1/runs/{flow_run_id}").json()
        finally:
            server.should_exit = True
            thread.join(30)
    deployed = _api(stack, "GET", f"/flow_runs/{flow_run_id}")
    assert deployed["deployment_id"] and deployed["parameters"]["recipe"] == str(recipes / "tiny.yaml")
    assert view["status"] == "completed" and view["flow_run_id"] == flow_run_id and view["items"] == 2, view
    images = sorted((out / "tiny" / "items").glob("*.png"))
    assert len(images) == 2 and all(p.with_name(p.name + ".json").exists() for p in images)


def test_keys_in_the_worker_env_stay_out_of_the_ui_and_errors_name_settings(
        stack: Stack, tmp_path: Path, emulator_factory, s3_server, s3_bucket) -> None:
    """Storage keys live in the worker's environment: the run uploads with them, and no
    flow-run parameter, job variable, log line or artifact the UI shows holds them.
    An error raised inside the deployment names the setting or recipe field to change."""
    import json

    emu = emulator_factory(step_time=0.01)
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "strict.yaml").write_text(
        "name: strict\nworkflow: tiny-sd15.json\nprompts: [a kite]\nseeds: [1]\n"
        "validation: {enabled: true, positive_threshold: 20}\n")
    stack.start_server()
    stack.create_pool()
    stack.deploy()
    stack.start_worker({
        "COMFY_GEN_COMFYUI_URL": emu.url,
        "COMFY_GEN_OUTPUT_DIR": str(tmp_path / "out"),
        "COMFY_GEN_STATE_DIR": str(tmp_path / "state"),
        "COMFY_GEN_RECIPE_DIRS": json.dumps([str(recipes)]),
        "COMFY_GEN_MINIO_ENDPOINT": s3_server.endpoint,
        "COMFY_GEN_MINIO_ACCESS_KEY": s3_server.access_key,
        "COMFY_GEN_MINIO_SECRET_KEY": s3_server.secret_key,
        "COMFY_GEN_MINIO_BUCKET": s3_bucket,
        "HF_HUB_OFFLINE": "1",  # the default CLIP model is not cached: "strict" cannot validate
    })
    uploaded = stack.prefect("deployment", "run", "render-recipe/on-demand", "--param", "recipe=recipes/demo.yaml",
                             "--param", "upload=true", "--watch", "--watch-timeout", "300", check=False, timeout=360)
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    assert len(list(s3_server.client().list_objects(s3_bucket, recursive=True))) >= 6  # the keys worked
    stack.prefect("deployment", "run", "render-recipe/on-demand", "--param", f"recipe={recipes / 'strict.yaml'}",
                  "--watch", "--watch-timeout", "300", check=False, timeout=360)

    runs = _api(stack, "POST", "/flow_runs/filter", json={"flow_runs": {"name": {"like_": "recipe-"}}})
    assert len(runs) == 2
    failed = next(r for r in runs if r["parameters"]["recipe"].endswith("strict.yaml"))
    message = failed["state"]["message"] or ""
    assert failed["state"]["type"] == "FAILED" and "ValidatorUnavailable" in message
    assert "allow_skip" in message and "COMFY_GEN_CLIP_MODEL" in message and "--no-validate" not in message

    ids = [r["id"] for r in runs]
    shown = {
        "flow_runs": runs,
        "task_runs": _api(stack, "POST", "/task_runs/filter", json={"flow_runs": {"id": {"any_": ids}}}),
        "logs": _api(stack, "POST", "/logs/filter", json={"logs": {"flow_run_id": {"any_": ids}}, "limit": 200}),
        "artifacts": _api(stack, "POST", "/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": ids}}}),
        "deployments": _api(stack, "POST", "/deployments/filter", json={}),
    }
    assert shown["logs"] and shown["artifacts"]
    text = json.dumps(shown)
    assert s3_server.access_key not in text and s3_server.secret_key not in text

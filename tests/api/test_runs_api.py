"""Recipes and runs over HTTP: an in-process flow run started by the API, read back from its record."""

from __future__ import annotations

import pytest

from comfy_gen.emulator import Emulator
from tests.api.conftest import ApiServer

PUBLIC = "http://127.0.0.1:8765"


def test_recipes_are_listed_and_previewed(api: ApiServer) -> None:
    (api.settings.recipes_dir / "broken.yaml").write_text("name: broken\n")
    listed = {r["name"]: r for r in api.client.get("/api/v1/recipes").json()["recipes"]}
    assert listed["tiny"]["valid"] and listed["tiny"]["workflow"] == "tiny-sd15.json"
    assert not listed["broken"]["valid"] and listed["broken"]["error"].startswith("broken.yaml")
    assert any("workflow" in p for p in listed["broken"]["problems"])
    one = api.client.get("/recipes/tiny").json()
    assert one["recipe"]["item_count"] == 2 and one["recipe"]["path"] == "tiny.yaml" and "seeds" in one["yaml"]
    assert api.client.get("/recipes/nope").status_code == 404
    assert api.client.get("/recipes/broken").status_code == 422
    assert api.client.post("/api/v1/recipes/broken/runs", json={}).status_code == 422
    assert api.client.post("/api/v1/recipes/nope/runs", json={}).status_code == 404
    assert api.client.post("/api/v1/recipes/tiny/runs", json={"max_items": 0}).status_code == 422
    assert api.client.get("/api/v1/runs/nope").status_code == 404


def test_run_started_in_process_is_listed_with_contact_sheet_and_links(
        make_api, emu: Emulator, use_backend, api_dirs, prefect_harness, monkeypatch: pytest.MonkeyPatch) -> None:
    # The in-process flow reads the process's settings (as under `comfy-gen serve`): the same folders.
    use_backend(emu.url)
    monkeypatch.setenv("COMFY_GEN_RECIPES_DIR", str(api_dirs["recipes_dir"]))
    monkeypatch.setenv("COMFY_GEN_PUBLIC_URL", PUBLIC)
    api = make_api(public_url=PUBLIC)
    started = api.client.post("/api/v1/recipes/tiny/runs", json={})
    assert started.status_code == 202, started.text
    run = started.json()
    assert run["mode"] == "in-process" and run["flow_run_id"] and run["links"]["page"].startswith("/#/runs/")
    assert run["prefect_url"] is None or run["prefect_url"].endswith(run["flow_run_id"])
    assert api.ctx.launcher.wait(run["flow_run_id"], timeout=240)
    runs = api.client.get("/api/v1/runs").json()["runs"]
    assert len(runs) == 1
    listed = runs[0]
    assert listed["recipe"] == "tiny" and listed["status"] == "completed" and listed["items"] == 2
    assert listed["flow_run_id"] == run["flow_run_id"]
    sheet = api.client.get(listed["contact_sheet_url"])
    assert sheet.status_code == 200 and sheet.content[:4] == b"\x89PNG"
    by_flow_run = api.client.get(f"/api/v1/runs/{run['flow_run_id']}").json()
    detail = api.client.get(f"/runs/{listed['run_id']}").json()
    assert by_flow_run["run_id"] == detail["run_id"] == listed["run_id"]
    items = detail["item_results"]
    assert [i["seed"] for i in items] == [1, 2] and all(i["image_url"] for i in items)
    assert api.client.get(items[0]["image_url"]).status_code == 200
    assert api.client.get(items[0]["image_url"], params={"size": 64}).status_code == 200
    # The run record links through the web app (COMFY_GEN_PUBLIC_URL): contact sheet shown, run page linked.
    summary_md = (api.settings.output_dir / "tiny" / listed["run_id"] / "summary.md").read_text()
    assert f"![contact sheet]({PUBLIC}/api/v1/images/files/tiny/{listed['run_id']}/contact_sheet.png)" in summary_md
    assert f"{PUBLIC}/#/runs/{listed['run_id']}" in summary_md
    # Items rendered by the flow are in the catalog too: the gallery shows them.
    gallery = api.client.get("/api/v1/generations", params={"run_id": listed["run_id"]}).json()
    assert gallery["total"] == 2

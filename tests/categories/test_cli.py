"""`comfy-gen categories ...` and `comfy-gen compose` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from comfy_gen.cli import cli
from comfy_gen.config import reset_settings_cache
from comfy_gen.errors import CompositionError, PolicyViolation
from tests.categories.conftest import BROKEN_DIR, make_category, write_categories


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args: str):
        reset_settings_cache()
        return runner.invoke(cli, list(args))

    return invoke


@pytest.fixture
def user_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = write_categories(tmp_path / "user", [
        make_category("grim_scene", "setting", policy_tier="mature", keywords={"primary": ["grim"]}),
    ])
    monkeypatch.setenv("COMFY_GEN_CATEGORIES_PATHS", json.dumps([str(folder)]))
    return folder


def test_list_text_and_json(run) -> None:
    result = run("categories", "list")
    assert result.exit_code == 0, result.output
    assert "portrait" in result.output and result.output.rstrip().endswith("22 categories")
    data = json.loads(run("categories", "list", "--type", "style", "--json").stdout)
    assert data["total"] == len(data["items"]) == 5
    assert {i["type"] for i in data["items"]} == {"style"}


def test_list_hides_mature_on_general_server(run, user_folder: Path, monkeypatch) -> None:
    ids = {i["id"] for i in json.loads(run("categories", "list", "--json").stdout)["items"]}
    assert "grim_scene" not in ids and "night" in ids
    monkeypatch.setenv("COMFY_GEN_POLICY_TIER", "mature")
    ids = {i["id"] for i in json.loads(run("categories", "list", "--json").stdout)["items"]}
    assert "grim_scene" in ids


def test_show_and_unknown(run) -> None:
    data = json.loads(run("categories", "show", "night", "--json").stdout)
    assert data["id"] == "night" and data["composition"]["conflicts_with"] == ["daytime", "golden_hour"]
    text = run("categories", "show", "night").output
    assert "conflicts_with: [daytime, golden_hour]" in text
    result = run("categories", "show", "nigth", "--json")
    assert result.exit_code == 2
    body = json.loads(result.stdout)
    assert body["error"] == "UnknownCategory" and "night" in body["hint"]


def test_search(run) -> None:
    data = json.loads(run("categories", "search", "rainy street", "--json").stdout)
    assert data["query"] == "rainy street" and [r["id"] for r in data["results"]][:2] == ["rain", "city"]
    assert data["count"] == len(data["results"])
    assert "rain  (setting)  Rain" in run("categories", "search", "rain").output


def test_compose_json_matches_library(run, shipped) -> None:
    from comfy_gen.categories import compose

    result = run("compose", "a red @car at @night:1.2", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    expected = compose("a red @car at @night:1.2", registry=shipped, dry_run=False).to_dict()
    assert data == expected


def test_compose_text_output_and_generate_hint(run) -> None:
    result = run("compose", "a red @car at @night, rainy street", "--max-categories", "2")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Using 2 explicit categories. 0 inferred" in out
    assert "Workflow: sdxl-txt2img.json" in out and "Recipe:   sha256:" in out
    assert "comfy-gen generate --workflow sdxl-txt2img.json --prompt" in out
    assert "--lora detail_tweaker.safetensors:0.5" in out
    assert "comfy-gen generate" not in run("compose", "@car", "--dry-run").output


def test_compose_tier_cannot_raise_server_tier(run, user_folder: Path, monkeypatch) -> None:
    result = run("compose", "@grim_scene a street", "--tier", "explicit", "--json")
    assert result.exit_code == 2
    body = json.loads(result.stdout)
    assert body["error"] == "PolicyViolation" and body["violations"][0]["id"] == "grim_scene"
    assert "Note: --tier explicit is above the server tier; using general." in result.stderr
    result = run("compose", "@grim_scene a street")
    assert isinstance(result.exception, PolicyViolation)
    monkeypatch.setenv("COMFY_GEN_POLICY_TIER", "mature")
    assert run("compose", "@grim_scene a street", "--json").exit_code == 0
    result = run("compose", "@grim_scene a street", "--tier", "general", "--json")
    assert json.loads(result.stdout)["error"] == "PolicyViolation"


def test_compose_conflict_and_preview(run) -> None:
    result = run("compose", "@night @daytime", "--json")
    assert result.exit_code == 2 and json.loads(result.stdout)["error"] == "CompositionError"
    assert isinstance(run("compose", "@night @daytime").exception, CompositionError)
    data = json.loads(run("compose", "@night a city @nope", "--preview", "--json").stdout)
    assert [c["id"] for c in data["inferred_categories"]] == ["city"]
    assert "unknown   @nope" in run("compose", "@night a city @nope", "--preview").output


def test_check_command(run, tmp_path: Path) -> None:
    result = run("categories", "check")
    assert result.exit_code == 0 and "22 categories loaded, 0 error(s)" in result.output
    result = run("categories", "check", str(BROKEN_DIR), "--json")
    assert result.exit_code == 2
    assert len(json.loads(result.stdout)["problems"]) == len(list(BROKEN_DIR.glob("*.yaml")))

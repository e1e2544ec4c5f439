"""`comfy-gen recipe validate|expand|schema` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from comfy_gen.cli import cli, main
from comfy_gen.cli._errors import exit_code_for
from comfy_gen.errors import RecipeError
from comfy_gen.recipes import SCHEMA_PATH
from tests.recipes.conftest import BAD_DIR

RECIPE = """
name: cli-demo
workflow: tiny-sd15.json
prompts: [a lighthouse at night, a mountain lake]
seeds: [11, 22]
defaults: {steps: 12, cfg: 6.5, width: 512, height: 768}
"""


@pytest.fixture
def env(workflows_dir: Path) -> dict[str, str]:
    return {"COMFY_GEN_WORKFLOWS_DIR": str(workflows_dir)}


def test_validate_ok(write_recipe, env: dict[str, str]) -> None:
    path = write_recipe(RECIPE)
    result = CliRunner().invoke(cli, ["recipe", "validate", str(path)], env=env)
    assert result.exit_code == 0, result.output
    assert result.output == "OK: 4 items\n"
    result = CliRunner().invoke(cli, ["recipe", "validate", str(path), "--json"], env=env)
    data = json.loads(result.output)
    assert data["ok"] is True and data["items"] == 4 and len(data["sha256"]) == 64


def test_validate_bad_file_is_recipe_error_exit_2(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    f = BAD_DIR / "schema-errors.yaml"
    result = CliRunner().invoke(cli, ["recipe", "validate", str(f)], env=env, standalone_mode=False)
    assert isinstance(result.exception, RecipeError) and exit_code_for(result.exception) == 2
    assert len(result.exception.problems) == 6
    # Through the real entry point: every problem printed, exit status 2.
    with pytest.raises(SystemExit) as info:
        main(["recipe", "validate", str(f)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"{f}:5: $.defaults.steps: 'twenty' is not of type 'integer'" in err
    assert f"{f}:12: $.refinement.max_attempts: 0 is less than the minimum of 1" in err


def test_validate_json_errors(env: dict[str, str]) -> None:
    f = BAD_DIR / "syntax-error.yaml"
    result = CliRunner().invoke(cli, ["recipe", "validate", str(f), "--json"], env=env)
    assert result.exit_code == 2
    data = json.loads(result.output)
    assert data["ok"] is False and data["error"] == "RecipeError"
    assert data["problems"][0]["line"] == 6


def test_expand_table_and_limit(write_recipe, env: dict[str, str]) -> None:
    path = write_recipe(RECIPE)
    result = CliRunner().invoke(cli, ["recipe", "expand", str(path), "--limit", "3"], env=env)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["ID", "PROMPT", "SEED", "STEPS", "CFG", "SIZE", "LABELS"]
    assert len(lines) == 1 + 3 + 1 and lines[-1] == "4 items (showing 3)"
    first = lines[1].split()
    assert len(first[0]) == 16
    assert "a lighthouse at night" in lines[1] and "11" in first and "12" in first and "6.5" in first
    assert "512x768" in lines[1] and "prompt=a lighthouse at night seed=11" in lines[1]


def test_expand_json(write_recipe, env: dict[str, str]) -> None:
    path = write_recipe(RECIPE)
    result = CliRunner().invoke(cli, ["recipe", "expand", str(path), "--json"], env=env)
    data = json.loads(result.output)
    assert data["count"] == 4 and (data["rows_axis"], data["cols_axis"]) == ("prompt", "seed")
    assert [i["params"]["seed"] for i in data["items"]] == [11, 22, 11, 22]
    assert data["items"][3]["grid"] == [1, 1]


def test_schema_command() -> None:
    result = CliRunner().invoke(cli, ["recipe", "schema"])
    assert result.output.strip() == str(SCHEMA_PATH)
    result = CliRunner().invoke(cli, ["recipe", "schema", "--json"])
    assert json.loads(result.output)["title"] == "comfy-gen recipe"

"""Outputs kept by the CLI, the service and the flow (against the emulator) land in the catalog."""

from __future__ import annotations

import json
import logging
import textwrap
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from comfy_gen.catalog import Catalog, close_shared
from comfy_gen.config import get_settings, reset_settings_cache
from comfy_gen.emulator import Emulator
from comfy_gen.errors import UsageError
from comfy_gen.params import GenerationParams
from comfy_gen.stack import free_port
from tests.catalog.helpers import rows
from tests.fixtures.postgres import PASSWORD
from tests.generate.helpers import run_cli

TINY = "tiny-sd15"


@pytest.fixture
def catalog_env(db_url: str, emu: Emulator, use_backend, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The emulator and the catalog database, configured the way a user does it (env)."""
    use_backend(emu.url)
    if db_url.startswith("sqlite:///"):
        monkeypatch.setenv("COMFY_GEN_CATALOG_PATH", db_url[len("sqlite:///"):])
    else:
        monkeypatch.setenv("COMFY_GEN_DATABASE_URL", db_url)
    reset_settings_cache()
    yield db_url
    close_shared()  # before the test database is dropped


def _open() -> Catalog:
    return Catalog.from_settings(get_settings())


def test_cli_generate_is_indexed_and_the_catalog_commands_show_it(catalog_env: str) -> None:
    code, out, err = run_cli("generate", "-w", TINY, "-p", "a red barn in a field", "--seed", "3", "--steps", "2")
    assert code == 0, err
    image = Path(out.strip())
    meta = json.loads(image.with_name(image.name + ".json").read_text())
    gid = meta["comfy_gen"]["generation_id"]
    assert meta["generation_id"] == gid

    code, out, err = run_cli("catalog", "list", "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert listed["total"] == 1 and [g["generation_id"] for g in listed["generations"]] == [gid]
    row = listed["generations"][0]
    assert row["local_path"] == str(image.resolve()) and row["prompt"] == "a red barn in a field"
    assert row["verdict"] == "unvalidated" and row["params"]["seed"] == 3

    code, out, err = run_cli("catalog", "show", gid)
    assert code == 0 and "a red barn in a field" in out and gid in out
    code, out, err = run_cli("catalog", "list")
    assert code == 0 and out.startswith(gid)

    code, out, err = run_cli("catalog", "show", uuid.uuid4().hex)
    assert code == 2 and "Traceback" not in err and "No generation" in err

    code, out, err = run_cli("catalog", "rebuild")
    assert code == 0, err
    assert "Indexed 1 generation(s); 1 in the catalog" in out
    assert PASSWORD not in out + err


def test_the_service_keeps_a_requested_generation_id(catalog_env: str) -> None:
    from comfy_gen.service import GenerateRequest, generate

    gid = uuid.uuid4().hex
    request = GenerateRequest(TINY, GenerationParams(prompt="a lighthouse", seed=5, steps=2), generation_id=gid,
                              categories=("portrait", "golden_hour"), recipe_hash="sha256:0123")
    result = generate(request, settings=get_settings())
    assert result.generation_id == gid and result.to_dict()["generation_id"] == gid
    with _open() as cat:
        found = cat.get(gid)
    assert found is not None and found.local_path == str(result.file.resolve())
    assert found.categories == ("portrait", "golden_hour") and found.recipe_hash == "sha256:0123"

    with pytest.raises(UsageError, match="generation id"):
        generate(GenerateRequest(TINY, GenerationParams(prompt="x"), generation_id="../x"), settings=get_settings())


def test_a_flow_run_is_indexed_once_per_kept_image(catalog_env: str, prefect_harness, tmp_path: Path) -> None:
    from flows.render_recipe import render_recipe

    recipe = tmp_path / "recipes" / "valley.yaml"
    recipe.parent.mkdir()
    recipe.write_text(textwrap.dedent("""
        name: valley
        workflow: tiny-sd15.json
        categories: [landscape]
        prompts: [a quiet valley, a river bend]
        seeds: [7]
    """).lstrip())
    first = render_recipe(recipe=str(recipe))
    assert first["rendered"] == 2
    with _open() as cat:
        generations = cat.list(run_id=first["run_id"])
        assert len(generations) == 2 and cat.count() == 2
        for g in generations:
            assert g.recipe == "valley" and g.flow_run_id == first["flow_run_id"] is not None
            assert g.recipe_hash is not None and g.recipe_hash.startswith("sha256:")
            assert "landscape" in g.categories and g.verdict == "unvalidated"
            assert Path(g.local_path).parent == Path(first["items_dir"]).resolve()
            assert g.item_id == Path(g.local_path).stem

        # An unchanged re-run keeps its cached images: nothing new to index.
        assert render_recipe(recipe=str(recipe))["cached"] == 2
        assert cat.count() == 2
        before = rows(cat)

        # A forced re-run overwrites the images: their rows are replaced, not added.
        forced = render_recipe(recipe=str(recipe), force=True)
        assert forced["rendered"] == 2
        assert cat.count() == 2 and not set(rows(cat)) & set(before)

        # The index is rebuilt from the output folder with the same rows.
        indexed = rows(cat)
        assert cat.rebuild() == 2
        assert rows(cat) == indexed


def test_a_broken_catalog_never_fails_a_generation(emu: Emulator, use_backend, monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    use_backend(emu.url)
    monkeypatch.setenv("COMFY_GEN_DATABASE_URL",
                       f"postgresql+psycopg://comfy:{PASSWORD}@127.0.0.1:{free_port()}/nothing")
    with caplog.at_level(logging.WARNING, logger="comfy_gen.catalog"):
        code, out, err = run_cli("generate", "-w", TINY, "-p", "a windmill", "--seed", "1", "--steps", "2")
    assert code == 0, err
    image = Path(out.strip())
    assert image.is_file()
    assert "Could not index" in caplog.text and "catalog rebuild" in caplog.text
    assert PASSWORD not in caplog.text + out + err
    close_shared()

    # Back on the default SQLite catalog, `rebuild` repairs the index from the sidecar.
    monkeypatch.delenv("COMFY_GEN_DATABASE_URL")
    code, out, err = run_cli("catalog", "rebuild", "--json")
    assert code == 0, err
    assert json.loads(out)["indexed"] == 1
    with _open() as cat:
        assert [g.local_path for g in cat.list()] == [str(image.resolve())]

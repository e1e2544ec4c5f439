"""A recipe's ``enhance`` section through the flow: enhanced once, cached, re-runs render nothing."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from comfy_gen.config import reset_settings_cache
from comfy_gen.errors import EnhancerUnavailable, RecipeError
from comfy_gen.stack import free_port
from tests.enhance.conftest import ChatServer

RECIPE = """
name: {name}
workflow: tiny-sd15.json
prompts: [a red lighthouse on a cliff, a mountain lake at dawn]
seeds: [1]
enhance: {{style: cinematic}}
"""


def _write(tmp_path: Path, name: str, body: str) -> Path:
    folder = tmp_path / "recipes"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(textwrap.dedent(body).lstrip())
    return path


def _render(path: Path, **kwargs):
    from flows.render_recipe import render_recipe

    return render_recipe(recipe=str(path), **kwargs)


def test_items_keep_the_original_prompt_and_ids_change_only_with_enhancement(tmp_path: Path) -> None:
    from comfy_gen.recipes import expand, load_recipe

    enhanced = expand(load_recipe(_write(tmp_path, "on", RECIPE.format(name="same"))))
    plain = expand(load_recipe(_write(tmp_path, "off", RECIPE.format(name="same").replace(
        "enhance: {style: cinematic}", "enhance: {enabled: false, style: cinematic}"))))
    assert [i.params.prompt for i in enhanced] == [i.params.prompt for i in plain]
    assert [i.enhance.enabled for i in enhanced] == [True, True] and not plain[0].enhance.enabled
    assert {i.id for i in enhanced}.isdisjoint(i.id for i in plain)
    assert type(enhanced[0]).from_dict(enhanced[0].to_dict()) == enhanced[0]
    assert "enhance" not in plain[0].to_dict()  # items without it serialise as before


def test_unknown_style_in_a_recipe_is_a_load_error(tmp_path: Path) -> None:
    from comfy_gen.recipes import load_recipe

    path = _write(tmp_path, "bad", RECIPE.format(name="bad").replace("cinematic", "baroque"))
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert "enhance.style" in str(info.value) and "photographic" in str(info.value)


@pytest.mark.usefixtures("prefect_harness")
def test_recipe_enhances_once_and_a_rerun_renders_nothing(
        fresh_emulator, use_backend, use_chat_server: ChatServer, tmp_path: Path) -> None:
    emu = fresh_emulator
    use_backend(emu.url)
    path = _write(tmp_path, "enhanced", RECIPE.format(name="enhanced"))

    first = _render(path)
    assert first["rendered"] == 2 and first["jobs"] == 2 and use_chat_server.chats == 2
    for image in sorted(Path(first["items_dir"]).glob("*.png")):
        meta = json.loads(image.with_name(image.name + ".json").read_text())
        original = meta["input"]["original_prompt"]
        assert meta["input"]["prompt"] == f"{original}, cinematic lighting, dramatic clouds, 35mm film still"
        assert meta["input"]["enhancement"]["status"] == "enhanced"
    assert len(list((tmp_path / "state" / "enhance").glob("*.json"))) == 2  # the cache

    second = _render(path)
    assert second["rendered"] == 0 and second["cached"] == 2 and second["jobs"] == 0
    assert use_chat_server.chats == 2 and emu.stats()["jobs_completed"] == 2

    # A forced re-render takes the cached enhancement: the same prompts, no new chat request.
    forced = _render(path, force=True)
    assert forced["jobs"] == 2 and use_chat_server.chats == 2


@pytest.mark.usefixtures("prefect_harness")
def test_unreachable_enhancer_fails_the_run_before_any_job(
        fresh_emulator, use_backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emu = fresh_emulator
    use_backend(emu.url)
    monkeypatch.setenv("COMFY_GEN_ENHANCE_BACKEND", "http")
    monkeypatch.setenv("COMFY_GEN_ENHANCE_URL", f"http://127.0.0.1:{free_port()}/v1")
    reset_settings_cache()
    with pytest.raises(EnhancerUnavailable) as info:
        _render(_write(tmp_path, "down", RECIPE.format(name="down")))
    assert "COMFY_GEN_ENHANCE_URL" in str(info.value)
    assert emu.stats()["jobs_completed"] == 0

"""The local backend: a tiny Qwen2 chat model loaded through the real from_pretrained path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from comfy_gen.config import Settings
from comfy_gen.enhance import enhance_prompt, get_enhancer, reset_enhancers
from comfy_gen.errors import EnhancerUnavailable

PROMPT = "a red fox in the snow"


def _settings(model: Path | str, **extra: object) -> Settings:
    return Settings(enhance_backend="local", enhance_model=str(model), enhance_max_tokens=16, **extra)


def test_local_model_rewrites_the_prompt_deterministically(tiny_chat_dir: Path) -> None:
    settings = _settings(tiny_chat_dir)
    first = enhance_prompt(PROMPT, style="cinematic", settings=settings)
    assert first.changed and first.warning is None
    assert (first.original, first.backend, first.model, first.style) == (PROMPT, "local", str(tiny_chat_dir),
                                                                          "cinematic")
    assert "\n" not in first.prompt and len(first.prompt.split()) >= 3
    assert first.record() == {"backend": "local", "model": str(tiny_chat_dir), "style": "cinematic",
                              "status": "enhanced"}
    # Greedy decoding: the same answer again, and after the model is loaded afresh.
    assert enhance_prompt(PROMPT, style="cinematic", settings=settings).prompt == first.prompt
    reset_enhancers()
    assert enhance_prompt(PROMPT, style="cinematic", settings=settings).prompt == first.prompt


def test_model_is_loaded_once_per_process(tiny_chat_dir: Path) -> None:
    settings = _settings(tiny_chat_dir)
    assert get_enhancer(settings) is get_enhancer(settings)
    assert get_enhancer(settings).backend is get_enhancer(_settings(tiny_chat_dir)).backend


def test_junk_answer_keeps_the_original_with_a_warning(junk_chat_dir: Path) -> None:
    settings = _settings(junk_chat_dir)
    result = enhance_prompt(PROMPT, settings=settings)
    assert result.prompt == PROMPT and not result.changed
    assert result.warning and "not a usable prompt" in result.warning
    assert result.record()["status"] == "kept_original"
    assert enhance_prompt(PROMPT, settings=settings).warning == result.warning  # deterministic


def test_missing_model_is_unavailable_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(EnhancerUnavailable) as info:
        get_enhancer(_settings(tmp_path / "no-such-model"))
    assert "COMFY_GEN_ENHANCE_MODEL" in str(info.value)
    with pytest.raises(EnhancerUnavailable):  # a hub id with the hub offline (conftest sets HF_HUB_OFFLINE)
        get_enhancer(_settings("example-org/not-cached-chat-model"))


def test_model_without_chat_template_is_unavailable(tiny_chat_dir: Path, tmp_path: Path) -> None:
    plain = shutil.copytree(tiny_chat_dir, tmp_path / "plain")
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    config = plain / "tokenizer_config.json"
    config.write_text(config.read_text().replace('"chat_template"', '"unused_template"'))
    with pytest.raises(EnhancerUnavailable) as info:
        get_enhancer(_settings(plain))
    assert "no chat template" in str(info.value)

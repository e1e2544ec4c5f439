"""Presets: shipped file, user overrides, and their precedence in `generate`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfy_gen.emulator import Emulator
from comfy_gen.errors import ConfigError, UsageError
from comfy_gen.presets import get_preset, load_presets
from tests.generate.helpers import chunks, run_cli


def test_shipped_presets_match_the_original_values() -> None:
    presets = load_presets()
    assert {k: presets["draft"][k] for k in ("steps", "cfg", "sampler", "scheduler")} == \
        {"steps": 10, "cfg": 5.0, "sampler": "euler", "scheduler": "normal"}
    assert presets["high-quality"]["sampler"] == "dpmpp_2m_sde"
    with pytest.raises(UsageError, match="available: .*draft"):
        get_preset("nope")


def test_user_file_overrides_key_by_key_and_rejects_typos(tmp_path: Path) -> None:
    user = tmp_path / "presets.yaml"
    user.write_text("presets:\n  draft:\n    steps: 4\n  mine:\n    cfg: 3.5\n    validate: true\n")
    presets = load_presets(user)
    assert presets["draft"]["steps"] == 4 and presets["draft"]["sampler"] == "euler"
    assert presets["mine"] == {"cfg": 3.5, "validate": True}
    user.write_text("presets:\n  bad:\n    stpes: 4\n")
    with pytest.raises(ConfigError, match="unknown keys: stpes"):
        load_presets(user)


def test_user_preset_applies_in_generate(gen_env: Emulator, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    user = tmp_path / "presets.yaml"
    user.write_text("presets:\n  tiny:\n    steps: 2\n    cfg: 3.0\n    width: 72\n")
    monkeypatch.setenv("COMFY_GEN_PRESETS_FILE", str(user))
    code, _, err = run_cli("generate", "-w", "tiny-sd15", "-p", "a lamp", "--preset", "tiny", "--cfg", "4",
                           "-o", "t.png")
    assert code == 0, err
    graph = json.loads(chunks(tmp_path / "t.png")["prompt"])
    sampler = next(n["inputs"] for n in graph.values() if n["class_type"] == "KSampler")
    assert (sampler["steps"], sampler["cfg"]) == (2, 4.0)

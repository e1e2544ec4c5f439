"""--validate-person-count / --validate-pose / --validate-content through `comfy-gen generate`
against the emulator, and validation.checks [person, pose, content] through the flow,
on the tiny models (the tiny detector sees 3 people in any image)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfy_gen.cli.generate_cmd import people_checks
from comfy_gen.config import reset_settings_cache
from comfy_gen.emulator import Emulator
from comfy_gen.metadata import validate_metadata
from tests.generate.helpers import chunks, run_cli

TINY = "tiny-sd15"


@pytest.fixture
def people_env(clip_env: Emulator, tiny_people_models: dict[str, Path], monkeypatch) -> Emulator:
    for setting, folder in tiny_people_models.items():
        monkeypatch.setenv(f"COMFY_GEN_{setting.upper()}", str(folder))
    monkeypatch.setenv("COMFY_GEN_VALIDATOR_DEVICE", "cpu")
    reset_settings_cache()
    return clip_env


def test_flags_map_to_checks_after_clip():
    assert people_checks({"validate_person_count": True, "validate_content": True}) == ("person", "content")
    assert people_checks({"validate_pose": False}) == ()


def test_person_count_flag_implies_validate_and_flips_passed(people_env: Emulator, tmp_path: Path) -> None:
    # A fixed seed and a threshold of 0: CLIP passes, so the verdict is the person check's.
    code, out, err = run_cli("generate", "-w", TINY, "-p", "two women on a bench", "--seed", "3",
                             "--positive-threshold", "0", "--validate-person-count", "--max-attempts", "1",
                             "-o", "p.png")
    assert code == 3, err
    assert "Person count mismatch: expected 2, detected 3" in err and "Traceback" not in err
    meta = json.loads(chunks(tmp_path / "p.png")["comfygen_metadata"])
    validate_metadata(meta)
    block = meta["validation"]
    assert block["passed"] is False and block["person_count"] == 3 and block["person_expected"] == 2
    assert [(v["validator"], v["passed"]) for v in block["verdicts"]] == [
        ("clip", True), ("person", False), ("technical", True)]
    sidecar = json.loads((tmp_path / "p.png.json").read_text())
    assert sidecar["validation"]["reason"] == "Person count mismatch: expected 2, detected 3"

    code, _, err = run_cli("generate", "-w", TINY, "-p", "three people on a bench", "--seed", "3",
                           "--positive-threshold", "0", "--validate-person-count", "--validate-pose",
                           "-o", "ok.png")
    assert code == 0, err
    block = json.loads((tmp_path / "ok.png.json").read_text())["validation"]
    assert block["passed"] is True and block["pose_coherent_count"] == 3
    assert [v["validator"] for v in block["verdicts"]] == ["clip", "person", "pose", "technical"]


def test_a_missing_people_model_fails_before_queueing(people_env: Emulator, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("COMFY_GEN_POSE_MODEL", str(tmp_path / "no-pose-model"))
    before = people_env.stats()["history_size"]
    code, _, err = run_cli("generate", "-w", TINY, "-p", "a dancer", "--validate-pose")
    assert code == 2 and "pose_model" in err and "model folder not found" in err and "Traceback" not in err
    assert "COMFY_GEN_POSE_MODEL" in err
    assert people_env.stats()["history_size"] == before


def test_root_generate_script_takes_the_flags(people_env: Emulator, tmp_path: Path) -> None:
    import generate as root_script

    with pytest.raises(SystemExit) as done:
        root_script.main(["-w", TINY, "-p", "three people", "--seed", "3", "--positive-threshold", "0",
                          "--validate-person-count", "-o", "r.png", "-q"])
    assert done.value.code == 0
    assert json.loads((tmp_path / "r.png.json").read_text())["validation"]["person_count"] == 3

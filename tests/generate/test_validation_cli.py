"""Validation and refinement through `comfy-gen generate`, scored by the tiny CLIP."""

from __future__ import annotations

import json
from pathlib import Path

from comfy_gen.emulator import Emulator
from comfy_gen.metadata import validate_metadata
from tests.generate.helpers import chunks, json_lines, run_cli

TINY = "tiny-sd15"


def _meta(image: Path) -> dict:
    return json.loads(chunks(image)["comfygen_metadata"])


def test_failed_validation_keeps_best_attempt_and_exits_3(clip_env: Emulator, tmp_path: Path) -> None:
    code, out, err = run_cli("generate", "-w", TINY, "-p", "a red car", "-n", "blurry", "--seed", "5",
                             "--validate", "--positive-threshold", "99", "--max-attempts", "3", "-o", "v.png")
    assert code == 3, err
    assert "Validation failed after 3 attempt(s)" in err and "Traceback" not in err
    assert out.strip() == str(tmp_path / "v.png")
    meta = _meta(tmp_path / "v.png")
    ref = meta["refinement"]
    assert ref["final_status"] == "best_effort" and ref["strategy"] == "progressive"
    scores = [a["scores"]["positive_score"] for a in ref["attempts"]]
    assert len(scores) == 3 and meta["validation"]["positive_score"] == max(scores)
    assert meta["validation"]["passed"] is False and "Low positive CLIP score" in meta["validation"]["reason"]
    validate_metadata(meta)
    # progressive: more steps on every retry, a fresh seed each time.
    steps = [a["params"]["steps"] for a in ref["attempts"]]
    assert steps[0] < steps[1] < steps[2]
    assert ref["attempts"][0]["params"]["seed"] == 5
    # Only the kept image (and its sidecar) remain; attempt files are gone.
    assert sorted(p.name for p in tmp_path.glob("v*")) == ["v.png", "v.png.json"]
    assert not any((tmp_path / "state" / "work").iterdir())


def test_passing_validation_stops_after_one_attempt(clip_env: Emulator, tmp_path: Path) -> None:
    # A fixed seed: with a random one the tiny CLIP's score falls below 5 for some images (flaky).
    code, out, err = run_cli("generate", "-w", TINY, "-p", "a dog by a lake", "--validate", "--seed", "1",
                             "--positive-threshold", "5", "--json-progress", "-o", "ok.png")
    assert code == 0, err
    events = json_lines(out)
    attempts = [e for e in events if e["type"] == "attempt"]
    assert len(attempts) == 1 and attempts[0]["passed"] is True
    assert attempts[0]["scores"]["positive_score"] >= 5
    assert events[-1]["type"] == "result" and events[-1]["status"] == "passed"
    meta = _meta(tmp_path / "ok.png")
    assert meta["refinement"]["final_status"] == "passed" and meta["validation"]["passed"] is True
    validate_metadata(meta)
    code, shown, _ = run_cli("metadata", "show", "ok.png")
    assert code == 0 and "Validation:    passed" in shown


def test_delta_threshold_and_seed_search_strategy(clip_env: Emulator, tmp_path: Path) -> None:
    # No --validate: a threshold on the command line implies it.
    code, _, err = run_cli("generate", "-w", TINY, "-p", "a cat", "-n", "a dog", "--seed", "100",
                           "--positive-threshold", "1.5", "--delta-threshold", "90",
                           "--retry-strategy", "seed_search", "--max-attempts", "2", "-o", "d.png")
    assert code == 3, err
    assert "delta" in err
    ref = _meta(tmp_path / "d.png")["refinement"]
    assert [a["params"]["seed"] for a in ref["attempts"]] == [100, 1100]
    assert ref["strategy"] == "seed_search"


def test_unavailable_validator_is_a_config_error_before_queueing(gen_env: Emulator, tmp_path: Path,
                                                                 monkeypatch) -> None:
    monkeypatch.setenv("COMFY_GEN_CLIP_MODEL", str(tmp_path / "no-model-here"))
    before = gen_env.stats()["history_size"]
    code, _, err = run_cli("generate", "-w", TINY, "-p", "a cat", "--validate")
    assert code == 2 and "CLIP model folder not found" in err and "Traceback" not in err
    assert gen_env.stats()["history_size"] == before

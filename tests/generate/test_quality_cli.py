"""`comfy-gen generate --quality-score` against the emulator, scored on local tiny weights."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from comfy_gen.emulator import Emulator
from comfy_gen.metadata import validate_metadata
from tests.generate.helpers import chunks, json_lines, run_cli

TINY = "tiny-sd15"


def _meta(image: Path) -> dict:
    return json.loads(chunks(image)["comfygen_metadata"])


def test_quality_below_threshold_re_renders_and_keeps_the_best(gen_env: Emulator, quality_env, tmp_path: Path):
    before = gen_env.stats()["jobs_completed"]
    code, out, err = run_cli("generate", "-w", TINY, "-p", "a red car", "--seed", "7", "--quality-score",
                             "--quality-threshold", "9.9", "--max-attempts", "3", "--json-progress", "-o", "q.png")
    assert code == 3, err
    assert "Validation failed after 3 attempt(s)" in err and "Traceback" not in err
    assert gen_env.stats()["jobs_completed"] - before == 3
    attempts = [e for e in json_lines(out) if e["type"] == "attempt"]
    composites = [a["scores"]["quality_composite"] for a in attempts]
    assert len(composites) == 3 and all(not a["passed"] for a in attempts)
    meta = _meta(tmp_path / "q.png")
    ref = meta["refinement"]
    assert ref["final_status"] == "best_effort" and ref["strategy"] == "progressive"
    assert [a["params"]["steps"] for a in ref["attempts"]][0] < ref["attempts"][1]["params"]["steps"]
    best = max(range(3), key=lambda i: composites[i])
    assert meta["quality"]["composite_score"] == composites[best] == max(composites)
    assert meta["parameters"]["seed"] == ref["attempts"][best]["params"]["seed"]
    assert meta["quality"]["grade"] in "ABCDF" and meta["quality"]["missing"] == []
    assert meta["validation"]["verdicts"][0]["validator"] == "quality"
    assert "Low quality score" in meta["validation"]["reason"]
    validate_metadata(meta)
    assert sorted(p.name for p in tmp_path.glob("q*")) == ["q.png", "q.png.json"]


def test_threshold_zero_scores_once_and_clip_still_judges(gen_env: Emulator, quality_env, tmp_path: Path):
    code, out, err = run_cli("generate", "-w", TINY, "-p", "a dog by a lake", "--seed", "1", "--validate",
                             "--positive-threshold", "1", "--quality-threshold", "0", "--no-auto-retry",
                             "-o", "z.png")
    assert code == 0, err
    meta = _meta(tmp_path / "z.png")
    assert len(meta["refinement"]["attempts"]) == 1 and meta["refinement"]["final_status"] == "passed"
    assert [v["validator"] for v in meta["validation"]["verdicts"]] == ["quality", "clip", "technical"]
    assert meta["quality"]["composite_score"] is not None and meta["validation"]["positive_score"] is not None


def test_quality_mode_ignores_no_auto_retry_like_the_original(gen_env: Emulator, quality_env, tmp_path: Path):
    code, _, err = run_cli("generate", "-w", TINY, "-p", "a cat", "--seed", "3", "--quality-score",
                           "--quality-threshold", "9.9", "--no-auto-retry", "--max-attempts", "2",
                           "--retry-strategy", "seed_search", "-o", "s.png")
    assert code == 3, err
    ref = _meta(tmp_path / "s.png")["refinement"]
    assert [a["params"]["seed"] for a in ref["attempts"]] == [3, 1003]


def test_unavailable_quality_is_exit_2_before_rendering_and_missing_metrics_are_loud(
        gen_env: Emulator, quality_env, tiny_clip_dir: Path, monkeypatch, tmp_path: Path):
    monkeypatch.setitem(sys.modules, "pyiqa", None)
    monkeypatch.setenv("COMFY_GEN_CLIP_MODEL", str(tmp_path / "no-clip"))
    monkeypatch.setenv("COMFY_GEN_QUALITY_AESTHETIC_HEAD", str(tmp_path / "no-head.pth"))
    before = gen_env.stats()["history_size"]
    code, _, err = run_cli("generate", "-w", TINY, "-p", "a cat", "--quality-score")
    assert code == 2 and "No quality metric could be loaded" in err and "Traceback" not in err
    assert gen_env.stats()["history_size"] == before
    # Only the pyiqa metrics missing: it runs, and says so on stderr.
    monkeypatch.setenv("COMFY_GEN_QUALITY_AESTHETIC_HEAD", str(quality_env["head"]))
    monkeypatch.setenv("COMFY_GEN_CLIP_MODEL", str(tiny_clip_dir))
    code, _, err = run_cli("generate", "-w", TINY, "-p", "a cat", "--quality-threshold", "0.1",
                           "-o", str(tmp_path / "m.png"))
    assert code == 0, err
    assert "Warning: quality metric brisque is missing, left out of the composite: pyiqa is not usable" in err
    assert _meta(tmp_path / "m.png")["quality"]["missing"] == ["brisque", "niqe", "topiq_nr"]
    code, _, err = run_cli("generate", "-w", TINY, "-p", "a cat", "--quality-threshold", "11")
    assert code == 2 and "--quality-threshold must be between 0 and 10" in err


def test_root_generate_py_takes_the_quality_flags(gen_env: Emulator, quality_env, tmp_path: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("root_generate", Path(__file__).parents[2] / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from comfy_gen.config import reset_settings_cache

    reset_settings_cache()
    try:
        code = module.main(["--workflow", TINY, "--prompt", "a house", "--seed", "2", "--quality-score",
                            "--quality-threshold", "0.1", "-o", str(tmp_path / "r.png"), "--quiet"])
    except SystemExit as exc:
        code = exc.code
    assert code in (0, None)
    assert _meta(tmp_path / "r.png")["quality"]["composite_score"] >= 0.1

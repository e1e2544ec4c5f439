"""`comfy-gen generate --checks / --technical-checks`: the technical checks without a
CLIP model, a black render refined, and the flags' errors (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

from comfy_gen.emulator import Emulator
from tests.generate.helpers import run_cli

TINY = "tiny-sd15"


def test_technical_checks_alone_refine_a_black_render(gen_env: Emulator, tmp_path: Path) -> None:
    gen_env.faults.update({"black_images_next": 1})
    code, out, err = run_cli("generate", "-w", TINY, "-p", "a lighthouse", "--seed", "3", "--steps", "2",
                             "--technical-checks", "--retry-strategy", "seed_search", "-o", "t.png")
    assert code == 0, err
    meta = json.loads((tmp_path / "t.png.json").read_text())
    assert [v["validator"] for v in meta["validation"]["verdicts"]] == ["technical"]
    assert meta["validation"]["passed"] and meta["refinement"]["attempt"] == 2
    assert meta["refinement"]["attempts"][0]["scores"]["technical_mean"] == 0.0


def test_checks_flag_names_the_checks_and_bad_ones_exit_2(gen_env: Emulator, tmp_path: Path) -> None:
    gen_env.faults.update({"black_images_next": 2})
    code, out, err = run_cli("generate", "-w", TINY, "-p", "a lighthouse", "--seed", "3", "--steps", "2",
                             "--checks", "technical", "--max-attempts", "2", "-o", "b.png")
    assert code == 3, err                              # both attempts black: the best is kept, exit 3
    meta = json.loads((tmp_path / "b.png.json").read_text())
    assert meta["validation"]["reason"].startswith("Image is almost black: mean 0.0/255 (threshold 8)")
    code, _, err = run_cli("generate", "-w", TINY, "-p", "x", "--checks", "technical,nope")
    assert code == 2 and "--checks: unknown check 'nope'; known checks: clip," in err

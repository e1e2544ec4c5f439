"""`comfy-gen validate`: checks on images on disk, a table or JSON, exit 0 / 3 / 2.

Images are made here (a good picture, a black one, a duplicate); the prompt comes
from a sidecar when not given; bad input is one clear line and exit 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from comfy_gen.emulator.render import Picture, render
from tests.cli_ops.helpers import run_cli


@pytest.fixture
def batch(tmp_path: Path) -> Path:
    folder = tmp_path / "batch"
    (folder / "sub").mkdir(parents=True)
    render(Picture(256, 256, 1, "a red car")).save(folder / "good.png")
    Image.new("RGB", (256, 256)).save(folder / "black.png")
    render(Picture(256, 256, 2, "a blue sea")).save(folder / "sub" / "deep.jpg")
    (folder / "good.png.json").write_text("{}")   # sidecars and other files are not images to check
    return folder


def test_a_folder_prints_each_checks_verdict_and_exits_3_when_one_fails(batch):
    code, out, err = run_cli("validate", str(batch), "--checks", "technical")
    assert code == 3, err
    assert "black.png" in out and "good.png" in out and "deep.jpg" not in out
    assert "technical ✗ (almost black: mean 0.0/255 (threshold 8) (+2 more))" in out
    assert "technical ✓" in out and "2 image(s): 1 passed, 1 failed" in out

    code, out, _ = run_cli("validate", str(batch / "good.png"), str(batch / "sub"), "--checks", "technical")
    assert code == 0 and "2 image(s): 2 passed, 0 failed" in out


def test_json_options_and_duplicates_across_the_images(batch):
    Image.open(batch / "good.png").save(batch / "copy.png")
    code, out, _ = run_cli("validate", str(batch), "--recursive", "--checks", "technical", "--json",
                           "--threshold", "technical.duplicates=true", "--threshold", "technical.min_mean=off",
                           "--threshold", "technical.min_std=off", "--threshold", "technical.max_clipped=off")
    data = json.loads(out)
    assert code == 3 and data["passed"] == 3 and data["failed"] == 1
    rows = {Path(r["path"]).name: r for r in data["images"]}
    assert set(rows) == {"black.png", "copy.png", "good.png", "deep.jpg"}
    assert rows["black.png"]["passed"]                   # the dark checks were turned off
    assert not rows["good.png"]["passed"]                # copy.png comes first, in name order
    assert rows["good.png"]["verdicts"][0]["reason"] == "Near-duplicate of copy.png: hash distance 0 (threshold 5)"


def test_a_check_needing_a_prompt_reads_it_from_the_sidecar_or_says_it_has_none(batch, tmp_path):
    from comfy_gen.validation import BaseValidator, register_validator, unregister_validator

    class EchoValidator(BaseValidator):
        """Passes when the prompt mentions a car."""

        name = label = "echo"
        description = "test: the prompt mentions a car"

        def score_many(self, images, prompts, negatives=None):
            return [{"positive_score": 50.0 if "car" in p else 0.0} for p in prompts]

    register_validator("echo")(EchoValidator)
    try:
        (batch / "good.png.json").write_text(json.dumps({"input": {"prompt": "a red car"}}))
        code, out, _ = run_cli("validate", str(batch / "good.png"), str(batch / "black.png"),
                               "--checks", "echo", "--json")
        rows = {Path(r["path"]).name: r for r in json.loads(out)["images"]}
        assert code == 3
        assert rows["good.png"]["passed"] and rows["good.png"]["prompt"] == "a red car"
        assert rows["good.png"]["prompt_source"] == "sidecar"
        assert rows["black.png"]["verdicts"][0]["reason"] == "echo needs a prompt and this image has none"
        code, out, _ = run_cli("validate", str(batch / "black.png"), "--checks", "echo", "--prompt", "a car")
        assert code == 0 and "echo ✓" in out
        code, out, _ = run_cli("validate", "--list-checks")
        assert code == 0 and "echo  " in out and "technical  Black/NaN, blank" in out
    finally:
        unregister_validator("echo")


@pytest.mark.parametrize("args, message", [
    (["missing.png"], "missing.png: no such file or folder"),
    (["notes.txt"], "notes.txt: not an image comfy-gen can read"),
    (["good.png", "--checks", "technical,nope"], "--checks: unknown check 'nope'; known checks: clip,"),
    (["good.png", "--checks", "technical", "--threshold", "clip=20"], "'clip' is not one of the checks"),
    (["good.png", "--checks", "technical", "--threshold", "technical.blur=1"], "unknown option(s) blur"),
    (["good.png", "--checks", "technical", "--threshold", "technical.min_mean=dark"], "'dark' is not a number"),
    (["bomb.png", "--checks", "technical"], "possible decompression bomb); not decoded"),
    (["empty", "--checks", "technical"], "empty: no images in this folder (--recursive looks in subfolders)"),
    ([".", "--checks", "technical", "--max-images", "1"], "More than 1 images to check"),
    ([], "Name at least one image or folder"),
])
def test_bad_input_is_one_clear_line_and_exit_2(batch, monkeypatch, args, message):
    monkeypatch.chdir(batch)
    (batch / "notes.txt").write_text("not an image")
    (batch / "empty").mkdir(exist_ok=True)
    _bomb(batch / "bomb.png")
    code, out, err = run_cli("validate", *args)
    assert code == 2 and message in err and "Traceback" not in err + out


def _bomb(path: Path) -> None:
    """A valid PNG header claiming 100000 x 100000 pixels (nothing behind it is decoded)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))
                     + chunk(b"IEND", b""))

"""Video generation end to end: CLI and service against the emulator's video nodes.

The emulator writes real animated files (Pillow), so these tests read back the
frame count, the frame rate and the sidecar of what comfy-gen kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from comfy_gen.config import get_settings
from comfy_gen.emulator import Emulator
from comfy_gen.errors import ExecutionFailed
from comfy_gen.params import GenerationParams
from comfy_gen.service import GenerateRequest, InputImage, generate
from tests.generate.helpers import json_lines, run_cli

SIZE = ["--video-resolution", "128x96", "--steps", "2"]


def _frames(path: Path) -> tuple[int, int | None, tuple[int, int]]:
    with Image.open(path) as img:
        img.seek(0)
        img.load()
        return int(getattr(img, "n_frames", 1)), img.info.get("duration"), img.size


def _sidecar(path: Path) -> dict[str, Any]:
    return json.loads(path.with_name(path.name + ".json").read_text())


def test_text_to_video_cli_keeps_an_animated_webp_with_a_sidecar(gen_env: Emulator, tmp_path: Path) -> None:
    code, out, err = run_cli("generate", "-w", "ltxv-t2v", "-p", "a red kite over hills",
                             "--frames", "17", "--fps", "8", *SIZE, "--json-progress")
    assert code == 0, err
    result = json_lines(out)[-1]
    video = Path(result["file"])
    # The default name takes the video's own extension (not <time>.png).
    assert video.suffix == ".webp" and video.parent == (tmp_path / "output" / "adhoc").resolve()
    assert _frames(video) == (17, 125, (128, 96))
    meta = _sidecar(video)
    assert meta["parameters"]["frames"] == 17 and meta["parameters"]["fps"] == 8.0
    assert meta["parameters"]["resolution"] == [128, 96]
    assert meta["storage"]["format"] == "webp" and meta["storage"]["file_size_bytes"] == video.stat().st_size
    assert meta["storage"]["media"] == {"kind": "animation", "width": 128, "height": 96, "frames": 17,
                                        "fps": 8.0, "duration_seconds": 2.125}
    assert not video.read_bytes().startswith(b"\x89PNG")  # no PNG embedding for a video
    assert meta["comfy_gen"]["params"]["frames"] == 17


def test_length_alias_and_named_output_takes_the_video_extension(gen_env: Emulator, tmp_path: Path) -> None:
    code, out, err = run_cli("generate", "-w", "ltxv-t2v", "-p", "a kite", "--length", "9", *SIZE,
                             "-o", str(tmp_path / "kite.png"))
    assert code == 0, err
    assert out.strip() == str(tmp_path / "kite.webp")
    assert "saved as kite.webp instead of kite.png" in err
    assert _frames(tmp_path / "kite.webp")[0] == 9 and not (tmp_path / "kite.png").exists()


def test_frames_that_the_model_rounds_are_warned_about(gen_env: Emulator, tmp_path: Path) -> None:
    code, out, err = run_cli("generate", "-w", "ltxv-t2v", "-p", "a kite", "--frames", "12", *SIZE,
                             "-o", str(tmp_path / "k.webp"))
    assert code == 0, err
    assert "renders 8*k+1 frames, so the video will have 9; use 9 or 17" in err
    assert _frames(tmp_path / "k.webp")[0] == 9


def test_image_to_video_uses_the_input_image(gen_env: Emulator, tmp_path: Path, input_png: Path) -> None:
    code, out, err = run_cli("generate", "-w", "ltxv-i2v", "-p", "leaves moving", "-i", str(input_png),
                             "--frames", "9", "--fps", "12", *SIZE, "-o", str(tmp_path / "i2v.webp"))
    assert code == 0, err
    frames, duration, size = _frames(tmp_path / "i2v.webp")
    assert (frames, duration, size) == (9, 83, (128, 96))
    assert _sidecar(tmp_path / "i2v.webp")["parameters"]["fps"] == 12.0


VIDEO_USAGE_ERRORS = [
    pytest.param(["--frames", "0"], "frames must be an integer in 1..1024", id="frames-range"),
    pytest.param(["--fps", "0"], "fps must be > 0", id="fps-range"),
    pytest.param(["--fps", "500"], "fps must be > 0 and <= 120", id="fps-too-high"),
    pytest.param(["--video-resolution", "128"], "Invalid size", id="bad-video-resolution"),
    pytest.param(["--video-resolution", "128x96", "--width", "256"], "contradicts --width", id="resolution-conflict"),
    pytest.param(["--video-resolution", "100x96"], "divisible by 8", id="resolution-not-multiple-of-8"),
    pytest.param(["--transparent-subject", "cat"], "applies to --transparent", id="subject-without-transparent"),
    pytest.param(["--transparent"], "writes a video", id="transparent-on-a-video-workflow"),
]


@pytest.mark.parametrize("extra, message", VIDEO_USAGE_ERRORS)
def test_video_usage_errors_exit_2_before_queueing(gen_env: Emulator, extra: list[str], message: str) -> None:
    before = gen_env.stats()["jobs_completed"]
    code, _, err = run_cli("generate", "-w", "ltxv-t2v", "-p", "a kite", *extra)
    assert code == 2, err
    assert message in err and "Traceback" not in err
    assert gen_env.stats()["jobs_completed"] == before


def test_service_renders_the_vhs_path_as_gifs_output(gen_env: Emulator) -> None:
    # The original's VHS_VideoCombine path; the emulator writes image/gif (ffmpeg formats need ffmpeg).
    params = GenerationParams(prompt="a kite", seed=4, steps=2, width=128, height=96, frames=9, fps=10.0,
                              extra=(("10.format", "image/gif"),))
    result = generate(GenerateRequest(workflow="wan22-t2v-vhs", params=params, output="vhs/"),
                      settings=get_settings())
    assert result.file is not None and result.file.suffix == ".gif"
    assert result.file.parent.name == "vhs"
    assert _frames(result.file) == (9, 100, (128, 96))
    meta = _sidecar(result.file)
    assert meta["storage"]["media"]["kind"] == "animation" and meta["parameters"]["frames"] == 9
    assert meta["workflow"]["name"] == "wan22-t2v-vhs"
    # The server reported the file under `gifs`, with VHS's own fields.
    entry = gen_env_history_output(gen_env, result.prompt_id)
    assert entry["format"] == "image/gif" and entry["frame_rate"] == 10.0
    assert entry["workflow"].endswith(".png")  # VHS's first-frame PNG


def gen_env_history_output(emu: Emulator, prompt_id: str | None) -> dict[str, Any]:
    import httpx

    history = httpx.get(f"{emu.url}/history/{prompt_id}").json()[str(prompt_id)]
    return next(ui["gifs"][0] for ui in history["outputs"].values() if "gifs" in ui)


def test_vhs_container_format_fails_clearly_on_the_emulator(gen_env: Emulator) -> None:
    params = GenerationParams(prompt="a kite", seed=4, steps=1, width=128, height=96, frames=5)
    with pytest.raises(ExecutionFailed) as info:
        generate(GenerateRequest(workflow="wan22-t2v-vhs", params=params), settings=get_settings())
    assert "video/h264-mp4" in str(info.value) and "image/gif and image/webp" in str(info.value)


def test_service_image_to_video_with_a_confined_input(gen_env: Emulator, tmp_path: Path) -> None:
    source = tmp_path / "output" / "start.png"
    source.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 64), (10, 200, 30)).save(source)
    params = GenerationParams(prompt="grass waving", seed=2, steps=1, width=128, height=96, frames=9)
    result = generate(GenerateRequest(workflow="ltxv-i2v", params=params, input_image=InputImage("start.png"),
                                      output="clips/i2v"), settings=get_settings())
    assert result.file is not None and result.file.name == "i2v.webp"
    assert _frames(result.file)[0] == 9


def test_validating_a_container_video_is_refused_before_queueing(gen_env: Emulator) -> None:
    before = gen_env.stats()["jobs_completed"]
    code, _, err = run_cli("generate", "-w", "wan22-t2v-vhs", "-p", "a kite", "--validate")
    assert code == 2 and "container video (MP4/WEBM)" in err and "Traceback" not in err
    assert gen_env.stats()["jobs_completed"] == before


def test_an_animated_video_is_validated_on_its_first_frame(clip_env: Emulator, tmp_path: Path) -> None:
    code, out, err = run_cli("generate", "-w", "ltxv-t2v", "-p", "a red kite", "--frames", "9", *SIZE,
                             "--validate", "--positive-threshold", "0", "-o", str(tmp_path / "v.webp"),
                             "--json-progress")
    assert code == 0, err
    result = json_lines(out)[-1]
    assert result["status"] == "passed" and result["file"].endswith("v.webp")
    meta = _sidecar(tmp_path / "v.webp")
    assert meta["validation"]["passed"] is True and meta["quality"]["prompt_adherence"]


def test_video_sidecar_is_valid_against_the_metadata_schema(gen_env: Emulator, tmp_path: Path) -> None:
    from comfy_gen.metadata import validate_metadata

    code, _, err = run_cli("generate", "-w", "ltxv-t2v", "-p", "a kite", "--frames", "9", "--fps", "6", *SIZE,
                           "-o", str(tmp_path / "s.webp"))
    assert code == 0, err
    validate_metadata(_sidecar(tmp_path / "s.webp"))

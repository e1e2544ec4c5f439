"""Expected failures that used to escape as tracebacks, late errors or wrong answers.

Each ends in the project's error with exit 2 and no traceback, and where it
matters, before any job reached the (emulated) GPU.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import zlib
from pathlib import Path

import pytest

from comfy_gen.cli import main
from comfy_gen.config import reset_settings_cache
from comfy_gen.emulator import Emulator
from comfy_gen.errors import UsageError
from comfy_gen.outputs import check_output_folder, localise_paths
from tests.conftest import REPO_ROOT

TINY = "tiny-sd15"


@pytest.fixture
def gen_env(emu: Emulator, use_backend) -> Emulator:
    """The shared emulator as COMFY_GEN_COMFYUI_URL."""
    use_backend(emu.url)
    return emu


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:  # anything else escaping is a traceback
        main(list(args))
    out = capsys.readouterr()
    return int(info.value.code or 0), out.out + out.err


def _unwritable(tmp_path: Path) -> Path:
    """A folder this process cannot create files in (root ignores mode bits: use /proc)."""
    if os.geteuid() == 0:
        return Path("/proc/comfy-gen-not-writable")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder / "sub"


def png_bytes(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


# --- the output folder, checked before rendering -------------------------------------

def test_check_output_folder_names_the_file_in_the_way(tmp_path: Path) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("x")
    with pytest.raises(UsageError, match="taken is a file, not a folder"):
        check_output_folder(blocker)
    with pytest.raises(UsageError, match="taken is a file, not a folder"):
        check_output_folder(blocker / "deeper" / "still")
    with pytest.raises(UsageError, match="is not writable"):
        check_output_folder(_unwritable(tmp_path))
    assert check_output_folder(tmp_path / "new" / "folder") == tmp_path / "new" / "folder"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    assert not list(tmp_path.glob(".comfy-gen-write-check-*"))


@pytest.mark.parametrize("where", ["under-a-file", "not-writable"])
def test_generate_refuses_an_unwritable_output_before_queueing(where: str, gen_env: Emulator, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    if where == "under-a-file":
        (tmp_path / "file").write_text("x")
        target = tmp_path / "file" / "out.png"
    else:
        target = _unwritable(tmp_path) / "out.png"
    before = gen_env.stats()["jobs_completed"]
    code, output = run_cli(capsys, "generate", "-w", TINY, "-p", "a cat", "-o", str(target))
    assert code == 2 and "Traceback" not in output, output
    assert "Cannot write to the output folder" in output
    assert gen_env.stats()["jobs_completed"] == before and gen_env.stats()["queue_pending"] == 0


def test_run_refuses_an_output_dir_that_is_a_file_before_starting_prefect(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "out").write_text("not a folder")
    monkeypatch.setenv("COMFY_GEN_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("COMFY_GEN_COMFYUI_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    reset_settings_cache()
    code, output = run_cli(capsys, "run", str(REPO_ROOT / "recipes" / "demo.yaml"))
    assert code == 2 and "Traceback" not in output, output
    assert "output folder of the recipe" in output and "is a file, not a folder" in output
    assert "Flow run" not in output  # nothing of Prefect started


def test_run_refuses_max_items_below_one_before_starting_prefect(capsys: pytest.CaptureFixture[str]) -> None:
    code, output = run_cli(capsys, "run", str(REPO_ROOT / "recipes" / "demo.yaml"), "--max-items", "0")
    assert code == 2 and "--max-items" in output and "Flow run" not in output, output


# --- ports ----------------------------------------------------------------------------

def test_bad_ports_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        code, output = run_cli(capsys, "emulator", "--port", str(taken.getsockname()[1]))
        assert code == 2 and "cannot listen on" in output and "Traceback" not in output, output
    finally:
        taken.close()
    for args in (["emulator", "--port", "70000"], ["emulator", "--port", "-1"], ["up", "--port", "99999"],
                 ["emulator", "--step-time", "nan"]):
        code, output = run_cli(capsys, *args)
        assert code == 2 and "Traceback" not in output, (args, output)


@pytest.mark.parametrize("variable, value, expected", [
    ("COMFY_GEN_MINIO_ENDPOINT", "127.0.0.1:99999", "COMFY_GEN_MINIO_ENDPOINT"),
    ("COMFY_GEN_MINIO_ENDPOINT", "127.0.0.1:abc", "the port must be a number"),
    ("COMFY_GEN_MINIO_ENDPOINT", "user:hunter2@127.0.0.1:0", "the port must be a number"),
])
def test_storage_endpoint_ports_are_settings_errors(variable: str, value: str, expected: str,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(variable, value)
    reset_settings_cache()
    code, output = run_cli(capsys, "images", "list")
    assert code == 2 and expected in output and "Traceback" not in output, output
    assert "hunter2" not in output


# --- NUL bytes and invalid UTF-8 ---------------------------------------------------------

@pytest.mark.parametrize("args, expected", [
    (["-p", "a\x00b"], "The value of -p contains a NUL character (at 1)"),
    (["-p", "x", "--negative-prompt", "n\x00"], "The value of --negative-prompt contains a NUL"),
    (["-p", "x", "--checkpoint", "a\x00.safetensors"], "The value of --checkpoint contains a NUL"),
    (["-p", "x", "--lora", "a\x00b:1"], "The value of --lora contains a NUL"),
    (["-p", "x", "-o", "o\x00.png"], "The value of -o contains a NUL"),
    (["-p", "x", "--project", "p\x00"], "The value of --project contains a NUL"),
    (["-p", "bad\udcff utf8"], "The value of -p is not valid UTF-8 (byte 0xff at 3)"),
    (["-p", "x", "-o", "\udcc3.png"], "The value of -o is not valid UTF-8"),
], ids=["prompt-nul", "negative-nul", "checkpoint-nul", "lora-nul", "output-nul", "project-nul",
        "prompt-utf8", "output-utf8"])
def test_nul_and_invalid_utf8_parameters_are_refused_before_queueing(
        args: list[str], expected: str, gen_env: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    before = gen_env.stats()["jobs_completed"]
    code, output = run_cli(capsys, "generate", "-w", TINY, "--steps", "1", *args)
    assert code == 2 and expected in output and "Traceback" not in output, output
    assert gen_env.stats()["jobs_completed"] == before


@pytest.mark.parametrize("change, expected", [
    ({"params": {"prompt": "a\x00b"}}, "prompt contains a NUL character (at 1)"),
    ({"params": {"prompt": "ok", "negative_prompt": "\udcff"}}, "negative_prompt is not valid UTF-8"),
    ({"params": {"prompt": "ok", "loras": [{"name": "a\x00", "strength": 1}]}}, "loras[0].name contains a NUL"),
    ({"workflow_name": "w\x00"}, "workflow_name contains a NUL"),
    ({"output": "o\x00.png"}, "output contains a NUL"),
    ({"organization": {"project": "p\x00"}}, "organization.project contains a NUL"),
], ids=["prompt", "negative-utf8", "lora", "workflow-name", "output", "project"])
def test_the_service_refuses_nul_and_invalid_utf8_from_any_face(change: dict, expected: str,
                                                                tmp_path: Path) -> None:
    from comfy_gen.config import Settings
    from comfy_gen.params import GenerationParams
    from comfy_gen.service import GenerateRequest, generate
    from comfy_gen.service.model import Organization

    params = GenerationParams.from_dict(change.pop("params", {"prompt": "ok"}))
    if "organization" in change:
        change["organization"] = Organization(**change["organization"])
    request = GenerateRequest(TINY, params, **change)
    with pytest.raises(UsageError, match=expected.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        generate(request, settings=Settings(output_dir=tmp_path, comfyui_url="http://127.0.0.1:9"))


def test_settings_values_that_are_not_utf8_are_refused(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COMFY_GEN_OUTPUT_DIR", "/tmp/\udcff")
    reset_settings_cache()
    code, output = run_cli(capsys, "storage", "status")
    assert code == 2 and "COMFY_GEN_OUTPUT_DIR" in output and "not valid UTF-8 (byte 0xff" in output, output


# --- decompression bombs ------------------------------------------------------------------

@pytest.mark.parametrize("size, expected", [((10000, 10000), "100000000 pixels (possible decompression bomb)"),
                                            ((20000, 8), "each side may be at most 16384")])
def test_a_decompression_bomb_input_image_is_a_clear_error(size: tuple[int, int], expected: str,
                                                           gen_env: Emulator, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bytes(*size))  # a few dozen bytes that claim a huge image
    code, output = run_cli(capsys, "generate", "-w", "sd15-img2img", "-p", "x", "-i", str(bomb))
    assert code == 2 and expected in output and "bomb.png" in output and "Traceback" not in output, output


# --- no absolute local paths in what is published ------------------------------------------

def test_published_metadata_holds_no_absolute_local_path(gen_env: Emulator, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from comfy_gen.metadata import png_text_chunks

    mine = tmp_path / "wfs" / "mine.json"
    mine.parent.mkdir()
    mine.write_bytes((REPO_ROOT / "workflows" / f"{TINY}.json").read_bytes())
    out = tmp_path / "renders" / "a.png"
    code, output = run_cli(capsys, "generate", "-w", str(mine), "-p", "/imagine a lighthouse", "-o", str(out),
                           "--steps", "1")
    assert code == 0, output
    for text in (png_text_chunks(out)["comfygen_metadata"], out.with_name("a.png.json").read_text()):
        assert str(tmp_path) not in text
        assert json.loads(text)["workflow"]["name"] == "../wfs/mine.json"
        assert json.loads(text)["input"]["prompt"] == "/imagine a lighthouse"  # text is not a path
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, output = run_cli(capsys, "reproduce", str(out), "-o", "again.png")
    assert code == 0 and (elsewhere / "again.png").is_file(), output


def test_localise_paths_rewrites_only_existing_absolute_paths(tmp_path: Path) -> None:
    (tmp_path / "wf.json").write_text("{}")
    doc = {"workflow": {"name": str(tmp_path / "wf.json")}, "input": {"prompt": str(tmp_path)},
           "x": ["/definitely/not/here", str(tmp_path / "wf.json")], "n": 3}
    assert localise_paths(doc, tmp_path / "out") == {
        "workflow": {"name": "../wf.json"}, "input": {"prompt": str(tmp_path)},
        "x": ["/definitely/not/here", "../wf.json"], "n": 3}

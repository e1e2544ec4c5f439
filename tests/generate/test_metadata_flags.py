"""Where metadata goes: PNG text chunks before the image data, --no-embed-metadata, --no-metadata."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from PIL import Image, PngImagePlugin

from comfy_gen.emulator import Emulator
from comfy_gen.metadata import METADATA_CHUNK, PARAMETERS_CHUNK, PNG_SIGNATURE, embed_png_metadata
from tests.generate.helpers import run_cli, strip_comfy_gen_chunks

TINY = "tiny-sd15"


def _chunk_list(path: Path) -> list[tuple[bytes, bytes]]:
    """(type, keyword or b"") per chunk, in file order."""
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    out, pos = [], len(PNG_SIGNATURE)
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        ctype, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        out.append((ctype, body.partition(b"\0")[0] if ctype in (b"tEXt", b"iTXt", b"zTXt") else b""))
        pos += 12 + length
    return out


def _comfyui_like_png(path: Path) -> Path:
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps({"1": {"class_type": "SaveImage", "inputs": {}}}))
    info.add_text("workflow", json.dumps({"nodes": []}))
    Image.new("RGB", (32, 24), (10, 90, 30)).save(path, pnginfo=info)
    return path


def _assert_ours_before_idat(path: Path) -> None:
    chunks = _chunk_list(path)
    first_idat = next(i for i, (ctype, _) in enumerate(chunks) if ctype == b"IDAT")
    ours = [i for i, (_, key) in enumerate(chunks) if key in (METADATA_CHUNK.encode(), PARAMETERS_CHUNK.encode())]
    assert len(ours) == 2 and max(ours) < first_idat, chunks


def test_chunks_go_before_idat_and_pil_sees_them_without_decoding(tmp_path: Path) -> None:
    png = _comfyui_like_png(tmp_path / "c.png")
    original = png.read_bytes()
    meta = {"input": {"prompt": "a lighthouse at dusk"}, "parameters": {"steps": 4}, "workflow": {}}
    embed_png_metadata(png, meta)
    _assert_ours_before_idat(png)
    with Image.open(png) as image:  # no load(): only the chunks before IDAT are read
        assert json.loads(image.info[METADATA_CHUNK])["input"]["prompt"] == "a lighthouse at dusk"
        assert image.info[PARAMETERS_CHUNK].startswith("a lighthouse at dusk\nSteps: 4")
        assert "prompt" in image.info and "workflow" in image.info  # ComfyUI's own chunks stay
    assert strip_comfy_gen_chunks(png) == original  # everything else byte for byte, same order
    # embedding again replaces ours (still one of each, still before IDAT)
    embed_png_metadata(png, {**meta, "input": {"prompt": "again"}})
    _assert_ours_before_idat(png)
    with Image.open(png) as image:
        assert json.loads(image.info[METADATA_CHUNK])["input"]["prompt"] == "again"


def test_generated_png_has_metadata_before_idat(gen_env: Emulator, tmp_path: Path) -> None:
    code, _, err = run_cli("generate", "-w", TINY, "-p", "a barn in a field", "--steps", "2", "-o", "b.png")
    assert code == 0, err
    _assert_ours_before_idat(tmp_path / "b.png")
    with Image.open(tmp_path / "b.png") as image:
        meta = json.loads(image.info[METADATA_CHUNK])
    assert meta["storage"]["file_size_bytes"] == (tmp_path / "b.png").stat().st_size


def test_no_embed_metadata_writes_the_sidecar_only(gen_env: Emulator, tmp_path: Path) -> None:
    code, _, err = run_cli("generate", "-w", TINY, "-p", "a barn", "--steps", "2", "-o", "s.png",
                           "--no-embed-metadata")
    assert code == 0, err
    png = tmp_path / "s.png"
    keys = {key for _, key in _chunk_list(png)}
    assert METADATA_CHUNK.encode() not in keys and PARAMETERS_CHUNK.encode() not in keys
    assert b"prompt" in keys  # what ComfyUI embedded is still there
    sidecar = json.loads((tmp_path / "s.png.json").read_text())
    assert sidecar["input"]["prompt"] == "a barn"
    assert sidecar["storage"]["file_size_bytes"] == png.stat().st_size
    code, shown, _ = run_cli("metadata", "show", "s.png")  # read back from the sidecar
    assert code == 0 and "a barn" in shown


def test_no_metadata_writes_neither(gen_env: Emulator, tmp_path: Path) -> None:
    code, _, err = run_cli("generate", "-w", TINY, "-p", "a barn", "--steps", "2", "-o", "n.png", "--no-metadata")
    assert code == 0, err
    assert not (tmp_path / "n.png.json").exists()
    assert METADATA_CHUNK.encode() not in {key for _, key in _chunk_list(tmp_path / "n.png")}

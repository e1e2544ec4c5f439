"""`generate --upload` against SeaweedFS, and with object storage down."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from comfy_gen.emulator import Emulator
from comfy_gen.metadata import png_text_chunks
from comfy_gen.storage import Outbox
from tests.generate.helpers import run_cli

TINY = "tiny-sd15"


def test_upload_stores_image_with_metadata_and_sidecar(gen_env: Emulator, s3_env, s3_server,
                                                       tmp_path: Path) -> None:
    code, out, err = run_cli("generate", "-w", TINY, "-p", "a sailing boat", "--seed", "3", "--upload",
                             "-o", "boat.png")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0] == str(tmp_path / "boat.png") and lines[1].startswith("http")
    client = s3_server.client()
    keys = sorted(o.object_name for o in client.list_objects(s3_env.minio_bucket, recursive=True))
    assert len(keys) == 2 and keys[0].startswith("adhoc/") and keys[0].endswith("_boat.png")
    assert keys[1] == keys[0] + ".json"
    stored = tmp_path / "stored.png"
    stored.write_bytes(client.get_object(s3_env.minio_bucket, keys[0]).read())
    # The stored copy carries the metadata (embedded before the upload) and ComfyUI's graph.
    found = png_text_chunks(stored)
    assert {"prompt", "comfygen_metadata", "parameters"} <= set(found)
    assert stored.read_bytes() == (tmp_path / "boat.png").read_bytes()
    side = json.loads(client.get_object(s3_env.minio_bucket, keys[1]).read())
    assert side["parameters"]["seed"] == 3
    local = json.loads((tmp_path / "boat.png.json").read_text())
    assert local["storage"]["url"] == lines[1] and local["storage"]["key"] == keys[0]
    assert Outbox.from_settings(s3_env).count() == 0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_storage_down_keeps_image_and_queues_it(gen_env: Emulator, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMFY_GEN_MINIO_ENDPOINT", f"127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("COMFY_GEN_MINIO_ACCESS_KEY", "test-access")
    monkeypatch.setenv("COMFY_GEN_MINIO_SECRET_KEY", "test-secret-key")
    code, out, err = run_cli("generate", "-w", TINY, "-p", "a sailing boat", "--upload", "-o", "kept.png")
    assert code == 0, err
    assert "Warning: upload failed" in err and "outbox" in err and "Traceback" not in err
    assert (tmp_path / "kept.png").is_file() and (tmp_path / "kept.png.json").is_file()
    from comfy_gen.config import get_settings

    pending = Outbox.from_settings(get_settings()).pending()
    assert sorted(Path(e.local_path).name for e in pending) == ["kept.png", "kept.png.json"]

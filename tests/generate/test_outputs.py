"""Keeping an output (final name, metadata, sidecar) and publishing it (local, SeaweedFS, outbox)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from PIL import Image

from comfy_gen.config import Settings
from comfy_gen.generation import Attempt, Outcome
from comfy_gen.metadata import png_text_chunks
from comfy_gen.outputs import (KeptOutput, OutputContext, Publication, build_output_metadata, keep_output,
                               object_key_for, publish_output, publish_with_settings)
from comfy_gen.params import GenerationParams
from comfy_gen.storage import LocalOnlyStorage, Outbox


def _attempt_file(folder: Path) -> Path:
    path = folder / "work" / "attempt_a1.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), (200, 10, 10)).save(path)
    return path


def _outcome(file: Path) -> Outcome:
    attempt = Attempt(number=1, params=GenerationParams(prompt="a red square", seed=4), prompt_id="p1",
                      files=[file], elapsed=0.5)
    return Outcome(attempts=[attempt], best=attempt, status="unvalidated")


def _kept(tmp_path: Path, name: str = "red.png") -> KeptOutput:
    source = _attempt_file(tmp_path)
    context = OutputContext(workflow_name="tiny-sd15", params=GenerationParams(prompt="a red square", seed=4),
                            organization={"project": "demo", "batch_id": None, "tags": "k:v"})
    target = tmp_path / "out" / name
    return keep_output(source, target, key=object_key_for(context, target),
                       metadata=build_output_metadata(context, _outcome(source)))


def test_keep_output_moves_embeds_and_records_the_stored_size(tmp_path: Path) -> None:
    kept = _kept(tmp_path)
    assert kept.file == tmp_path / "out" / "red.png" and kept.file.is_file()
    assert not (tmp_path / "work" / "attempt_a1.png").exists()  # moved, not copied
    assert kept.key.startswith("adhoc/") and kept.key.endswith("_red.png")
    size = kept.file.stat().st_size
    side = json.loads(kept.sidecar.read_text()) if kept.sidecar else {}
    embedded = json.loads(png_text_chunks(kept.file)["comfygen_metadata"])
    assert side["storage"]["file_size_bytes"] == embedded["storage"]["file_size_bytes"] == size
    assert side["storage"]["format"] == "png" and side["organization"]["tags"] == {"k": "v"}
    assert sorted((tmp_path / "out").iterdir()) == [kept.file, kept.sidecar]  # no staging file left


def test_keep_output_without_metadata_copies_the_pixels_only(tmp_path: Path) -> None:
    source = _attempt_file(tmp_path)
    original = source.read_bytes()
    kept = keep_output(source, tmp_path / "plain.png", key="adhoc/plain.png", metadata=None)
    assert kept.sidecar is None and kept.file.read_bytes() == original


def test_publish_without_object_storage_is_local_only(tmp_path: Path) -> None:
    kept = _kept(tmp_path)
    assert publish_output(kept, LocalOnlyStorage(tmp_path), None) == Publication("local-only")


def test_publish_to_seaweedfs_uploads_then_skips(tmp_path: Path, s3_storage, s3_settings, s3_server) -> None:
    kept = _kept(tmp_path)
    outbox = Outbox.from_settings(s3_settings)
    first = publish_output(kept, s3_storage, outbox)
    assert first.state == "uploaded" and first.key == kept.key and first.url and first.error is None
    stored = s3_server.client().get_object(s3_settings.minio_bucket, kept.key).read()
    assert stored == kept.file.read_bytes()
    # The local sidecar learns the URL after the upload.
    assert json.loads(kept.sidecar.read_text())["storage"]["url"] == first.url  # type: ignore[union-attr]
    assert publish_output(kept, s3_storage, outbox).state == "skipped"
    assert outbox.count() == 0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_publish_to_unreachable_storage_queues_in_the_outbox(tmp_path: Path) -> None:
    settings = Settings(output_dir=tmp_path / "output", minio_endpoint=f"127.0.0.1:{_closed_port()}",
                        minio_access_key="test-access", minio_secret_key="test-secret-key", http_retries=1)
    kept = _kept(tmp_path)
    publication = publish_with_settings(kept, settings)
    assert publication.state == "queued" and publication.key == kept.key
    assert sorted(Path(e.local_path).name for e in Outbox.from_settings(settings).pending()) == \
        ["red.png", "red.png.json"]


def test_adhoc_output_path_confined_is_relative_to_the_output_folder(tmp_path: Path) -> None:
    from comfy_gen.outputs import adhoc_output_path

    out = (tmp_path / "output").resolve()
    settings = Settings(output_dir=out)
    assert adhoc_output_path(settings, "a.png") == out / "a.png"
    in_folder = adhoc_output_path(settings, "sub/")  # a folder gets a UTC-timestamped name
    assert in_folder.parent == out / "sub" and in_folder.suffix == ".png"
    assert adhoc_output_path(settings, None).parent == out / "adhoc"

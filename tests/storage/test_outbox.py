"""The outbox: an outage during a batch loses nothing, and sync uploads each file once."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from comfy_gen.errors import BucketNotFound, StorageAuthError
from comfy_gen.storage import LocalOnlyStorage, Outbox, upload_files, upload_to_minio
from comfy_gen.storage.outbox import storage_target
from comfy_gen.storage.s3 import S3Storage
from tests.conftest import REPO_ROOT
from tests.fixtures.s3 import SeaweedServer
from tests.storage.helpers import make_png


A, B = "http://store-a:9000/bucket", "http://store-b:9000/bucket"


def _batch(tmp_path: Path, n: int, prefix: str = "batch") -> list[tuple[Path, str]]:
    return [(make_png(tmp_path / f"src/{i}.png", size=(16 + i, 16)), f"{prefix}/{i:03d}.png") for i in range(n)]


def test_outbox_dedupes_by_key_and_survives_reopen(tmp_path: Path) -> None:
    png = make_png(tmp_path / "a.png")
    box = Outbox(tmp_path / ".outbox")
    box.add(png, "k/a.png", "image/png", target=A)
    box.add(png, "k/a.png", "image/png", target=A, error="again")
    box.add(png, "k/b.png", target=A)
    again = Outbox(tmp_path / ".outbox")
    assert [e.key for e in again.pending()] == ["k/a.png", "k/b.png"]
    assert again.count() == 2 and again.pending()[0].last_error == "again"
    # a stale version (re-queued meanwhile) is not removed; the current one is
    stale = again.pending()[0].version - 1
    assert not again.remove("k/a.png", target=A, version=stale)
    assert again.remove("k/a.png", target=A, version=again.pending()[0].version)
    assert again.count() == 1
    # the same key for another store is another entry
    again.add(png, "k/b.png", target=B)
    assert again.count() == 2 and again.count(B) == 1 and [e.target for e in again.pending(B)] == [B]


def test_outbox_is_safe_across_processes(tmp_path: Path) -> None:
    png = make_png(tmp_path / "a.png")
    code = ("import sys; from comfy_gen.storage import Outbox; box = Outbox(sys.argv[1]); "
            "[box.add(sys.argv[2], f'p{sys.argv[3]}/{i}.png', target='http://s:9000/b') for i in range(40)]")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "box"), str(png), str(n)],
                              cwd=REPO_ROOT) for n in range(3)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    assert Outbox(tmp_path / "box").count() == 120


def test_outage_during_batch_then_sync_uploads_each_once(s3_server: SeaweedServer, s3_storage: S3Storage,
                                                         s3_settings, tmp_path: Path) -> None:
    box = Outbox.from_settings(s3_settings)
    files = _batch(tmp_path, 12)
    first = upload_files(s3_storage, files[:4], box, workers=4)
    assert all(r is not None for r in first)

    s3_server.stop()
    try:
        started = time.monotonic()
        results = upload_files(s3_storage, files[4:], box, workers=4, retries=1, backoff=0.05)
        elapsed = time.monotonic() - started
        assert results == [None] * 8          # no exception: the images stay local, queued
        assert elapsed < 10
        assert sorted(e.key for e in box.pending()) == [k for _, k in files[4:]]
        assert all(e.last_error and "unreachable" in e.last_error for e in box.pending())
        # a sync while still down keeps everything queued
        report = box.sync(s3_storage, workers=4)
        assert report.uploaded == [] and report.remaining == 8
    finally:
        s3_server.start()

    report = box.sync(s3_storage, workers=8)
    assert sorted(report.uploaded) == [k for _, k in files[4:]] and report.failed == {}
    assert report.remaining == 0 and box.count() == 0
    keys = [o.key for o in s3_storage.list("batch/")]
    assert sorted(keys) == [k for _, k in files] and len(keys) == len(set(keys)) == 12
    # nothing left to do: a second sync uploads nothing
    assert box.sync(s3_storage).uploaded == []


def test_auth_error_is_recorded_then_raised(s3_server: SeaweedServer, s3_bucket: str, tmp_path: Path) -> None:
    box = Outbox(tmp_path / ".outbox")
    bad = S3Storage(s3_server.endpoint, s3_server.access_key, "wrong-secret-xyz", s3_bucket)
    files = _batch(tmp_path, 3)
    with pytest.raises(StorageAuthError):
        upload_files(bad, files, box, workers=3)
    assert box.count() == 3
    with pytest.raises(StorageAuthError):
        box.sync(bad)
    assert box.count() == 3 and all(e.attempts == 1 for e in box.pending())


def test_missing_bucket_is_recorded_then_raised(s3_server: SeaweedServer, tmp_path: Path) -> None:
    box = Outbox(tmp_path / ".outbox")
    storage = S3Storage(s3_server.endpoint, s3_server.access_key, s3_server.secret_key, "cg-missing-bucket")
    with pytest.raises(BucketNotFound):
        upload_files(storage, _batch(tmp_path, 2), box)
    assert box.count() == 2


def test_upload_files_keeps_order_and_skips_unchanged(s3_storage: S3Storage, tmp_path: Path) -> None:
    files = _batch(tmp_path, 6, prefix="ord")
    results = upload_files(s3_storage, files, Outbox(tmp_path / ".outbox"), workers=3)
    assert [r.key for r in results if r] == [k for _, k in files]
    again = upload_files(s3_storage, files, Outbox(tmp_path / ".outbox"), workers=3)
    assert all(r is not None and r.skipped for r in again)


def test_local_only_storage_needs_no_outbox(tmp_path: Path) -> None:
    box = Outbox(tmp_path / ".outbox")
    results = upload_files(LocalOnlyStorage(tmp_path), _batch(tmp_path, 2), box)
    assert all(r is not None and r.url.startswith("file://") for r in results)
    assert box.count() == 0
    # entries queued for a real store are not drained into local-only storage
    box.add(tmp_path / "src/0.png", "k/0.png", target=A)
    report = box.sync(LocalOnlyStorage(tmp_path))
    assert report.uploaded == [] and report.orphaned == {"k/0.png": A} and box.count() == 1


def test_upload_to_minio_facade(s3_server: SeaweedServer, s3_settings, tmp_path: Path) -> None:
    png = make_png(tmp_path / "out.png")
    url = upload_to_minio(str(png), "20260104_120000_output.png", settings=s3_settings)
    assert url == f"http://{s3_server.endpoint}/{s3_settings.minio_bucket}/20260104_120000_output.png"
    # a bad bucket: None (seed semantics), but queued so nothing is lost
    broken = s3_settings.model_copy(update={"minio_bucket": "cg-nope-nope"})
    assert upload_to_minio(str(png), "x.png", settings=broken) is None
    assert [e.key for e in Outbox.from_settings(broken).pending()] == ["x.png"]
    # not configured: None, nothing queued
    local = s3_settings.model_copy(update={"minio_endpoint": None, "output_dir": tmp_path / "o2"})
    assert upload_to_minio(str(png), "y.png", settings=local) is None
    assert Outbox.from_settings(local).count() == 0


def test_entries_are_only_uploaded_to_the_store_they_were_queued_for(
        s3_server: SeaweedServer, s3_storage: S3Storage, tmp_path: Path) -> None:
    """Queued for bucket A while it was unreachable; the settings now name bucket B:
    a sync with B uploads nothing of A's and reports it orphaned; a sync with A delivers."""
    other = S3Storage(s3_server.endpoint, s3_server.access_key, s3_server.secret_key, "cg-outbox-other")
    other.create_bucket()
    box = Outbox(tmp_path / ".outbox")
    files = _batch(tmp_path, 3, prefix="fortarget")
    s3_server.stop()
    try:
        assert upload_files(s3_storage, files, box, workers=2, retries=0) == [None] * 3
    finally:
        s3_server.start()
    assert {e.target for e in box.pending()} == {storage_target(s3_storage)}
    assert storage_target(s3_storage) == f"http://{s3_server.endpoint}/{s3_storage.bucket}"

    report = box.sync(other)
    assert report.uploaded == [] and report.remaining == 0 and box.count() == 3
    assert report.orphaned == {k: storage_target(s3_storage) for _, k in files}
    assert other.list("fortarget/") == []                  # nothing landed in the wrong bucket

    report = box.sync(s3_storage)
    assert sorted(report.uploaded) == [k for _, k in files] and report.orphaned == {}
    assert sorted(o.key for o in s3_storage.list("fortarget/")) == [k for _, k in files]
    assert box.count() == 0 and other.list("fortarget/") == []


def test_old_outbox_rows_become_orphans_until_adopted(s3_storage: S3Storage, tmp_path: Path) -> None:
    """An outbox written before targets were recorded: its rows are never guessed onto a store."""
    png = make_png(tmp_path / "old.png")
    db = tmp_path / ".outbox" / "outbox.sqlite3"
    db.parent.mkdir()
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("CREATE TABLE outbox (key TEXT PRIMARY KEY, local_path TEXT NOT NULL, content_type TEXT,"
                     " attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, created_at REAL NOT NULL,"
                     " updated_at REAL NOT NULL, version INTEGER NOT NULL DEFAULT 1)")
        conn.execute("INSERT INTO outbox VALUES ('legacy/old.png', ?, 'image/png', 2, 'down', 1, 1, 1)", (str(png),))
    box = Outbox(db.parent)
    report = box.sync(s3_storage)
    assert report.uploaded == [] and list(report.orphaned) == ["legacy/old.png"]
    assert "unknown" in report.orphaned["legacy/old.png"] and not s3_storage.exists("legacy/old.png")
    assert box.adopt_orphans(storage_target(s3_storage)) == 1
    assert box.sync(s3_storage).uploaded == ["legacy/old.png"] and s3_storage.exists("legacy/old.png")

"""S3Storage against a real SeaweedFS on 127.0.0.1: uploads, policies, errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from comfy_gen.errors import BucketNotFound, ConfigError, StorageAuthError, StorageUnavailable, UsageError
from comfy_gen.storage import get_storage, upload_with_sidecar
from comfy_gen.storage.admin import delete_image, policy_document, set_bucket_policy
from comfy_gen.storage.s3 import S3Storage
from tests.fixtures.s3 import SeaweedServer, free_port_block
from tests.storage.helpers import make_png


def test_factory_picks_s3(s3_settings) -> None:
    storage = get_storage(s3_settings)
    assert isinstance(storage, S3Storage) and storage.remote


def test_upload_then_anonymous_read_only_after_public_read(s3_storage: S3Storage, tmp_path: Path) -> None:
    png = make_png(tmp_path / "a.png")
    stored = s3_storage.put(png, "demo/a.png")
    assert stored.url == f"http://{s3_storage.endpoint}/{s3_storage.bucket}/demo/a.png"
    assert stored.skipped is False and stored.size == png.stat().st_size
    # private by default: anonymous GET refused
    assert httpx.get(stored.url).status_code == 403

    set_bucket_policy(s3_storage, public_read=True)
    resp = httpx.get(stored.url)
    assert resp.status_code == 200 and resp.content == png.read_bytes()
    assert resp.headers["content-type"] == "image/png"
    # read does not imply list, and never write
    base = f"http://{s3_storage.endpoint}/{s3_storage.bucket}"
    assert httpx.get(base + "/", params={"list-type": "2"}).status_code == 403
    assert httpx.put(base + "/demo/evil.png", content=b"x").status_code == 403
    assert not s3_storage.exists("demo/evil.png")


def test_public_list_is_a_separate_opt_in(s3_storage: S3Storage, tmp_path: Path) -> None:
    s3_storage.put(make_png(tmp_path / "a.png"), "a.png")
    doc = set_bucket_policy(s3_storage, public_list=True)
    assert doc == policy_document(s3_storage.bucket, public_list=True)
    base = f"http://{s3_storage.endpoint}/{s3_storage.bucket}"
    listing = httpx.get(base + "/", params={"list-type": "2"})
    assert listing.status_code == 200 and "<Key>a.png</Key>" in listing.text
    assert httpx.get(base + "/a.png").status_code == 403
    set_bucket_policy(s3_storage, private=True)
    assert httpx.get(base + "/", params={"list-type": "2"}).status_code == 403


def test_policy_document_read_only_grants_get_object() -> None:
    doc = policy_document("pics", public_read=True)
    assert doc is not None
    (stmt,) = doc["Statement"]
    assert stmt["Action"] == ["s3:GetObject"] and stmt["Resource"] == ["arn:aws:s3:::pics/*"]
    assert policy_document("pics") is None
    with pytest.raises(UsageError):
        set_bucket_policy(None, public_read=True, private=True)  # type: ignore[arg-type]


def test_reupload_is_skipped_by_etag_and_changed_file_overwrites(s3_storage: S3Storage, tmp_path: Path) -> None:
    png = make_png(tmp_path / "a.png")
    first = s3_storage.put(png, "k/a.png")
    second = s3_storage.put(png, "k/a.png")
    assert not first.skipped and second.skipped and second.etag == first.etag
    make_png(png, size=(40, 40))
    third = s3_storage.put(png, "k/a.png")
    assert not third.skipped and third.etag != first.etag
    assert s3_storage.stat("k/a.png").size == png.stat().st_size
    assert [o.key for o in s3_storage.list()] == ["k/a.png"]


@pytest.mark.parametrize(("name", "ctype"), [("x.png", "image/png"), ("x.jpg", "image/jpeg"),
                                             ("x.webp", "image/webp"), ("x.mp4", "video/mp4"),
                                             ("x.json", "application/json"), ("x.dat", "application/octet-stream")])
def test_content_type_stored(s3_storage: S3Storage, tmp_path: Path, name: str, ctype: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"payload")
    s3_storage.put(path, f"ct/{name}")
    assert s3_storage.stat(f"ct/{name}").content_type == ctype


def test_sidecar_uploaded_beside_image(s3_storage: S3Storage, tmp_path: Path) -> None:
    png = make_png(tmp_path / "item.png")
    (tmp_path / "item.png.json").write_text(json.dumps({"generation_id": "g"}))
    stored = upload_with_sidecar(s3_storage, png, "demo/item.png", outbox=None)
    assert stored is not None and stored.key == "demo/item.png"
    assert sorted(o.key for o in s3_storage.list("demo/")) == ["demo/item.png", "demo/item.png.json"]
    assert s3_storage.stat("demo/item.png.json").content_type == "application/json"


def test_delete_is_confined_and_removes_sidecar(s3_storage: S3Storage, tmp_path: Path) -> None:
    png = make_png(tmp_path / "a.png")
    s3_storage.put(png, "d/a.png")
    s3_storage.put(png, "d/a.png.json")
    for bad in ("../other-bucket/a.png", "/d/a.png", "d/../../x", "d/./a.png"):
        with pytest.raises(UsageError):
            delete_image(s3_storage, bad)
    with pytest.raises(UsageError, match="No object"):
        delete_image(s3_storage, "d/missing.png")
    assert delete_image(s3_storage, "d/a.png") == ["d/a.png", "d/a.png.json"]
    assert s3_storage.list() == []


def test_wrong_keys_are_an_auth_error_without_the_secret(s3_server: SeaweedServer, s3_bucket: str,
                                                          tmp_path: Path) -> None:
    png = make_png(tmp_path / "a.png")
    wrong_secret = "not-the-secret-" + "Q" * 20
    for access in (s3_server.access_key, "AKUNKNOWN0000"):
        storage = S3Storage(s3_server.endpoint, access, wrong_secret, s3_bucket)
        with pytest.raises(StorageAuthError) as info:
            storage.put(png, "a.png")
        text = str(info.value)
        assert s3_bucket in text and s3_server.endpoint in text
        assert wrong_secret not in text and s3_server.secret_key not in text
        assert wrong_secret not in repr(storage) and "secret_key='***'" in repr(storage)


def test_missing_bucket(s3_server: SeaweedServer, tmp_path: Path) -> None:
    storage = S3Storage(s3_server.endpoint, s3_server.access_key, s3_server.secret_key, "cg-does-not-exist")
    with pytest.raises(BucketNotFound, match="cg-does-not-exist") as info:
        storage.put(make_png(tmp_path / "a.png"), "a.png")
    assert "bucket create" in str(info.value)
    with pytest.raises(BucketNotFound):
        storage.list()


def test_unreachable_endpoint_fails_fast(tmp_path: Path) -> None:
    port = free_port_block(1)  # nothing listens there
    storage = S3Storage(f"127.0.0.1:{port}", "AKX", "secret-value", "pics", region="us-east-1")
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match=f"127.0.0.1:{port}") as info:
        storage.put(make_png(tmp_path / "a.png"), "a.png")
    assert time.monotonic() - started < 3
    assert "refused" in str(info.value) and "secret-value" not in str(info.value)


def test_endpoint_with_scheme_and_public_url(s3_server: SeaweedServer) -> None:
    storage = S3Storage(f"http://{s3_server.endpoint}/", s3_server.access_key, s3_server.secret_key,
                        "pics", public_url="https://cdn.example.org/pics/")
    assert storage.endpoint == s3_server.endpoint and storage.secure is False
    assert storage.url_for("a b/c.png") == "https://cdn.example.org/pics/a%20b/c.png"


def test_stored_copy_carries_embedded_metadata(s3_storage: S3Storage, tmp_path: Path) -> None:
    from comfy_gen.metadata import build_metadata, embed_png_metadata, read_metadata

    png = make_png(tmp_path / "m.png")
    meta = build_metadata(params={"prompt": "a quiet harbour", "seed": 9})
    embed_png_metadata(png, meta)            # before upload: the stored copy has it too
    s3_storage.put(png, "m/m.png")
    fetched = tmp_path / "fetched.png"
    fetched.write_bytes(s3_storage._client.get_object(s3_storage.bucket, "m/m.png").read())
    assert read_metadata(fetched)["generation_id"] == meta["generation_id"]


def _s3_error(code: str, status: int):
    import urllib3
    from minio.error import S3Error

    return S3Error(urllib3.HTTPResponse(status=status), code, "msg", "/b/k", "req", "host")


@pytest.mark.parametrize(("make", "expected"), [
    (lambda: _s3_error("InvalidAccessKeyId", 403), StorageAuthError),
    (lambda: _s3_error("SignatureDoesNotMatch", 403), StorageAuthError),
    (lambda: _s3_error("AccessDenied", 403), StorageAuthError),
    (lambda: _s3_error("NoSuchBucket", 404), BucketNotFound),
    (lambda: _s3_error("InternalError", 500), StorageUnavailable),
    (lambda: _s3_error("SlowDown", 503), StorageUnavailable),
    (lambda: __import__("minio.error").error.ServerError("boom", 502), StorageUnavailable),
    (lambda: __import__("minio.error").error.InvalidResponseError(503, "text/html", "down"), StorageUnavailable),
    (lambda: __import__("urllib3").exceptions.MaxRetryError(None, "/x", ConnectionRefusedError()),
     StorageUnavailable),
    (lambda: __import__("urllib3").exceptions.ReadTimeoutError(None, "/x", "timed out"), StorageUnavailable),
    (lambda: ConnectionResetError(), StorageUnavailable),
], ids=["bad-key", "bad-secret", "denied", "no-bucket", "500", "503", "server-error", "html-503",
        "refused", "read-timeout", "reset"])
def test_error_translation_table(make, expected) -> None:
    from comfy_gen.errors import StorageError
    from comfy_gen.storage.s3 import translate_error

    err = translate_error(make(), action="upload 'k' to", where="bucket 'b' at http://h:1")
    assert type(err) is expected and isinstance(err, StorageError)
    assert err.message.startswith("Cannot upload 'k' to bucket 'b' at http://h:1")


def test_invalid_bucket_name_is_a_config_error_before_any_request() -> None:
    # Nothing listens on the port: a ConfigError (exit 2) proves no request was made.
    port = free_port_block(1)
    with pytest.raises(ConfigError, match="Bad_Bucket!") as info:
        S3Storage(f"127.0.0.1:{port}", "AKX", "secret-value", "Bad_Bucket!")
    assert "COMFY_GEN_MINIO_BUCKET" in str(info.value) and "secret-value" not in str(info.value)

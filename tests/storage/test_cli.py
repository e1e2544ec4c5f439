"""The bucket / images / storage / metadata commands, through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from comfy_gen.cli import cli, main
from comfy_gen.errors import BucketNotFound, MetadataNotFound, UsageError
from comfy_gen.storage import Outbox, get_storage
from comfy_gen.storage.outbox import storage_target
from comfy_gen.storage.s3 import S3Storage
from tests.conftest import REPO_ROOT
from tests.fixtures.s3 import SeaweedServer
from tests.storage.helpers import make_png


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out = capsys.readouterr()
    return int(info.value.code or 0), out.out, out.err


def test_bucket_create_and_policy(s3_env, s3_server: SeaweedServer, capsys, tmp_path: Path) -> None:
    code, out, _ = run(["bucket", "create"], capsys)
    assert code == 0 and "Already exists" in out           # the fixture made it
    code, out, _ = run(["bucket", "create", "cg-cli-new-bucket"], capsys)
    assert code == 0 and "Created" in out
    assert s3_server.client().bucket_exists("cg-cli-new-bucket")
    s3_server.client().remove_bucket("cg-cli-new-bucket")

    storage = S3Storage.from_settings(s3_env)
    url = storage.put(make_png(tmp_path / "p.png"), "p.png").url
    code, out, _ = run(["bucket", "policy"], capsys)
    assert code == 0 and "private" in out
    code, out, _ = run(["bucket", "policy", "--public-read", "--json"], capsys)
    assert code == 0 and json.loads(out)["Statement"][0]["Action"] == ["s3:GetObject"]
    assert httpx.get(url).status_code == 200
    code, out, _ = run(["bucket", "policy"], capsys)
    assert "anonymous read" in out and "listing" not in out
    code, _, err = run(["bucket", "policy", "--private", "--public-read"], capsys)
    assert code == 2 and "cannot be combined" in err
    code, out, _ = run(["bucket", "policy", "--private"], capsys)
    assert code == 0 and httpx.get(url).status_code == 403


def test_images_list_and_delete(s3_env, capsys, tmp_path: Path) -> None:
    storage = S3Storage.from_settings(s3_env)
    png = make_png(tmp_path / "a.png")
    for key in ("one/a.png", "one/a.png.json", "two/b.png"):
        storage.put(png, key)
    code, out, _ = run(["images", "list", "--json", "--prefix", "one/"], capsys)
    listed = json.loads(out)
    assert code == 0 and [o["key"] for o in listed] == ["one/a.png", "one/a.png.json"]
    assert listed[0]["size"] == png.stat().st_size and listed[0]["url"].endswith("/one/a.png")
    code, out, err = run(["images", "list"], capsys)
    assert "two/b.png" in out and "3 object(s)" in err

    code, _, err = run(["images", "delete", "../two/b.png"], capsys)
    assert code == 2 and "'..'" in err
    code, _, err = run(["images", "delete", "/two/b.png"], capsys)
    assert code == 2
    code, out, _ = run(["images", "delete", "one/a.png"], capsys)
    assert code == 0 and "Deleted one/a.png.json" in out
    assert [o.key for o in storage.list()] == ["two/b.png"]


def test_storage_status_and_sync(s3_env, capsys, tmp_path: Path) -> None:
    box = Outbox.from_settings(s3_env)
    target = storage_target(get_storage(s3_env))
    for i in range(3):
        box.add(make_png(tmp_path / f"{i}.png"), f"q/{i}.png", "image/png", target=target,
                error="storage unavailable")
    code, out, _ = run(["storage", "status"], capsys)
    assert code == 0 and "3 pending" in out and "q/0.png" in out
    code, out, _ = run(["storage", "sync", "--json"], capsys)
    assert code == 0 and sorted(json.loads(out)["uploaded"]) == ["q/0.png", "q/1.png", "q/2.png"]
    code, out, _ = run(["storage", "status", "--json"], capsys)
    assert json.loads(out)["pending"] == 0
    code, out, _ = run(["storage", "sync"], capsys)
    assert code == 0 and "empty" in out


def test_sync_drops_an_entry_whose_local_file_is_gone(s3_env, capsys, tmp_path: Path) -> None:
    # Nothing can ever upload it: retrying it on every sync forever helps nobody.
    box = Outbox.from_settings(s3_env)
    gone = make_png(tmp_path / "gone.png")
    box.add(gone, "q/gone.png", target=storage_target(get_storage(s3_env)))
    gone.unlink()
    code, out, err = run(["storage", "sync"], capsys)
    assert code == 0 and "remaining 0" in out and "dropped 1" in out, out + err
    assert "q/gone.png" in err and "gone" in err
    assert box.count() == 0


def test_storage_errors_map_to_exit_codes(s3_env, monkeypatch, capsys) -> None:
    from comfy_gen.config import reset_settings_cache

    monkeypatch.setenv("COMFY_GEN_MINIO_BUCKET", "cg-not-there")
    reset_settings_cache()
    code, _, err = run(["images", "list"], capsys)
    assert code == 2 and "does not exist" in err and "bucket create" in err
    # CliRunner shows the raw comfy_gen error
    result = CliRunner().invoke(cli, ["images", "list"])
    assert isinstance(result.exception, BucketNotFound)


def test_not_configured(capsys) -> None:
    code, _, err = run(["images", "list"], capsys)
    assert code == 2 and "No object storage configured" in err
    code, out, _ = run(["storage", "status"], capsys)
    assert code == 0 and "local only" in out


def test_metadata_show(capsys, tmp_path: Path) -> None:
    from comfy_gen.metadata import build_metadata, embed_png_metadata

    png = make_png(tmp_path / "m.png")
    meta = build_metadata(params={"prompt": "a red lighthouse", "seed": 3, "steps": 12, "width": 64,
                                  "height": 64}, workflow_name="basic", model="base.safetensors",
                          vae=None, prompt_id="p-1", item_id="item1", recipe="demo")
    embed_png_metadata(png, meta)
    code, out, _ = run(["metadata", "show", str(png)], capsys)
    assert code == 0 and "a red lighthouse" in out and "Steps: 12" in out and "Recipe:" in out
    code, out, _ = run(["metadata", "show", str(png), "--json"], capsys)
    assert json.loads(out)["generation_id"] == meta["generation_id"]

    bare = make_png(tmp_path / "bare.png", comfy_chunks=False)
    code, _, err = run(["metadata", "show", str(bare)], capsys)
    assert code == 1 and "bare.png.json" in err and "sidecar" in err
    assert isinstance(CliRunner().invoke(cli, ["metadata", "show", str(bare)]).exception, MetadataNotFound)
    code, _, err = run(["metadata", "show", str(tmp_path / "nope.png")], capsys)
    assert code == 2 and "does not exist" in err


def test_scripts_are_thin_wrappers() -> None:
    import subprocess
    import sys

    for script in ("create_bucket.py", "set_bucket_policy.py", "list_images.py"):
        proc = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / script), "--help"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and "Usage:" in proc.stdout


def test_usage_error_type() -> None:
    result = CliRunner().invoke(cli, ["bucket", "policy", "--private", "--public-list"],
                                env={"COMFY_GEN_MINIO_ENDPOINT": "127.0.0.1:1",
                                     "COMFY_GEN_MINIO_ACCESS_KEY": "a", "COMFY_GEN_MINIO_SECRET_KEY": "b"})
    assert isinstance(result.exception, UsageError)

"""Object storage is checked before rendering: wrong keys or a missing bucket stop
the run (exit 2) before any job is queued; an outage only warns and queues."""

from __future__ import annotations

import logging

import pytest

from comfy_gen.cli._errors import exit_code_for
from comfy_gen.errors import BucketNotFound, ConfigError, StorageAuthError
from comfy_gen.storage import LocalOnlyStorage
from comfy_gen.storage.s3 import S3Storage

WRONG_SECRET = "wrong-secret-9Zx"

RECIPE = """
name: preflight-upload
workflow: tiny-sd15.json
prompts: [a stone bridge, a red kite]
seeds: [4]
output:
  upload: true
"""


def _with(settings, **changes):
    return settings.model_copy(update=changes)


def test_check_passes_with_good_keys(s3_storage: S3Storage) -> None:
    assert s3_storage.check() is True
    assert LocalOnlyStorage().check() is True


def test_check_refuses_a_wrong_secret_naming_endpoint_and_bucket(s3_settings, s3_server) -> None:
    from pydantic import SecretStr

    storage = S3Storage.from_settings(_with(s3_settings, minio_secret_key=SecretStr(WRONG_SECRET)))
    with pytest.raises(StorageAuthError) as info:
        storage.check()
    message = str(info.value)
    assert s3_settings.minio_bucket in message and s3_server.endpoint in message
    assert WRONG_SECRET not in message
    assert exit_code_for(info.value) == 2


def test_check_refuses_a_missing_bucket(s3_settings) -> None:
    storage = S3Storage.from_settings(_with(s3_settings, minio_bucket="cg-no-such-bucket"))
    with pytest.raises(BucketNotFound, match="cg-no-such-bucket"):
        storage.check()


def test_check_only_warns_when_the_server_is_down(s3_storage: S3Storage, s3_server,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    s3_server.stop()
    try:
        assert s3_storage.check() is False
    finally:
        s3_server.start()
    assert "unreachable" in caplog.text and "outbox" in caplog.text
    assert any(r.levelno == logging.WARNING for r in caplog.records)


def test_endpoint_with_credentials_is_refused_without_echoing_them(s3_settings) -> None:
    for endpoint in (f"http://admin:{WRONG_SECRET}@127.0.0.1:9000", f"admin:{WRONG_SECRET}@127.0.0.1:9000"):
        with pytest.raises(ConfigError) as info:
            S3Storage.from_settings(_with(s3_settings, minio_endpoint=endpoint))
        assert WRONG_SECRET not in str(info.value)


@pytest.mark.usefixtures("prefect_harness")
def test_flow_with_a_wrong_secret_fails_before_queueing_anything(
        fresh_emulator, use_backend, s3_env, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from comfy_gen.config import reset_settings_cache
    from flows.render_recipe import render_recipe

    emu = fresh_emulator
    use_backend(emu.url)
    monkeypatch.setenv("COMFY_GEN_MINIO_SECRET_KEY", WRONG_SECRET)
    reset_settings_cache()
    path = tmp_path / "preflight-upload.yaml"
    path.write_text(RECIPE.lstrip())
    with pytest.raises(StorageAuthError) as info:
        render_recipe(recipe=str(path))
    assert exit_code_for(info.value) == 2
    assert WRONG_SECRET not in str(info.value)
    stats = emu.stats()
    assert stats["prompts_accepted"] == 0 and stats["jobs_started"] == 0
    assert not list((tmp_path / "output").rglob("*.png"))

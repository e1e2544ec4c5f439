"""S3 keys from a Prefect Secret block instead of env vars."""

from __future__ import annotations

import pytest

from comfy_gen.config import Settings
from comfy_gen.errors import ConfigError
from comfy_gen.storage import get_storage


@pytest.mark.usefixtures("prefect_harness")
def test_keys_come_from_a_prefect_secret_block(s3_server, s3_bucket, tmp_path) -> None:
    from prefect.blocks.system import Secret

    Secret(value={"access_key": s3_server.access_key, "secret_key": s3_server.secret_key}).save(
        "comfy-gen-test-keys", overwrite=True)
    settings = Settings(minio_endpoint=s3_server.endpoint, minio_bucket=s3_bucket,
                        minio_secret_block="comfy-gen-test-keys", output_dir=tmp_path)
    storage = get_storage(settings)
    image = tmp_path / "a.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    stored = storage.put(image, "blocks/a.png")
    assert stored.key == "blocks/a.png" and storage.exists("blocks/a.png")
    assert s3_server.secret_key not in repr(storage)


@pytest.mark.usefixtures("prefect_harness")
def test_missing_block_is_a_clear_config_error(s3_server, tmp_path) -> None:
    settings = Settings(minio_endpoint=s3_server.endpoint, minio_secret_block="no-such-block", output_dir=tmp_path)
    with pytest.raises(ConfigError) as info:
        get_storage(settings)
    assert "no-such-block" in str(info.value)

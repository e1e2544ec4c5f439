"""`comfy-gen bucket|images|storage ...`: bucket setup, stored images, the upload outbox."""

from __future__ import annotations

import json
from typing import Any

import click

from comfy_gen.errors import ConfigError
from comfy_gen.urls import redact_text


def _settings() -> Any:
    from comfy_gen.config import get_settings

    return get_settings()


def _s3(bucket: str | None = None) -> Any:
    """The configured S3Storage (optionally for another bucket); ConfigError if none."""
    from comfy_gen.storage.s3 import S3Storage

    settings = _settings()
    if not settings.storage_configured:
        raise ConfigError("No object storage configured",
                          hint="Set COMFY_GEN_MINIO_ENDPOINT, COMFY_GEN_MINIO_ACCESS_KEY and "
                               "COMFY_GEN_MINIO_SECRET_KEY (see docs/storage.md).")
    if bucket:
        settings = settings.model_copy(update={"minio_bucket": bucket})
    return S3Storage.from_settings(settings)


def _dump(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


# --- bucket ------------------------------------------------------------------------


@click.group()
def bucket() -> None:
    """Create the bucket or set its access policy."""


@bucket.command("create")
@click.argument("name", required=False)
def bucket_create(name: str | None) -> None:
    """Create NAME (default: the configured bucket). New buckets are private."""
    from comfy_gen.storage.admin import create_bucket

    storage = _s3(name)
    created = create_bucket(storage)
    click.echo(f"Created {storage.where}" if created else f"Already exists: {storage.where}")


@bucket.command("policy")
@click.option("--public-read", is_flag=True, help="Add: anyone may GET objects (links work).")
@click.option("--public-list", is_flag=True, help="Add: anyone may list the bucket's keys (off by default).")
@click.option("--private", "private", is_flag=True, help="Remove the policy: no anonymous access.")
@click.option("--bucket", "bucket_name", default=None, help="Bucket (default: the configured one).")
@click.option("--json", "as_json", is_flag=True, help="Print the policy document as JSON.")
def bucket_policy(public_read: bool, public_list: bool, private: bool, bucket_name: str | None,
                  as_json: bool) -> None:
    """Show the bucket policy, or change it: --public-read / --public-list add a grant
    (keeping the other), --private removes both."""
    from comfy_gen.storage.admin import describe_policy, get_bucket_policy, set_bucket_policy

    storage = _s3(bucket_name)
    if public_read or public_list or private:
        doc = set_bucket_policy(storage, public_read=public_read, public_list=public_list, private=private)
    else:
        doc = get_bucket_policy(storage)
    if as_json:
        _dump(doc)
    else:
        click.echo(f"{storage.where}: {describe_policy(doc)}")


# --- images ------------------------------------------------------------------------


@click.group()
def images() -> None:
    """List or delete images in the configured bucket."""


@images.command("list")
@click.option("--prefix", default="", help="Only keys starting with this prefix.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of {key, size, etag, last_modified, url}.")
def images_list(prefix: str, as_json: bool) -> None:
    """List stored objects (sidecars included)."""
    from comfy_gen.storage.admin import list_images

    storage = _s3()
    objects = list_images(storage, prefix)
    if as_json:
        _dump([{**o.to_dict(), "url": storage.url_for(o.key)} for o in objects])
        return
    for obj in objects:
        when = obj.last_modified.strftime("%Y-%m-%d %H:%M:%S") if obj.last_modified else "-"
        click.echo(f"{when}  {obj.size:>10}  {obj.key}")
    click.echo(f"{len(objects)} object(s) in {storage.where}", err=True)


@images.command("delete")
@click.argument("key")
@click.option("--keep-sidecar", is_flag=True, help="Do not delete KEY.json.")
@click.option("--prefix", "is_prefix", is_flag=True,
              help="KEY is a folder ending in '/': delete every object under it.")
def images_delete(key: str, keep_sidecar: bool, is_prefix: bool) -> None:
    """Delete KEY (and its KEY.json sidecar) from the configured bucket."""
    from comfy_gen.storage.admin import delete_image, delete_prefix

    storage = _s3()
    deleted = delete_prefix(storage, key) if is_prefix else \
        delete_image(storage, key, with_sidecar=not keep_sidecar)
    for name in deleted:
        click.echo(f"Deleted {name}")
    click.echo(f"{len(deleted)} object(s) deleted from {storage.where}", err=True)


# --- storage (outbox) --------------------------------------------------------------


@click.group()
def storage() -> None:
    """The upload outbox: uploads that failed and wait for a retry."""


@storage.command("status")
@click.option("--json", "as_json", is_flag=True)
def storage_status(as_json: bool) -> None:
    """Where images go, and how many uploads wait in the outbox."""
    from comfy_gen.storage.outbox import Outbox

    settings = _settings()
    outbox = Outbox.from_settings(settings)
    entries = outbox.pending() if outbox.db_path.exists() else []
    info = {
        "output_dir": str(settings.output_dir),
        "endpoint": settings.minio_endpoint,
        "bucket": settings.minio_bucket if settings.storage_configured else None,
        "outbox": str(outbox.db_path),
        "pending": len(entries),
        "entries": [{"key": e.key, "target": redact_text(e.target) or None, "local_path": e.local_path,
                     "attempts": e.attempts, "last_error": e.last_error} for e in entries],
    }
    if as_json:
        _dump(info)
        return
    target = (f"bucket {settings.minio_bucket!r} at {settings.minio_endpoint}" if settings.storage_configured
              else "local only (no object storage configured)")
    click.echo(f"Output:  {settings.output_dir}\nStorage: {target}\nOutbox:  {len(entries)} pending upload(s)")
    for e in entries[:20]:
        where = redact_text(e.target) or "unknown store"
        click.echo(f"  {e.key} -> {where}  (attempts {e.attempts}; {e.last_error or 'not tried yet'})")
    if len(entries) > 20:
        click.echo(f"  ... and {len(entries) - 20} more")


@storage.command("sync")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Parallel uploads (default: settings).")
@click.option("--json", "as_json", is_flag=True)
def storage_sync(workers: int | None, as_json: bool) -> int:
    """Upload everything waiting in the outbox. Exit 1 if some uploads still fail."""
    from comfy_gen.storage import get_storage
    from comfy_gen.storage.outbox import Outbox

    settings = _settings()
    outbox = Outbox.from_settings(settings)
    if outbox.count() == 0:
        if as_json:
            _dump({"uploaded": [], "failed": {}, "remaining": 0})
        else:
            click.echo("Outbox is empty.")
        return 0
    target = get_storage(settings)
    if not target.remote:
        raise ConfigError(f"{outbox.count()} upload(s) are queued but no object storage is configured",
                          hint="Set COMFY_GEN_MINIO_ENDPOINT and the keys, then run `comfy-gen storage sync`.")
    report = outbox.sync(target, workers=workers or settings.upload_workers)
    if as_json:
        _dump(report.to_dict())
    else:
        click.echo(f"Uploaded {len(report.uploaded)}, failed {len(report.failed)}, remaining {report.remaining}"
                   + (f", dropped {len(report.dropped)}" if report.dropped else ""))
        for key, err in report.failed.items():
            click.echo(f"  {key}: {err}", err=True)
        if report.orphaned:
            click.echo(f"{len(report.orphaned)} upload(s) wait for another store and were left queued:", err=True)
            for key, where in list(report.orphaned.items())[:20]:
                click.echo(f"  {key} -> {where}", err=True)
        for key in report.dropped:
            click.echo(f"  {key}: dropped, its local file is gone", err=True)
    return 1 if report.remaining else 0

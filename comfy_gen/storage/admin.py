"""Bucket administration: create, policies (private by default), list and delete.

Public read means anonymous ``s3:GetObject`` only, so image links work while
nobody can enumerate the bucket; listing (``s3:ListBucket``) is a separate,
explicit opt-in.
"""

from __future__ import annotations

import json
from typing import Any

from comfy_gen.errors import StorageError, UsageError
from comfy_gen.storage.base import ObjectInfo, check_key
from comfy_gen.storage.s3 import S3Storage


def policy_document(bucket: str, *, public_read: bool = False, public_list: bool = False,
                    prefix: str = "") -> dict[str, Any] | None:
    """The bucket policy for the requested anonymous access; None = private."""
    statements: list[dict[str, Any]] = []
    scope = f"{prefix.strip('/')}/*" if prefix.strip("/") else "*"
    if public_read:
        statements.append({"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": ["s3:GetObject"],
                           "Resource": [f"arn:aws:s3:::{bucket}/{scope}"]})
    if public_list:
        statements.append({"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": ["s3:ListBucket"],
                           "Resource": [f"arn:aws:s3:::{bucket}"]})
    if not statements:
        return None
    return {"Version": "2012-10-17", "Statement": statements}


def create_bucket(storage: S3Storage) -> bool:
    """Create the configured bucket (private); False when it already existed."""
    return storage.create_bucket()


def set_bucket_policy(storage: S3Storage, *, public_read: bool = False, public_list: bool = False,
                      private: bool = False) -> dict[str, Any] | None:
    """Grant anonymous read and/or listing, or remove every grant (``private``).

    Grants add to what the bucket already allows: ``--public-list`` after
    ``--public-read`` gives both, it does not silently take read away. Only
    ``--private`` removes access. Returns the document now set (None = private).
    """
    if private and (public_read or public_list):
        raise UsageError("--private cannot be combined with --public-read or --public-list")
    if not (private or public_read or public_list):
        raise UsageError("Choose --public-read, --public-list (or both), or --private")
    doc = None
    if not private:
        current = describe_access(get_bucket_policy(storage))
        doc = policy_document(storage.bucket, public_read=public_read or current["read"],
                              public_list=public_list or current["list"])
    storage.set_policy(json.dumps(doc) if doc is not None else None)
    return doc


def describe_access(doc: dict[str, Any] | None) -> dict[str, bool]:
    """Which anonymous grants ``doc`` makes: ``{"read": ..., "list": ...}``."""
    actions: set[str] = set()
    for st in (doc or {}).get("Statement", []):
        if not isinstance(st, dict) or st.get("Effect") != "Allow":
            continue
        acts = st.get("Action", [])
        actions.update([acts] if isinstance(acts, str) else acts)
    return {"read": bool(actions & {"s3:GetObject", "s3:*"}), "list": bool(actions & {"s3:ListBucket", "s3:*"})}


def get_bucket_policy(storage: S3Storage) -> dict[str, Any] | None:
    text = storage.get_policy()
    return json.loads(text) if text else None


def describe_policy(doc: dict[str, Any] | None) -> str:
    """One line saying what anonymous users may do under ``doc``."""
    if not doc:
        return "private (no anonymous access)"
    actions: set[str] = set()
    for st in doc.get("Statement", []):
        if st.get("Effect") != "Allow":
            continue
        acts = st.get("Action", [])
        actions.update([acts] if isinstance(acts, str) else acts)
    parts = []
    if actions & {"s3:GetObject", "s3:*"}:
        parts.append("anonymous read")
    if actions & {"s3:ListBucket", "s3:*"}:
        parts.append("anonymous listing")
    if actions - {"s3:GetObject", "s3:ListBucket"}:
        parts.append("other: " + ", ".join(sorted(actions - {"s3:GetObject", "s3:ListBucket"})))
    return ", ".join(parts) or "custom policy"


def list_images(storage: S3Storage, prefix: str = "") -> list[ObjectInfo]:
    return storage.list(prefix)


def delete_image(storage: S3Storage, key: str, *, with_sidecar: bool = True) -> list[str]:
    """Delete ``key`` (and ``<key>.json`` when present) from the configured bucket only.

    A key that is a folder (``recipe/`` or ``recipe`` with objects under it) is
    refused: deleting it would delete nothing and report success. Use
    ``delete_prefix`` for that. The object is checked gone afterwards.
    """
    check_key(key)
    if key.endswith("/"):
        raise UsageError(f"{key!r} is a prefix, not an object key",
                         hint="Delete everything under it with `comfy-gen images delete --prefix KEY`.")
    if not storage.exists(key):
        under = next(iter(storage.iter_objects(key + "/")), None)
        if under is not None:
            raise UsageError(f"{key!r} is a prefix (e.g. {under.key!r} is under it), not an object",
                             hint=f"Delete everything under it with `comfy-gen images delete --prefix {key}/`.")
        raise UsageError(f"No object {key!r} in {storage.where}",
                         hint="List keys with `comfy-gen images list`.")
    deleted = []
    for target in [key] + ([key + ".json"] if with_sidecar and not key.endswith(".json") else []):
        if target != key and not storage.exists(target):
            continue
        storage.delete(target)
        if storage.exists(target):
            raise StorageError(f"{target!r} is still in {storage.where} after deleting it")
        deleted.append(target)
    return deleted


def delete_prefix(storage: S3Storage, prefix: str) -> list[str]:
    """Delete every object whose key starts with ``prefix`` (a folder: ends with ``/``).

    UsageError for an empty prefix (never the whole bucket by accident), a prefix
    without a trailing ``/`` (``a`` would also match ``ab/``), or one that matches
    nothing; returns the keys deleted.
    """
    if not prefix.strip("/"):
        raise UsageError("Refusing to delete with an empty prefix (that is the whole bucket)")
    if not prefix.endswith("/"):
        raise UsageError(f"Prefix {prefix!r} must end with '/' (it names a folder of keys)")
    check_key(prefix.rstrip("/"))
    keys = [obj.key for obj in storage.iter_objects(prefix)]
    if not keys:
        raise UsageError(f"No objects under {prefix!r} in {storage.where}",
                         hint="List keys with `comfy-gen images list --prefix ...`.")
    for key in keys:
        storage.delete(key)
    left = [obj.key for obj in storage.iter_objects(prefix)]
    if left:
        raise StorageError(f"{len(left)} object(s) under {prefix!r} are still in {storage.where} after deleting")
    return keys

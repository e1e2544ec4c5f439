"""Bucket administration: create, policies (private by default), list and delete.

Public read means anonymous ``s3:GetObject`` only, so image links work while
nobody can enumerate the bucket; listing (``s3:ListBucket``) is a separate,
explicit opt-in.
"""

from __future__ import annotations

import json
from typing import Any

from comfy_gen.errors import UsageError
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
    """Apply a policy and return the document set (None = private, policy removed)."""
    if private and (public_read or public_list):
        raise UsageError("--private cannot be combined with --public-read or --public-list")
    doc = None if private else policy_document(storage.bucket, public_read=public_read,
                                                public_list=public_list)
    if doc is None and not private:
        raise UsageError("Choose --public-read, --public-list (or both), or --private")
    storage.set_policy(json.dumps(doc) if doc is not None else None)
    return doc


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
    """Delete ``key`` (and ``<key>.json`` when present) from the configured bucket only."""
    check_key(key)
    deleted = []
    if not storage.exists(key):
        raise UsageError(f"No object {key!r} in {storage.where}",
                         hint="List keys with `comfy-gen images list`.")
    storage.delete(key)
    deleted.append(key)
    side = key + ".json"
    if with_sidecar and not key.endswith(".json") and storage.exists(side):
        storage.delete(side)
        deleted.append(side)
    return deleted

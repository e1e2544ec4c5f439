"""The Storage protocol, its value types, content types, key checks and the
local-only backend used when no object storage is configured."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from comfy_gen.errors import StorageError, UsageError

#: By extension; anything else is uploaded as application/octet-stream.
CONTENT_TYPES: dict[str, str] = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".json": "application/json",
}
DEFAULT_CONTENT_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class StoredObject:
    """The result of one ``put``: ``skipped`` when the remote copy was already identical."""

    key: str
    url: str
    etag: str | None
    size: int
    skipped: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object."""

    key: str
    size: int
    etag: str | None = None
    last_modified: datetime | None = None
    content_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["last_modified"] = self.last_modified.isoformat() if self.last_modified else None
        return data


@runtime_checkable
class Storage(Protocol):
    """Where finished images go after they are safely on local disk."""

    #: True when ``put`` really copies somewhere else (the outbox is pointless otherwise).
    remote: bool

    def put(self, local_path: str | Path, key: str, *, content_type: str | None = None) -> StoredObject: ...

    def exists(self, key: str) -> bool: ...

    def url_for(self, key: str) -> str: ...

    def list(self, prefix: str = "") -> list[ObjectInfo]: ...

    def delete(self, key: str) -> None: ...

    def check(self) -> bool:
        """Preflight: raise StorageAuthError / BucketNotFound (exit 2) when uploads can
        never work with these settings; False (logged) when the server is only down."""
        ...


def content_type_for(path: str | Path) -> str:
    """The MIME type uploaded for ``path``, from its extension."""
    return CONTENT_TYPES.get(Path(str(path)).suffix.lower(), DEFAULT_CONTENT_TYPE)


def check_key(key: str) -> str:
    """Return ``key`` if it is a plain relative object key; raise UsageError otherwise.

    Keys come from users and agents (``images delete KEY``); refusing ``..``
    segments, absolute keys and backslashes keeps every operation inside the
    configured bucket and prefix whatever the server does with such names.
    """
    if not isinstance(key, str) or not key.strip():
        raise UsageError("Object key must not be empty")
    if key.startswith("/") or "\\" in key or "\x00" in key:
        raise UsageError(f"Invalid object key {key!r}: must be relative, without '\\' or a leading '/'")
    if any(part in ("..", ".") for part in key.split("/")):
        raise UsageError(f"Invalid object key {key!r}: '..' and '.' segments are not allowed")
    if "//" in key:
        raise UsageError(f"Invalid object key {key!r}: empty path segment")
    return key


def file_md5(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex MD5 of a file: what S3 reports as the ETag of a single-part upload."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class LocalOnlyStorage:
    """No object storage configured: images stay in the local store only.

    ``put`` uploads nothing and answers the file's own ``file://`` URL so callers
    can treat both backends alike.
    """

    remote = False

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else None

    def __repr__(self) -> str:
        return f"LocalOnlyStorage(root={str(self.root)!r})"

    def put(self, local_path: str | Path, key: str, *, content_type: str | None = None) -> StoredObject:
        check_key(key)
        path = Path(local_path)
        if not path.is_file():
            raise StorageError(f"Cannot store {key!r}: local file {str(path)!r} does not exist")
        return StoredObject(key=key, url=path.resolve().as_uri(), etag=None,
                            size=path.stat().st_size, skipped=True)

    def exists(self, key: str) -> bool:
        check_key(key)
        return False

    def url_for(self, key: str) -> str:
        raise StorageError(f"No object storage is configured, so {key!r} has no URL",
                           hint=_CONFIGURE_HINT)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        return []

    def delete(self, key: str) -> None:
        raise StorageError(f"No object storage is configured; cannot delete {key!r}", hint=_CONFIGURE_HINT)

    def check(self) -> bool:
        return True  # nothing remote to reach


_CONFIGURE_HINT = ("Set COMFY_GEN_MINIO_ENDPOINT, COMFY_GEN_MINIO_ACCESS_KEY and "
                   "COMFY_GEN_MINIO_SECRET_KEY (see docs/storage.md).")

"""S3/MinIO object storage through the ``minio`` SDK.

This is the only module that sees ``minio`` and ``urllib3`` exceptions; they are
translated once, in ``_translate``, into the comfy_gen storage errors. The SDK
is imported lazily so the CLI starts fast.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator, cast
from urllib.parse import quote, urlsplit

from comfy_gen.errors import (BucketNotFound, ConfigError, StorageAuthError, StorageError,
                              StorageUnavailable, is_transient)
from comfy_gen.storage.base import ObjectInfo, StoredObject, check_key, content_type_for, file_md5
from comfy_gen.urls import redact_url

log = logging.getLogger(__name__)

_AUTH_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken",
               "ExpiredToken", "AuthorizationHeaderMalformed", "InvalidSecurity"}
_UNAVAILABLE_CODES = {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout",
                      "XMinioServerNotInitialized"}
_MISSING_KEY_CODES = {"NoSuchKey", "NoSuchObject", "ResourceNotFound"}


class S3Storage:
    """One bucket on an S3-compatible server (MinIO, SeaweedFS, AWS).

    Timeouts are short and retries few on purpose: during an outage an upload
    should fail in about a second and go to the outbox, not hang the flow.
    """

    remote = True

    def __init__(self, endpoint: str, access_key: str, secret_key: str, bucket: str, *,
                 secure: bool = False, public_url: str | None = None, region: str | None = None,
                 connect_timeout: float = 2.0, read_timeout: float = 20.0, retries: int = 2,
                 pool_size: int = 16) -> None:
        from minio import Minio  # lazy: keeps `comfy-gen --help` fast
        import urllib3

        endpoint, secure = _split_endpoint(endpoint, secure)
        if not access_key or not secret_key:
            raise ConfigError(f"Object storage at {endpoint} needs an access key and a secret key",
                              hint="Set COMFY_GEN_MINIO_ACCESS_KEY and COMFY_GEN_MINIO_SECRET_KEY.")
        from minio.helpers import check_bucket_name

        try:
            check_bucket_name(bucket)
        except ValueError as exc:
            # A settings mistake, not a storage failure: say so before any request.
            raise ConfigError(f"Invalid bucket name {bucket!r}",
                              hint="Fix COMFY_GEN_MINIO_BUCKET: 3-63 characters, lower-case letters, "
                                   "digits, '-' and '.'.") from exc
        self.endpoint = endpoint
        self.bucket = bucket
        self.secure = secure
        self.region = region
        self._access_key_hint = access_key[:4] + "***" if len(access_key) > 8 else "***"
        scheme = "https" if secure else "http"
        self.public_base = (public_url or f"{scheme}://{endpoint}/{bucket}").rstrip("/")
        retry = urllib3.Retry(total=retries, connect=retries, read=retries, backoff_factor=0.2,
                              status_forcelist=[500, 502, 503, 504], raise_on_status=False)
        kwargs: dict[str, Any] = {}
        if secure:
            import certifi

            kwargs = {"cert_reqs": "CERT_REQUIRED", "ca_certs": certifi.where()}
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            retries=retry, maxsize=pool_size, **kwargs)
        self._client = Minio(endpoint, access_key=access_key, secret_key=secret_key,
                             secure=secure, region=region, http_client=http)

    @classmethod
    def from_settings(cls, settings: Any, *, secret_block: str | None = None, **kwargs: Any) -> "S3Storage":
        """Build from ``minio_*`` settings; ``secret_block`` names a Prefect Secret block
        holding the secret key (or a JSON object with ``access_key`` and ``secret_key``)."""
        if not settings.minio_endpoint:
            raise ConfigError("No object storage endpoint configured",
                              hint="Set COMFY_GEN_MINIO_ENDPOINT (host:port).")
        access_key = settings.secret("minio_access_key")
        secret_key = settings.secret("minio_secret_key")
        secret_block = secret_block or getattr(settings, "minio_secret_block", None)
        if secret_block:
            access_key, secret_key = _keys_from_prefect_block(secret_block, access_key)
        return cls(settings.minio_endpoint, access_key or "", secret_key or "", settings.minio_bucket,
                   secure=settings.minio_secure, public_url=settings.minio_public_url,
                   region=settings.minio_region, **kwargs)

    def __repr__(self) -> str:
        # Never show the secret; the access key only as a short prefix.
        return (f"S3Storage(endpoint={self.endpoint!r}, bucket={self.bucket!r}, secure={self.secure}, "
                f"access_key={self._access_key_hint!r}, secret_key='***')")

    @property
    def where(self) -> str:
        # The endpoint cannot carry credentials (refused in _split_endpoint).
        return f"bucket {self.bucket!r} at {'https' if self.secure else 'http'}://{self.endpoint}"

    # --- Storage protocol ----------------------------------------------------

    def url_for(self, key: str) -> str:
        return f"{self.public_base}/{quote(check_key(key))}"

    def put(self, local_path: str | Path, key: str, *, content_type: str | None = None) -> StoredObject:
        """Upload ``local_path`` as ``key``; skip when the remote ETag equals the local MD5."""
        check_key(key)
        path = Path(local_path)
        if not path.is_file():
            raise StorageError(f"Cannot upload {key!r}: local file {str(path)!r} does not exist")
        size = path.stat().st_size
        md5 = file_md5(path)
        remote = self._stat(key)
        # A single-part upload's ETag is the MD5 of the body; multipart ETags
        # ("<md5>-<parts>") never match, so such objects are simply rewritten.
        if remote is not None and (remote.etag or "").strip('"') == md5 and remote.size == size:
            return StoredObject(key=key, url=self.url_for(key), etag=md5, size=size, skipped=True)
        try:
            result = self._client.fput_object(self.bucket, key, str(path),
                                              content_type=content_type or content_type_for(path))
        except Exception as exc:
            raise self._translate(exc, f"upload {key!r} to") from exc
        etag = (result.etag or "").strip('"') or None
        return StoredObject(key=key, url=self.url_for(key), etag=etag, size=size, skipped=False)

    def exists(self, key: str) -> bool:
        return self._stat(check_key(key)) is not None

    def stat(self, key: str) -> ObjectInfo | None:
        """Size, ETag and content type of ``key``, or None when it does not exist."""
        return self._stat(check_key(key))

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        return list(self.iter_objects(prefix))

    def iter_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if prefix:
            check_key(prefix.rstrip("/") or "x")
        try:
            for obj in self._client.list_objects(self.bucket, prefix=prefix or None, recursive=True):
                if obj.is_dir:
                    continue
                yield ObjectInfo(key=obj.object_name, size=obj.size or 0,
                                 etag=(obj.etag or "").strip('"') or None, last_modified=obj.last_modified)
        except Exception as exc:
            raise self._translate(exc, "list") from exc

    def delete(self, key: str) -> None:
        check_key(key)
        try:
            self._client.remove_object(self.bucket, key)
        except Exception as exc:
            raise self._translate(exc, f"delete {key!r} from") from exc

    def check(self) -> bool:
        """Preflight before rendering: do these credentials reach this bucket?

        Wrong keys or a missing bucket can never heal by retrying, so they raise
        (StorageAuthError / BucketNotFound, exit 2) before any job is queued. An
        outage can: it is logged as a warning and False returned, and uploads go
        to the outbox as usual. A HEAD on the bucket is signed like any request,
        so a wrong secret is refused here even when the bucket is empty.
        """
        try:
            found = bool(self._client.bucket_exists(self.bucket))
        except Exception as exc:
            error = self._translate(exc, "reach")
            if is_transient(error):
                log.warning("%s; uploads will wait in the outbox", error.message)
                return False
            raise error from exc
        if not found:
            raise BucketNotFound(f"Cannot upload to {self.where}: the bucket does not exist",
                                 hint="Create it with `comfy-gen bucket create`, or fix COMFY_GEN_MINIO_BUCKET.")
        return True

    # --- bucket administration (used by comfy_gen.storage.admin) --------------

    def bucket_exists(self) -> bool:
        try:
            return bool(self._client.bucket_exists(self.bucket))
        except Exception as exc:
            raise self._translate(exc, "check") from exc

    def create_bucket(self) -> bool:
        """Create the bucket; False when it already existed."""
        if self.bucket_exists():
            return False
        try:
            self._client.make_bucket(self.bucket, location=self.region or "us-east-1")
        except Exception as exc:
            if getattr(exc, "code", None) in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                return False
            raise self._translate(exc, "create") from exc
        return True

    def get_policy(self) -> str | None:
        try:
            return self._client.get_bucket_policy(self.bucket) or None
        except Exception as exc:
            if getattr(exc, "code", None) in ("NoSuchBucketPolicy", "NoSuchPolicy"):
                return None
            raise self._translate(exc, "read the policy of") from exc

    def set_policy(self, policy_json: str | None) -> None:
        """Set the bucket policy document, or remove it (private) when None."""
        try:
            if policy_json is None:
                self._client.delete_bucket_policy(self.bucket)
            else:
                self._client.set_bucket_policy(self.bucket, policy_json)
        except Exception as exc:
            if policy_json is None and getattr(exc, "code", None) in ("NoSuchBucketPolicy", "NoSuchPolicy"):
                return
            raise self._translate(exc, "set the policy of") from exc

    # --- internals -----------------------------------------------------------

    def _stat(self, key: str) -> ObjectInfo | None:
        try:
            st = self._client.stat_object(self.bucket, key)
        except Exception as exc:
            if getattr(exc, "code", None) in _MISSING_KEY_CODES:
                return None
            raise self._translate(exc, f"read {key!r} in") from exc
        return ObjectInfo(key=key, size=st.size or 0, etag=(st.etag or "").strip('"') or None,
                          last_modified=st.last_modified, content_type=st.content_type)

    def _translate(self, exc: BaseException, action: str) -> StorageError:
        """Map one minio/urllib3 exception to a comfy_gen storage error (never naming secrets)."""
        return translate_error(exc, action=action, where=self.where)


def translate_error(exc: BaseException, *, action: str, where: str) -> StorageError:
    """The single mapping from SDK/transport exceptions to StorageError subclasses."""
    from minio.error import InvalidResponseError, S3Error, ServerError
    import urllib3.exceptions as u3

    if isinstance(exc, StorageError):
        return exc
    prefix = f"Cannot {action} {where}"
    if isinstance(exc, S3Error):
        code = exc.code or ""
        status = getattr(exc.response, "status", 0) or 0
        if code in _AUTH_CODES or status in (401, 403):
            return StorageAuthError(
                f"{prefix}: the server refused the credentials ({code or status})",
                hint="Check COMFY_GEN_MINIO_ACCESS_KEY / COMFY_GEN_MINIO_SECRET_KEY and the key's permissions.")
        if code == "NoSuchBucket":
            return BucketNotFound(f"{prefix}: the bucket does not exist",
                                  hint="Create it with `comfy-gen bucket create`, or fix COMFY_GEN_MINIO_BUCKET.")
        if code in _UNAVAILABLE_CODES or status >= 500:
            return StorageUnavailable(f"{prefix}: server error {code or status}")
        return StorageError(f"{prefix}: {code}: {exc.message}")
    if isinstance(exc, ServerError):
        return StorageUnavailable(f"{prefix}: server error (HTTP {exc.status_code})")
    if isinstance(exc, InvalidResponseError):
        status = int(getattr(exc, "_code", 0) or 0)
        if status >= 500:
            return StorageUnavailable(f"{prefix}: server error (HTTP {status})")
        if status in (401, 403):
            return StorageAuthError(f"{prefix}: access denied (HTTP {status})")
        return StorageError(f"{prefix}: unexpected response from the server (HTTP {status})")
    if isinstance(exc, (u3.HTTPError, ConnectionError, TimeoutError)):
        reason = _root_reason(exc)
        return StorageUnavailable(f"{prefix}: endpoint unreachable ({reason})",
                                  hint="Is the server running? Failed uploads wait in the outbox; "
                                       "run `comfy-gen storage sync` once it is back.")
    if isinstance(exc, ValueError):  # the SDK's argument checks (bucket name, ...)
        return StorageError(f"{prefix}: {exc}")
    raise exc


def _root_reason(exc: BaseException) -> str:
    reason: BaseException | None = getattr(exc, "reason", None) or exc
    text = type(reason).__name__
    if "Timeout" in text or isinstance(reason, TimeoutError):
        return "timed out"
    if "refused" in str(reason).lower():
        return "connection refused"
    return text


def _split_endpoint(endpoint: str, secure: bool) -> tuple[str, bool]:
    """Accept ``host:port`` or ``http(s)://host:port``; the scheme wins over ``secure``."""
    endpoint = endpoint.strip()
    if "@" in endpoint.split("/", 3)[2 if "://" in endpoint else 0]:
        # Never echoed: the userinfo is a credential, and it would end up in every message.
        raise ConfigError("The storage endpoint must not contain credentials (user:password@)",
                          hint="Give host:port in COMFY_GEN_MINIO_ENDPOINT and the keys in "
                               "COMFY_GEN_MINIO_ACCESS_KEY / COMFY_GEN_MINIO_SECRET_KEY.")
    if "://" in endpoint:
        parts = urlsplit(endpoint)
        if parts.path not in ("", "/"):
            raise ConfigError(f"Storage endpoint {redact_url(endpoint)!r} must not contain a path",
                              hint="Use host:port; put a public base URL in COMFY_GEN_MINIO_PUBLIC_URL.")
        return parts.netloc, parts.scheme == "https"
    return endpoint.rstrip("/"), secure


def _keys_from_prefect_block(name: str, access_key: str | None) -> tuple[str | None, str | None]:
    """Read credentials from a Prefect Secret block (lazy import: Prefect is heavy)."""
    try:
        from prefect.blocks.system import Secret

        # Called from sync code, so Prefect's async_dispatch returns the block, not a coroutine.
        value = cast("Secret[Any]", Secret.load(name)).get()
    except Exception as exc:  # any Prefect failure is a configuration problem here
        raise ConfigError(f"Cannot load Prefect Secret block {name!r}: {type(exc).__name__}",
                          hint="Create it with `prefect block create secret` or unset the block name.") from exc
    if isinstance(value, dict):
        return value.get("access_key") or access_key, value.get("secret_key")
    return access_key, str(value)

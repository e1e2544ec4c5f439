"""The upload outbox: uploads that failed wait here until ``sync`` succeeds.

A storage outage must never cost an image or fail a generation: the image is
already in the local store, and its upload is recorded here to be retried by
``comfy-gen storage sync`` or the next flow run. The outbox is a SQLite file
under ``<output_dir>/.outbox/`` because SQLite's locking makes it safe for
several processes (flow workers, the CLI) at once.

Each entry records its *target*, the store it was meant for
(``<scheme>://<endpoint>/<bucket>``, see ``storage_target``), and is only ever
uploaded there: a sync with other settings leaves it queued and reports it as
orphaned (waiting for a store that is not configured now). One row per
(target, object key). Entries an older outbox recorded without a target are
orphaned too, until ``adopt_orphans`` assigns them to a store.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from comfy_gen.errors import BucketNotFound, StorageAuthError, StorageError, TransientError
from comfy_gen.storage.base import Storage, StoredObject, check_key, content_type_for
from comfy_gen.storage.local import SIDECAR_SUFFIX, atomic_write_json, sidecar_path

log = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.sqlite3"
#: The target of entries queued before targets were recorded: never uploaded automatically.
UNKNOWN_TARGET = ""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    target       TEXT NOT NULL,
    key          TEXT NOT NULL,
    local_path   TEXT NOT NULL,
    content_type TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL,
    version      INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (target, key)
)
"""
_COLUMNS = "target, key, local_path, content_type, attempts, last_error, created_at, version"


def storage_target(storage: Any) -> str:
    """Where ``storage`` puts objects: ``<scheme>://<endpoint>/<bucket>`` for an S3
    store (a ``target`` attribute wins), else the store's class (one target per kind)."""
    explicit = getattr(storage, "target", None)
    if isinstance(explicit, str) and explicit:
        return explicit
    endpoint, bucket = getattr(storage, "endpoint", None), getattr(storage, "bucket", None)
    if endpoint and bucket:
        scheme = "https" if getattr(storage, "secure", False) else "http"
        return f"{scheme}://{str(endpoint).lower().rstrip('/')}/{bucket}"
    return f"{type(storage).__module__}.{type(storage).__qualname__}"


@dataclass(frozen=True)
class OutboxEntry:
    target: str
    key: str
    local_path: str
    content_type: str | None
    attempts: int
    last_error: str | None
    created_at: float
    version: int


@dataclass
class SyncReport:
    """What one ``sync`` did: keys uploaded, keys that failed again, entries of this
    store left, and entries ``orphaned`` (key -> the store they wait for; not touched)."""

    uploaded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    remaining: int = 0
    orphaned: dict[str, str] = field(default_factory=dict)
    #: entries whose local file is gone: nothing can ever upload them, so they were removed
    dropped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"uploaded": self.uploaded, "failed": self.failed, "remaining": self.remaining,
                "orphaned": self.orphaned, "dropped": self.dropped}


class Outbox:
    """A process-safe queue of pending uploads, one per (target, object key).

    ``path`` is the outbox folder (``<output_dir>/.outbox``) or the database file.
    """

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        self.db_path = path if path.suffix == ".sqlite3" else path / OUTBOX_FILE
        self._ready = False

    @classmethod
    def from_settings(cls, settings: object) -> "Outbox":
        from comfy_gen.storage.local import OUTBOX_DIR

        return cls(Path(getattr(settings, "output_dir")).expanduser() / OUTBOX_DIR)

    def __repr__(self) -> str:
        return f"Outbox({str(self.db_path)!r})"

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        if not self._ready:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
        # One short-lived connection per operation: safe across threads and
        # processes; `timeout` waits for another writer's lock instead of failing.
        with closing(sqlite3.connect(self.db_path, timeout=30, isolation_level=None)) as conn:
            if not self._ready:
                _migrate(conn)
                self._ready = True
            yield conn

    def add(self, local_path: str | Path, key: str, content_type: str | None = None,
            *, target: str, error: str | None = None) -> None:
        """Record (or refresh) a pending upload of ``key`` to ``target`` (``storage_target``)."""
        check_key(key)
        now = time.time()
        with self._db() as conn:
            conn.execute(
                "INSERT INTO uploads (target, key, local_path, content_type, attempts, last_error, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, 0, ?, ?, ?)"
                " ON CONFLICT(target, key) DO UPDATE SET local_path=excluded.local_path,"
                " content_type=excluded.content_type, last_error=excluded.last_error,"
                " updated_at=excluded.updated_at, version=uploads.version+1",
                (target, key, str(Path(local_path).resolve()), content_type, error, now, now))

    def pending(self, target: str | None = None) -> list[OutboxEntry]:
        """Queued uploads (for ``target`` only, when given), oldest first."""
        where, args = ("WHERE target=?", (target,)) if target is not None else ("", ())
        with self._db() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM uploads {where} ORDER BY created_at, key", args).fetchall()
        return [OutboxEntry(*row) for row in rows]

    def count(self, target: str | None = None) -> int:
        if not self.db_path.exists():
            return 0
        where, args = ("WHERE target=?", (target,)) if target is not None else ("", ())
        with self._db() as conn:
            return int(conn.execute(f"SELECT COUNT(*) FROM uploads {where}", args).fetchone()[0])

    def remove(self, key: str, *, target: str, version: int | None = None) -> bool:
        """Drop an entry after its upload succeeded. With ``version``, only if nobody
        re-queued the key meanwhile (a newer file must not be forgotten)."""
        with self._db() as conn:
            if version is None:
                cur = conn.execute("DELETE FROM uploads WHERE target=? AND key=?", (target, key))
            else:
                cur = conn.execute("DELETE FROM uploads WHERE target=? AND key=? AND version=?",
                                   (target, key, version))
            return cur.rowcount > 0

    def adopt_orphans(self, target: str) -> int:
        """Assign entries with no recorded target (an older outbox) to ``target``; how many.
        An entry whose key is already queued for ``target`` is left as it is."""
        with self._db() as conn:
            cur = conn.execute("UPDATE OR IGNORE uploads SET target=?, updated_at=? WHERE target=?",
                               (target, time.time(), UNKNOWN_TARGET))
            return cur.rowcount

    def _failed(self, entry: OutboxEntry, error: str) -> None:
        with self._db() as conn:
            conn.execute("UPDATE uploads SET attempts=attempts+1, last_error=?, updated_at=? WHERE target=? AND key=?",
                         (error, time.time(), entry.target, entry.key))

    def sync(self, storage: Storage, *, workers: int = 8) -> SyncReport:
        """Upload every entry queued for this store; remove each one only after its
        upload succeeded. Entries for other stores are reported as orphaned, untouched.

        Images go first; once one is uploaded its local sidecar (``<image>.json``)
        records the URL, and only then are sidecars uploaded, so the stored
        sidecar carries the URL too. An entry whose local file is gone can never
        succeed: it is dropped with a warning instead of being retried forever.
        Auth and bucket errors are raised (nothing will succeed until the settings
        are fixed); the entries stay queued.
        """
        report = SyncReport()
        target = storage_target(storage)
        if self.db_path.exists():
            from comfy_gen.urls import redact_text

            report.orphaned = {e.key: redact_text(e.target) or "(unknown: queued before targets were recorded)"
                               for e in self.pending() if e.target != target}
        if not storage.remote:
            # Local-only "uploads" always succeed; draining the queue into them
            # would silently drop work meant for the real store.
            return report
        entries = []
        for entry in (self.pending(target) if self.db_path.exists() else []):
            if Path(entry.local_path).is_file():
                entries.append(entry)
            elif self.remove(entry.key, target=target, version=entry.version):
                log.warning("Dropped %s from the outbox: its local file %s is gone", entry.key, entry.local_path)
                report.dropped.append(entry.key)
        if not entries:
            report.remaining = self.count(target)
            return report

        def one(entry: OutboxEntry) -> tuple[OutboxEntry, StoredObject | None, BaseException | None]:
            try:
                return entry, storage.put(entry.local_path, entry.key, content_type=entry.content_type), None
            except StorageError as exc:
                return entry, None, exc
            except OSError as exc:  # the file vanished or became unreadable during the upload
                return entry, None, StorageError(f"Cannot read {entry.local_path}: {exc.strerror or exc}")

        config_error: StorageError | None = None
        images = [e for e in entries if not e.key.endswith(SIDECAR_SUFFIX)]
        sidecars = [e for e in entries if e.key.endswith(SIDECAR_SUFFIX)]
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for phase in (images, sidecars):
                for entry, stored, exc in pool.map(one, phase):
                    if stored is not None:
                        self.remove(entry.key, target=target, version=entry.version)
                        report.uploaded.append(entry.key)
                        if phase is images:
                            record_url(Path(entry.local_path), stored)
                        continue
                    assert exc is not None
                    self._failed(entry, exc.message if isinstance(exc, StorageError) else str(exc))
                    report.failed[entry.key] = str(getattr(exc, "message", exc))
                    if isinstance(exc, (StorageAuthError, BucketNotFound)) and config_error is None:
                        config_error = exc
        report.remaining = self.count(target)
        if config_error is not None:
            raise config_error
        return report


def _migrate(conn: sqlite3.Connection) -> None:
    """Create the table; move rows of the target-less ``outbox`` table of older
    versions into it as orphans (their store was never recorded)."""
    conn.execute(_SCHEMA)
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='outbox'").fetchone() is None:
        return
    conn.execute("BEGIN IMMEDIATE")  # one process migrates; the others then find no old table
    try:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='outbox'").fetchone():
            conn.execute("INSERT OR IGNORE INTO uploads (target, key, local_path, content_type, attempts, last_error,"
                         " created_at, updated_at, version) SELECT ?, key, local_path, content_type, attempts,"
                         " last_error, created_at, updated_at, version FROM outbox", (UNKNOWN_TARGET,))
            conn.execute("DROP TABLE outbox")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def record_url(image: Path, stored: StoredObject) -> bool:
    """Write the URL and key of an uploaded image into its local sidecar, if it has one.

    The sidecar is the local record of the image (and the cache marker of batch
    items): without the URL a later run would upload the image again and
    ``metadata show`` would say it was never published. False when there is no
    sidecar, or it is not a comfy-gen document.
    """
    side = sidecar_path(image)
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(meta, dict) or not isinstance(meta.get("storage", {}), dict):
        return False
    meta["storage"] = {**(meta.get("storage") or {}), "url": stored.url, "key": stored.key}
    result = (meta.get("comfy_gen") or {}).get("result") if isinstance(meta.get("comfy_gen"), dict) else None
    if isinstance(result, dict):
        result.update(url=stored.url, key=stored.key, upload="skipped" if stored.skipped else "uploaded")
    atomic_write_json(side, meta)
    return True


def upload_files(storage: Storage, files: Sequence[tuple[str | Path, str] | tuple[str | Path, str, str | None]],
                 outbox: Outbox | None, *, workers: int = 8, retries: int = 2,
                 backoff: float = 0.25) -> list[StoredObject | None]:
    """Upload ``(path, key[, content_type])`` pairs in parallel; results in input order.

    Transient failures are retried ``retries`` times with short backoff, then the
    file is recorded in the outbox and its result is None: the image stays local
    and queued, and the caller's generation still counts as done. Once one file
    has failed for good, files not yet started go straight to the outbox rather
    than each waiting out the outage. Auth/bucket errors are recorded too, then
    the first one is raised after every file was handled (they are config errors).
    """
    if not storage.remote:
        return [storage.put(item[0], item[1]) for item in files]
    target = storage_target(storage)  # every queued entry remembers where it was going
    down = threading.Event()
    outage: list[str] = []  # the error that marked storage as down, for the queued entries

    def one(item: tuple[Any, ...]) -> tuple[StoredObject | None, StorageError | None]:
        path, key = item[0], item[1]
        ctype = (item[2] if len(item) > 2 else None) or content_type_for(path)
        last: StorageError | None = None
        for attempt in range(retries + 1):
            if down.is_set():
                break
            try:
                return storage.put(path, key, content_type=ctype), None
            except StorageError as exc:
                last = exc
                if not isinstance(exc, TransientError):
                    break
                if attempt < retries:
                    time.sleep(backoff * (2 ** attempt))
        if isinstance(last, TransientError):
            outage.append(last.message)
            down.set()
        elif not isinstance(last, (StorageAuthError, BucketNotFound)):
            log.warning("Upload of %s failed: %s", key, last)
        reason = last.message if last else "not tried: " + (outage[0] if outage else "storage unavailable")
        if outbox is not None and Path(path).is_file():
            outbox.add(path, key, ctype, target=target, error=reason)
            log.warning("Upload of %s queued in the outbox: %s", key, reason)
        return None, last

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(files) or 1))) as pool:
        results = list(pool.map(one, files))
    for _, exc in results:
        if isinstance(exc, (StorageAuthError, BucketNotFound)):
            raise exc
    return [stored for stored, _ in results]

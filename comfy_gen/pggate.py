"""GPU slots as PostgreSQL advisory locks: the per-backend bound across hosts.

``gpu_gate=postgres``: a backend with limit N has N slots, and slot i is the
session-level advisory lock whose 64-bit key is a hash of (backend URL, i)
(``slot_keys``). Whoever holds that lock holds the slot, on every host that
talks to the same database.

* Taking a slot: one statement tries the slots in order and stops at the first
  free one (``CASE WHEN pg_try_advisory_lock(k0) THEN 0 WHEN ...``; CASE
  evaluates a volatile call only when reached). The connection that took the
  lock is held until the slot is given back: a session-level lock lives as long
  as its session, not its transaction.
* Waiting: a waiter ``LISTEN``s on the backend's channel before it tries, and
  a releaser unlocks and ``NOTIFY``s in one statement, so a freed slot is seen
  in about a round trip, with no busy polling. A holder that died sends no
  NOTIFY, so waiters also re-try after a backoff (``RECHECK_FIRST`` doubling
  to ``recheck``): that bounds how long a dead holder's slot stays unseen.
* A dead holder: the server ends its session when the socket closes, which
  drops its locks. A SIGKILLed process's kernel closes the socket at once; a
  host that vanishes is noticed by the server's TCP keepalives, which every
  gate connection sets for its own session (``SESSION_OPTIONS``: about 11 s).
  ``idle_session_timeout`` is turned off for these sessions: a server-wide
  value would otherwise free a slot whose job is still rendering.

Connections are kept per database in a small per-process pool: one per slot
held or waited for, reused afterwards (a connection costs milliseconds; a
lock round trip a fraction of one). PgBouncer in transaction mode cannot carry
session locks: point the gate at PostgreSQL itself (or a session-mode pool).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from typing import TYPE_CHECKING, Any, Iterator
from urllib.parse import urlsplit

from comfy_gen.errors import ConfigError, GpuGateUnavailable
from comfy_gen.urls import redact_text, redact_url

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

log = logging.getLogger(__name__)

#: First re-try delay for waiters (s); it doubles up to ``recheck``. Only a slot
#: freed without a NOTIFY (a dead holder) waits for it.
RECHECK_FIRST = 0.02
#: Server-side keepalives of each gate session: a silent peer is dropped after
#: idle + interval x count = 5 + 2 x 3 = 11 s, and its slots with it.
SESSION_OPTIONS = ("-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3 "
                   "-c tcp_user_timeout=11000 -c idle_session_timeout=0 -c statement_timeout=0")
#: Idle connections kept per database and process.
MAX_IDLE = 8

_SCHEMES = ("postgresql", "postgres")


def slot_keys(backend_url: str, limit: int) -> list[int]:
    """The advisory-lock keys of a backend's slots: signed 64-bit, stable across
    processes, hosts and Python versions (sha256, not ``hash()``)."""
    keys = []
    for index in range(limit):
        digest = hashlib.sha256(f"comfy-gen gpu slot\0{backend_url}\0{index}".encode()).digest()
        keys.append(int.from_bytes(digest[:8], "big", signed=True))
    return keys


def channel_for(backend_url: str) -> str:
    """The LISTEN/NOTIFY channel of a backend (an identifier: letters, digits, _)."""
    return "comfy_gen_gpu_" + hashlib.sha256(backend_url.encode()).hexdigest()[:24]


def conninfo_for(database_url: str, setting: str) -> str:
    """A libpq URL from a SQLAlchemy-style one (``postgresql+psycopg://`` -> ``postgresql://``);
    ConfigError naming ``setting`` for anything that is not PostgreSQL."""
    try:
        parts = urlsplit(database_url)
    except ValueError as exc:
        raise ConfigError(f"{setting} is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    base = scheme.split("+", 1)[0]
    if base not in _SCHEMES:
        raise ConfigError(
            f"gpu_gate=postgres needs a PostgreSQL URL, but {setting} is {redact_url(database_url)!r}",
            hint=f"Set {setting}=postgresql://user:password@host:5432/dbname")
    return "postgresql" + database_url[len(scheme):]


class _Pool:
    """Idle gate connections of one database, for this process only (a forked
    child must not share its parent's sockets)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[str, list["psycopg.Connection[Any]"]] = {}
        self._pid = os.getpid()

    def get(self, conninfo: str) -> "psycopg.Connection[Any] | None":
        with self._lock:
            if self._pid != os.getpid():
                self._idle, self._pid = {}, os.getpid()
            idle = self._idle.get(conninfo)
            while idle:
                conn = idle.pop()
                if not conn.closed:
                    return conn
        return None

    def put(self, conninfo: str, conn: "psycopg.Connection[Any]") -> None:
        with self._lock:
            idle = self._idle.setdefault(conninfo, [])
            if self._pid == os.getpid() and len(idle) < MAX_IDLE and not conn.closed:
                idle.append(conn)
                return
        conn.close()

    def close_all(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()


_pool = _Pool()


def close_idle_connections() -> None:
    """Close this process's idle gate connections (tests, orderly shutdown)."""
    _pool.close_all()


class PostgresSlots:
    """``with slots.slot() as index:``: one of a backend's ``limit`` slots, held
    (with its connection) for the block."""

    def __init__(self, database_url: str, backend_url: str, limit: int, *, setting: str,
                 connect_timeout: float = 5.0, recheck: float = 0.25) -> None:
        self._conninfo = conninfo_for(database_url, setting)
        self._shown = redact_url(database_url)
        self._setting = setting
        self._connect_timeout = max(1, round(connect_timeout))  # libpq takes whole seconds
        self.backend_url = backend_url
        self.keys = slot_keys(backend_url, limit)
        self.channel = channel_for(backend_url)
        self.recheck = recheck
        self._try_sql = ("SELECT CASE " + " ".join(
            f"WHEN pg_try_advisory_lock(%s) THEN {i}" for i in range(limit)) + " ELSE -1 END")

    @contextlib.contextmanager
    def slot(self) -> Iterator[int]:
        conn, index = self._acquire()
        try:
            yield index
        finally:
            self._release(conn, index)

    # -- internals -----------------------------------------------------------------
    def _unavailable(self, exc: BaseException) -> GpuGateUnavailable:
        reason = redact_text(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        return GpuGateUnavailable(
            f"The GPU gate's database {self._shown} ({self._setting}) cannot be reached: {reason}",
            hint=f"Check {self._setting} and that PostgreSQL accepts connections from this host, "
                 "or set COMFY_GEN_GPU_GATE=local for a single host.")

    def _connect(self) -> "psycopg.Connection[Any]":
        import psycopg

        conn = _pool.get(self._conninfo)
        if conn is not None:
            return conn
        try:
            return psycopg.connect(self._conninfo, autocommit=True, connect_timeout=self._connect_timeout,
                                   application_name=f"comfy-gen gpu gate pid={os.getpid()}",
                                   options=SESSION_OPTIONS,
                                   # client-side keepalives: a holder learns that the database is gone
                                   keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=3)
        except (psycopg.Error, ValueError) as exc:  # ValueError: a malformed conninfo
            raise self._unavailable(exc) from None

    def _try(self, conn: "psycopg.Connection[Any]") -> int | None:
        row = conn.execute(self._try_sql, self.keys).fetchone()
        index = int(row[0]) if row is not None else -1
        return index if index >= 0 else None

    def _acquire(self) -> "tuple[psycopg.Connection[Any], int]":
        import psycopg

        conn = self._connect()
        try:
            conn.execute(f"LISTEN {self.channel}")  # before trying: a release after the try still wakes us
            index = self._try(conn)
            delay = RECHECK_FIRST
            while index is None:
                for _ in conn.notifies(timeout=delay, stop_after=1):
                    pass
                index = self._try(conn)
                delay = min(delay * 2, self.recheck)
            conn.execute(f"UNLISTEN {self.channel}")
        except BaseException as exc:
            # Closing the session frees a lock it may have taken as the error hit.
            conn.close()
            if isinstance(exc, psycopg.Error):
                raise self._unavailable(exc) from None
            raise
        return conn, index

    def _release(self, conn: "psycopg.Connection[Any]", index: int) -> None:
        import psycopg

        try:
            conn.execute("SELECT pg_advisory_unlock(%s), pg_notify(%s, '')", (self.keys[index], self.channel))
        except psycopg.Error as exc:
            # The session is gone (database restart, network): so is its lock.
            log.warning("GPU slot %d of %s: the gate's database connection broke while held (%s); "
                        "the slot was freed with it", index, redact_url(self.backend_url),
                        redact_text(type(exc).__name__))
            conn.close()
            return
        _pool.put(self._conninfo, conn)


__all__ = ["PostgresSlots", "channel_for", "close_idle_connections", "conninfo_for", "slot_keys"]

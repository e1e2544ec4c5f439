"""URLs as shown to people (credentials hidden) and as used for identity.

A backend URL may carry credentials (``http://user:pass@host``) or a token in
its query; every message, log line, error and ``repr`` that shows a URL goes
through :func:`redact_url`. :func:`normalize_url` gives one spelling per server,
so that per-server bounds (the GPU gate) do not split on how a URL was typed.
:func:`install_log_redaction` (called when settings are imported) is the
safety net for log records that format a URL nobody passed through
``redact_url``; :class:`RedactingFilter` does the same for one handler.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

#: Query parameter names whose values are secrets (matched case-insensitively, as substrings).
SECRET_PARAMS = ("token", "key", "secret", "password", "passwd", "pwd", "auth", "signature", "credential")

_MASK = "***"
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_LOOPBACK = {"localhost", "127.0.0.1", "::1", "0:0:0:0:0:0:0:1", "ip6-localhost"}
#: scheme://userinfo@ anywhere in a text (log messages, exception strings).
_USERINFO_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s@]+)@")
_QUERY_SECRET_RE = re.compile(
    r"(?P<name>[?&][^=&#\s]*(?:" + "|".join(SECRET_PARAMS) + r")[^=&#\s]*=)(?P<value>[^&#\s]*)", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` with userinfo replaced by ``***@`` and secret query values by ``***``.

    Never raises: a string that does not parse as a URL is still scrubbed of
    anything that looks like ``scheme://user:pass@``.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{_MASK}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, _MASK if _is_secret(k) else v) for k, v in pairs], safe="*")
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Every ``scheme://userinfo@`` and secret query value in free text, masked."""
    text = _USERINFO_RE.sub(lambda m: f"{m.group('scheme')}{_MASK}@", text)
    return _QUERY_SECRET_RE.sub(lambda m: f"{m.group('name')}{_MASK}", text)


def normalize_url(url: str) -> str:
    """One spelling per server: lower-case scheme and host, no userinfo, no default
    port, no trailing slash, loopback names as ``127.0.0.1``.

    ``HTTP://LocalHost:80/`` and ``http://127.0.0.1`` give the same string. Query
    and fragment are dropped: a backend is a server, not a page.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if host in _LOOPBACK or host.startswith("127."):
        host = "127.0.0.1"
    try:
        port = parts.port
    except ValueError:  # a port out of range: keep what was typed, minus credentials
        port = None
        raw = parts.netloc.rsplit("@", 1)[-1].lower()
        host = raw
    if port is not None and port == _DEFAULT_PORTS.get(scheme):
        port = None
    shown_host = f"[{host}]" if ":" in host else host
    netloc = f"{shown_host}:{port}" if port is not None else shown_host
    path = parts.path.rstrip("/")
    return urlunsplit((scheme, netloc, path, "", ""))


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a ComfyUI base URL (never echoing it), or None."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return "the port must be a number from 1 to 65535"
    if parts.scheme.lower() not in ("http", "https"):
        return "must be an http:// or https:// URL"
    if not parts.hostname:
        return "the URL has no host"
    if port == 0:
        return "the port must be a number from 1 to 65535"
    return None


def _is_secret(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SECRET_PARAMS)


class RedactingFilter(logging.Filter):
    """Masks URL credentials in a record's formatted message (never drops records)."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def redact_record(record: logging.LogRecord) -> None:
    """Replace the record's message by its redacted form when it shows credentials."""
    try:
        message = record.getMessage()
    except Exception:  # a broken format string is logging's to report, not ours
        return
    cleaned = redact_text(message)
    if cleaned != message:
        record.msg, record.args = cleaned, None


_installed = False


def install_log_redaction() -> None:
    """Redact URL credentials in every log record created in this process (idempotent).

    A filter on the ``comfy_gen`` logger would miss records of its child loggers
    (filters do not apply to propagated records) and of third-party loggers that
    print request URLs, so the record factory is wrapped instead: every record,
    whoever logs it and whichever handler (console, file, Prefect's API handler)
    ships it, is cleaned once, when it is created.
    """
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        redact_record(record)
        return record

    logging.setLogRecordFactory(factory)
    _installed = True

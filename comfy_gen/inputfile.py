"""Read a user-supplied input file (recipe, category, preset, workflow) within bounds.

A path handed to comfy-gen may name a FIFO (reading it blocks forever), a device
(``/dev/zero`` never ends), a directory, a symlink loop or a huge file. The file
is opened non-blocking and checked with ``fstat`` on the open descriptor, so a
path swapped between a check and the read cannot slip through; then at most
``cap + 1`` bytes are read, whatever the file claims its size is.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

#: Recipes, categories and presets are hand-written YAML: a megabyte is far
#: beyond any real one, and keeps parsing (pure-Python PyYAML) under seconds.
MAX_INPUT_BYTES = 1024 * 1024

_CHUNK = 64 * 1024


class InputFileError(Exception):
    """An input file cannot be read as bounded UTF-8 text. The message does not
    name the file: each loader adds the file in its own error format."""

    def __init__(self, message: str, *, line: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def read_bounded(path: str | Path, *, cap: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of a regular file no larger than ``cap``; InputFileError otherwise."""
    # O_NONBLOCK: opening a FIFO with no writer would otherwise block here.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise InputFileError(_os_message(exc)) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputFileError(f"not a regular file ({_kind(info.st_mode)})")
        if info.st_size > cap:
            raise InputFileError(f"file is {info.st_size} bytes; the limit is {cap} bytes")
        chunks: list[bytes] = []
        total = 0
        while total <= cap:
            chunk = os.read(fd, min(_CHUNK, cap + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise InputFileError(_os_message(exc)) from exc
    finally:
        os.close(fd)
    if total > cap:  # the file grew after fstat
        raise InputFileError(f"file is larger than the limit of {cap} bytes")
    return b"".join(chunks)


def decode_utf8(data: bytes) -> str:
    """Strict UTF-8 (a BOM is dropped); InputFileError with the line of the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputFileError(f"invalid UTF-8 at byte {exc.start} (line {line}): the file must be UTF-8 text",
                             line=line) from exc


def read_text(path: str | Path, *, cap: int = MAX_INPUT_BYTES) -> str:
    """:func:`read_bounded` then :func:`decode_utf8`."""
    return decode_utf8(read_bounded(path, cap=cap))


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a plain file"


def _os_message(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "cannot read file: symlink loop (too many levels of symbolic links)"
    return f"cannot read file: {exc.strerror or exc}"

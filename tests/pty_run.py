"""Run a command on a pseudo-terminal (as in a user's terminal) and read back what it drew."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import termios
import time

#: CSI sequences (colours, cursor moves, line clears) and the OSC/charset odds rich may send.
_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[()][0-9A-Za-z]")


def run_in_pty(argv: list[str], *, env: dict[str, str], timeout: float, columns: int = 120,
               rows: int = 40) -> tuple[int, str]:
    """Run ``argv`` with stdin, stdout and stderr on one pseudo-terminal; its exit
    code and everything it wrote (escape sequences included)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"{argv} did not finish within {timeout:g} s:\n"
                                     + b"".join(chunks).decode(errors="replace")[-3000:])
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:   # EIO: the child closed its side
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    return proc.wait(timeout=30), b"".join(chunks).decode(errors="replace")


def screen_lines(text: str) -> list[str]:
    """The text as drawn lines: escape sequences dropped, split at carriage returns
    and newlines (each redraw of a live line becomes one entry), blanks removed."""
    plain = _ESCAPES.sub("", text)
    return [line.rstrip() for line in re.split(r"[\r\n]+", plain) if line.strip()]

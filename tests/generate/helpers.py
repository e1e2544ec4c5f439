"""Helpers for the generate/reproduce tests: run the CLI, read PNG chunks."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from comfy_gen.cli import main
from comfy_gen.config import reset_settings_cache
from comfy_gen.metadata import METADATA_CHUNK, PARAMETERS_CHUNK, PNG_SIGNATURE, png_text_chunks
from tests.conftest import REPO_ROOT

OURS = {METADATA_CHUNK.encode(), PARAMETERS_CHUNK.encode()}


def run_cli(*args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``comfy-gen ARGS`` in-process, with the real error mapping."""
    reset_settings_cache()  # each CLI run is a new process in real life: re-read the env
    runner = CliRunner()
    with runner.isolation() as streams:
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        return code, streams[0].getvalue().decode(), streams[1].getvalue().decode()


def run_cli_process(*args: str, env: dict[str, str] | None = None, timeout: float = 60,
                    cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m comfy_gen.cli ARGS`` as a real process (exit codes, signals, tracebacks)."""
    return subprocess.run([sys.executable, "-m", "comfy_gen.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout, cwd=cwd or Path.cwd())


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every stdout line parsed as JSON (fails the test if one is not)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def strip_comfy_gen_chunks(path: Path) -> bytes:
    """The PNG bytes without comfy-gen's own text chunks: what ComfyUI wrote."""
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    out, pos = [PNG_SIGNATURE], len(PNG_SIGNATURE)
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        ctype = data[pos + 4:pos + 8]
        chunk = data[pos:pos + 12 + length]
        body = data[pos + 8:pos + 8 + length]
        if not (ctype in (b"tEXt", b"iTXt") and body.partition(b"\0")[0] in OURS):
            out.append(chunk)
        pos += 12 + length
    return b"".join(out)


def chunks(path: Path) -> dict[str, str]:
    return png_text_chunks(path)


__all__ = ["REPO_ROOT", "chunks", "json_lines", "run_cli", "run_cli_process", "strip_comfy_gen_chunks"]

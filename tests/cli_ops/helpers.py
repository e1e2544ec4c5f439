"""Run the real `comfy-gen` entry point in-process and capture its output."""

from __future__ import annotations

from click.testing import CliRunner

from comfy_gen.cli import main
from comfy_gen.config import reset_settings_cache


def run_cli(*args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``comfy-gen ARGS`` with the real error mapping."""
    reset_settings_cache()  # each CLI run is a new process in real life: re-read the env
    runner = CliRunner()
    with runner.isolation() as streams:
        stdout, stderr = streams[0], streams[1]
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        return code, stdout.getvalue().decode(), stderr.getvalue().decode()

"""The CLI shell: lazy start-up, every command wired, exit codes from one table."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from comfy_gen import errors
from comfy_gen.cli import COMMANDS, cli, main
from comfy_gen.cli._errors import exit_code_for

HEAVY = ("torch", "transformers", "prefect", "minio", "aiohttp", "PIL", "sqlalchemy", "alembic", "psycopg", "rich")


def test_top_level_help_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from comfy_gen.cli import main\n"
        "sys.argv = ['comfy-gen', '--help']\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_is_importable_and_documented(name: str) -> None:
    ctx = click.Context(cli)
    command = cli.get_command(ctx, name)
    assert isinstance(command, click.Command)
    assert command.help or command.short_help


@pytest.mark.parametrize(("exc", "code"), [
    (errors.UsageError("x"), 2),
    (errors.WorkflowError("x"), 2),
    (errors.PreflightError("x", []), 2),
    (errors.RecipeError("x", []), 2),
    (errors.PolicyViolation("x"), 2),
    (errors.ValidatorUnavailable("x"), 2),
    (errors.ComfyUIUnavailable("x"), 2),
    (errors.PromptRejected("x"), 2),
    (errors.StorageAuthError("x"), 2),
    (errors.ExecutionFailed("x"), 1),
    (errors.JobLost("x"), 1),
    (errors.ComfyUITimeout("x"), 1),
    (errors.StorageUnavailable("x"), 1),
    (errors.ValidationFailed("x"), 3),
], ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v))
def test_exit_codes_come_from_one_table(exc: Exception, code: int) -> None:
    assert exit_code_for(exc) == code


def test_expected_error_prints_one_paragraph_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["recipe", "validate", "does-not-exist.yaml"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "does-not-exist.yaml" in err


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["no-such-command"])
    assert info.value.code == 2

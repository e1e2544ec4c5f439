"""Running a command: expected errors printed as one paragraph, exit codes from one table."""

from __future__ import annotations

import sys
from typing import Any, Callable

import click

from comfy_gen import errors
from comfy_gen.urls import redact_text

# The table lives in the library (comfy_gen.exit_codes) so library code never imports the CLI.
from comfy_gen.exit_codes import (EXIT_CODES, EXIT_CONFIG_ERROR, EXIT_FAILURE,  # noqa: F401
                                  EXIT_INTERRUPTED, EXIT_SUCCESS, EXIT_VALIDATION_FAILED, exit_code_for)


def run_guarded(fn: Callable[[], Any]) -> int:
    """Run a click entry point; print expected errors as one paragraph, no traceback."""
    try:
        result = fn()
    except errors.ComfyGenError as exc:
        # Safety net: a message built from a URL with credentials is masked here too.
        click.echo(f"Error: {redact_text(str(exc))}", err=True)
        return _exit(exit_code_for(exc))
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return _exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return _exit(EXIT_INTERRUPTED)
    except click.exceptions.Exit as exc:
        return _exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return _exit(EXIT_CONFIG_ERROR if isinstance(exc, click.UsageError) else exc.exit_code)
    code = result if isinstance(result, int) else EXIT_SUCCESS
    return _exit(code)


def _exit(code: int) -> int:
    sys.exit(code)

"""Exit codes: the one table that turns comfy-gen errors into process exit codes."""

from __future__ import annotations

import sys
from typing import Any, Callable

import click

from comfy_gen import errors
from comfy_gen.urls import redact_text

EXIT_SUCCESS = 0
EXIT_FAILURE = 1
EXIT_CONFIG_ERROR = 2
EXIT_VALIDATION_FAILED = 3
EXIT_INTERRUPTED = 130

#: Most specific class first; the first isinstance match wins.
EXIT_CODES: list[tuple[type[BaseException], int]] = [
    (errors.ValidationFailed, EXIT_VALIDATION_FAILED),
    (errors.ConfigError, EXIT_CONFIG_ERROR),
    (errors.PromptRejected, EXIT_CONFIG_ERROR),
    (errors.ComfyUIUnavailable, EXIT_CONFIG_ERROR),
    (errors.StorageAuthError, EXIT_CONFIG_ERROR),
    (errors.BucketNotFound, EXIT_CONFIG_ERROR),
    (errors.ComfyGenError, EXIT_FAILURE),
]


def exit_code_for(exc: BaseException) -> int:
    for cls, code in EXIT_CODES:
        if isinstance(exc, cls):
            return code
    return EXIT_FAILURE


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

"""Process exit codes: the one table that turns comfy-gen errors into them.

Library data, not CLI code: the CLI (``comfy_gen.cli._errors``) exits with these,
and the seed facade (``comfy_gen.generate``) re-exports the constants its users
compare against, without importing the CLI.
"""

from __future__ import annotations

from comfy_gen import errors

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
    (errors.GpuGateUnavailable, EXIT_CONFIG_ERROR),  # like ComfyUIUnavailable: usually a wrong URL
    (errors.AllBackendsDown, EXIT_CONFIG_ERROR),   # no server to render on, as ComfyUIUnavailable
    (errors.StorageAuthError, EXIT_CONFIG_ERROR),
    (errors.BucketNotFound, EXIT_CONFIG_ERROR),
    (errors.ComfyGenError, EXIT_FAILURE),
]


def exit_code_for(exc: BaseException) -> int:
    """The exit code for an exception (1 for anything not in the table)."""
    for cls, code in EXIT_CODES:
        if isinstance(exc, cls):
            return code
    return EXIT_FAILURE

"""The ``comfy-gen`` command line.

Commands live in one module per family and are imported only when invoked, so
``comfy-gen --help`` stays fast (no torch, transformers or prefect at start-up).
Errors become exit codes here and only here (see ``_errors.EXIT_CODES``).
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import click

from comfy_gen.cli._errors import run_guarded

#: command name -> (module, attribute, short help). Help text lives here so that
#: `comfy-gen --help` does not import the command modules.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "generate": ("comfy_gen.cli.generate_cmd", "generate", "Render one image (validation, retries, upload)."),
    "reproduce": ("comfy_gen.cli.generate_cmd", "reproduce", "Re-render an image from its embedded metadata."),
    "metadata": ("comfy_gen.cli.metadata_cmd", "metadata", "Show metadata embedded in an image."),
    "validate": ("comfy_gen.cli.validate_cmd", "validate", "Run checks (technical, clip, ...) on images on disk."),
    "models": ("comfy_gen.cli.ops_cmd", "models", "List models (checkpoints, LoRAs, ...) on the server."),
    "queue": ("comfy_gen.cli.ops_cmd", "queue", "List running and pending jobs."),
    "cancel": ("comfy_gen.cli.ops_cmd", "cancel", "Cancel a job by id, or all of ours."),
    "server": ("comfy_gen.cli.ops_cmd", "server", "Start/stop/restart/status of a local ComfyUI."),
    "emulator": ("comfy_gen.cli.emulator_cmd", "emulator", "Run the built-in ComfyUI protocol emulator."),
    "bucket": ("comfy_gen.cli.storage_cmd", "bucket", "Create a bucket or set its policy."),
    "images": ("comfy_gen.cli.storage_cmd", "images", "List or delete stored images."),
    "storage": ("comfy_gen.cli.storage_cmd", "storage", "Upload outbox: status and sync."),
    "categories": ("comfy_gen.cli.categories_cmd", "categories", "List, show and search categories."),
    "compose": ("comfy_gen.cli.categories_cmd", "compose", "Compose categories from free text with @tags."),
    "recipe": ("comfy_gen.cli.recipes_cmd", "recipe", "Validate or expand a recipe file."),
    "run": ("comfy_gen.cli.flow_cmd", "run", "Render a recipe through the Prefect flow."),
    "demo": ("comfy_gen.cli.flow_cmd", "demo", "Render the demo recipe end to end (emulator if no ComfyUI)."),
    "catalog": ("comfy_gen.cli.catalog_cmd", "catalog", "Index of stored generations: rebuild, list, show."),
    "mcp": ("comfy_gen.cli.mcp_cmd", "mcp", "Serve the tools for AI agents over MCP (stdio or HTTP)."),
    "up": ("comfy_gen.cli.flow_cmd", "up", "Start a local Prefect server, worker and (if needed) emulator."),
    "serve": ("comfy_gen.cli.serve_cmd", "serve", "Serve the HTTP API and the web page."),
}


class LazyGroup(click.Group):
    """A click group that imports a command's module only when it runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module_name, attr, _help = COMMANDS[name]
        module = importlib.import_module(module_name)
        command: click.Command = getattr(module, attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="comfygen-orchestrator", prog_name="comfy-gen")
def cli() -> None:
    """comfy-gen: declarative, validated, resumable ComfyUI rendering."""


def main(argv: list[str] | None = None) -> Any:
    """Console entry point: run the CLI with expected errors mapped to exit codes."""
    _show_setting_notices()
    args = sys.argv[1:] if argv is None else list(argv)

    def run() -> Any:
        check_arguments(args)
        return cli.main(args=args, standalone_mode=False)

    return run_guarded(run)


def check_arguments(args: list[str]) -> None:
    """Refuse arguments that are not UTF-8 text (UsageError naming the option), before
    any command sees them: undecodable bytes reach Python as lone surrogates and
    would fail later, mid-render, when a prompt or name is encoded as JSON."""
    from comfy_gen.errors import UsageError
    from comfy_gen.params import text_problem

    for index, arg in enumerate(args):
        owner = args[index - 1] if index and args[index - 1].startswith("-") else None
        label = f"the value of {owner}" if owner else f"argument {index + 1}"
        problem = text_problem(arg, label)
        if problem:
            raise UsageError(problem[0].upper() + problem[1:],
                             hint="Pass UTF-8 text; for a file whose name is not UTF-8, rename it first.")


class _StderrNotices(logging.Handler):
    """Settings notices (an original ComfyGen variable in use) as one stderr line each;
    echoed when emitted, so the stream is whatever stderr is at that moment."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"Notice: {record.getMessage()}", err=True)


def _show_setting_notices() -> None:
    logger = logging.getLogger("comfy_gen.config.legacy")
    if not any(isinstance(h, _StderrNotices) for h in logger.handlers):
        logger.addHandler(_StderrNotices(logging.WARNING))

#!/usr/bin/env python3
"""Compatibility entry point: the original ComfyGen's `generate.py`.

Scripts that did `from generate import ...` keep working (the functions are
re-exported from comfy_gen.generate), and `python generate.py ARGS` runs
`comfy-gen generate ARGS`. The original's other modes map onto comfy-gen:
`metadata show IMG`, `--cancel ID` (comfy-gen cancel: only that job), and
`--list-loras` / `--list-presets` (flags of comfy-gen generate).
"""

import sys

from comfy_gen.generate import *  # noqa: F401,F403 - the re-export is the point
from comfy_gen.generate import __all__  # noqa: F401

#: The original's modes, as `generate.py --help` lists them before the generate options.
MODES = """\
Usage: generate.py --workflow FILE --prompt TEXT [OPTIONS]   render one image (comfy-gen generate)
       generate.py --cancel PROMPT_ID                      cancel that job (queued or running)
       generate.py --list-loras                            the server's LoRAs and the catalog's LoRA presets
       generate.py --list-presets                          prompt presets (--prompt-preset) and presets (--preset)
       generate.py --dry-run --workflow FILE               check server, workflow and models; queue nothing
       generate.py metadata show IMAGE                     the metadata embedded in (or beside) an image
       generate.py reproduce IMAGE                         render an image again from its metadata

Exit codes: 0 success, 1 failure, 2 configuration or usage error, 3 validation failed
(the best image is kept), 130 interrupted. Differences from the original ComfyGen:
docs/MIGRATING.md.

Options of generate.py --workflow ... (the same as comfy-gen generate):
"""


def _help() -> int:
    import click

    from comfy_gen.cli.generate_cmd import generate

    click.echo(MODES)
    with click.Context(generate, info_name="generate.py") as ctx:
        formatter = ctx.make_formatter()
        generate.format_options(ctx, formatter)
        click.echo(formatter.getvalue().replace("Options:\n", "", 1))
    return 0


def main(argv=None):
    from comfy_gen.cli import main as cli_main

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("--help", "-h"):
        return _help()
    if args[:1] in (["metadata"], ["generate"], ["reproduce"]):
        return cli_main(args)
    if args[0] == "--cancel" or args[0].startswith("--cancel="):
        prompt_id = args[0].partition("=")[2] if "=" in args[0] else None
        return cli_main(["cancel", *([prompt_id] if prompt_id else []), *args[1:]])
    return cli_main(["generate", *args])


if __name__ == "__main__":
    sys.exit(main())

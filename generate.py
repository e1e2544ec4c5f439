#!/usr/bin/env python3
"""Compatibility entry point: the original ComfyGen's `generate.py`.

Scripts that did `from generate import ...` keep working (the functions are
re-exported from comfy_gen.generate), and `python generate.py ARGS` runs
`comfy-gen generate ARGS`. The original's other modes map onto comfy-gen
commands: `metadata show IMG`, `--cancel ID` (cancel), `--list-loras`
(models --loras), `--list-presets` (the preset names).
"""

import sys

from comfy_gen.generate import *  # noqa: F401,F403 - the re-export is the point
from comfy_gen.generate import __all__  # noqa: F401

#: Leading arguments that name another comfy-gen command.
_ALIASES = {"--cancel": ["cancel"], "--list-loras": ["models", "--loras"]}


def _list_presets() -> int:
    from comfy_gen.config import get_settings
    from comfy_gen.presets import load_presets

    for name, values in sorted(load_presets(get_settings().presets_file).items()):
        print(f"{name:<14}{values.get('description', '')}")
    return 0


def main(argv=None):
    from comfy_gen.cli import main as cli_main

    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["metadata"], ["generate"], ["reproduce"]):
        return cli_main(args)
    if args[:1] == ["--list-presets"]:
        from comfy_gen.cli._errors import run_guarded

        return run_guarded(_list_presets)
    if args[:1] and args[0] in _ALIASES:
        return cli_main([*_ALIASES[args[0]], *args[1:]])
    return cli_main(["generate", *args])


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Compatibility entry point: the original ComfyGen's `generate.py`.

Scripts that did `from generate import ...` keep working (the functions are
re-exported from comfy_gen.generate), and `python generate.py ARGS` runs
`comfy-gen generate ARGS` (`python generate.py metadata show IMG` works too).
"""

import sys

from comfy_gen.generate import *  # noqa: F401,F403 - the re-export is the point
from comfy_gen.generate import __all__  # noqa: F401


def main(argv=None):
    from comfy_gen.cli import main as cli_main

    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["metadata"], ["generate"], ["reproduce"]):
        return cli_main(args)
    return cli_main(["generate", *args])


if __name__ == "__main__":
    main()

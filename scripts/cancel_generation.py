#!/usr/bin/env python3
"""Cancel comfy-gen jobs on ComfyUI.

    cancel_generation.py                 cancel every job queued by comfy-gen
    cancel_generation.py --prompt-id ID  cancel one job (delete if pending, interrupt if running)
    cancel_generation.py --list          show the queue
    ... [--url URL]                      another ComfyUI than COMFY_GEN_COMFYUI_URL
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from comfy_gen.cli import main  # noqa: E402


def to_cli_args(argv: list[str]) -> list[str]:
    """Translate this script's options into `comfy-gen` arguments."""
    parser = argparse.ArgumentParser(description="Cancel comfy-gen jobs on ComfyUI.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--list", action="store_true", help="List running and pending jobs.")
    group.add_argument("--prompt-id", help="Cancel this job only.")
    parser.add_argument("--url", help="ComfyUI base URL.")
    parser.add_argument("--json", action="store_true", help="Print JSON.")
    args = parser.parse_args(argv)
    if args.list:
        cli = ["queue"]
    elif args.prompt_id:
        cli = ["cancel", args.prompt_id]
    else:
        cli = ["cancel", "--all-mine"]
    if args.url:
        cli += ["--url", args.url]
    if args.json:
        cli.append("--json")
    return cli


if __name__ == "__main__":
    sys.exit(main(to_cli_args(sys.argv[1:])))

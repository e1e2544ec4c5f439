#!/usr/bin/env python3
"""Restart the local ComfyUI (comfy-gen server restart). Extra arguments are passed on."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from comfy_gen.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["server", "restart", *sys.argv[1:]]))

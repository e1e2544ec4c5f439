#!/usr/bin/env python3
"""Stop the local ComfyUI (comfy-gen server stop). Extra arguments are passed on."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from comfy_gen.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["server", "stop", *sys.argv[1:]]))

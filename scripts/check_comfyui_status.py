#!/usr/bin/env python3
"""Is the local ComfyUI running and answering? (comfy-gen server status). Extra arguments are passed on."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from comfy_gen.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["server", "status", *sys.argv[1:]]))

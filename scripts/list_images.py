#!/usr/bin/env python3
"""Compatibility wrapper: same as `comfy-gen images list ...`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from comfy_gen.cli import main  # noqa: E402

if __name__ == "__main__":
    main(["images", "list", *sys.argv[1:]])

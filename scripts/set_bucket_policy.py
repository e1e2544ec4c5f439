#!/usr/bin/env python3
"""Compatibility wrapper: same as `comfy-gen bucket policy ...`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from comfy_gen.cli import main  # noqa: E402

if __name__ == "__main__":
    main(["bucket", "policy", *sys.argv[1:]])

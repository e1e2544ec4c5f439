#!/usr/bin/env python3
"""Generate multiple images in batch (the seed's "Batch Processing").

Unchanged from the original API reference except for the output folder (the
system temp folder) and the sys.path line so it runs from a checkout. Hosts come
from the environment (COMFY_GEN_COMFYUI_URL, COMFY_GEN_MINIO_*); without object
storage ``upload_to_minio`` returns None and the images stay local.
For real batches use a recipe and ``comfy-gen run`` (parallel, resumable).
"""

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))

from generate import *
import time

prompts = [
    "a sunset over mountains",
    "a sports car on a highway",
    "a serene lake with reflections",
]

workflow = load_workflow("workflows/flux-dev.json")

for i, prompt in enumerate(prompts):
    print(f"\n[INFO] Generating {i+1}/{len(prompts)}: {prompt}")

    workflow = modify_prompt(workflow, prompt, "blurry, low quality")
    prompt_id = queue_workflow(workflow)

    if prompt_id:
        status = wait_for_completion(prompt_id)
        output_path = os.path.join(tempfile.gettempdir(), f"batch_{i}.png")

        if download_output(status, output_path):
            url = upload_to_minio(output_path, f"batch_{i}.png")
            print(f"[OK] {url}")

    time.sleep(2)  # Rate limiting

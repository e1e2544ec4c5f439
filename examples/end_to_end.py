#!/usr/bin/env python3
"""Complete generation example with error handling."""

import sys
from pathlib import Path

# Add parent directory to path
sys.path.insert(0, str(Path(__file__).parent.parent))

from generate import (
    check_server_availability,
    load_workflow,
    get_available_models,
    validate_workflow_models,
    modify_prompt,
    queue_workflow,
    wait_for_completion,
    download_output,
    upload_to_minio,
    EXIT_SUCCESS,
    EXIT_CONFIG_ERROR
)

def main():
    # Check server
    if not check_server_availability():
        print("[ERROR] Server unavailable")
        return EXIT_CONFIG_ERROR
    
    # Load and validate workflow
    workflow = load_workflow("workflows/flux-dev.json")
    models = get_available_models()
    
    if models:
        is_valid, missing, suggestions = validate_workflow_models(workflow, models)
        if not is_valid:
            print(f"[ERROR] Missing models: {missing}")
            return EXIT_CONFIG_ERROR
    
    # Modify prompts
    workflow = modify_prompt(
        workflow,
        "a beautiful mountain landscape at sunset",
        "blurry, low quality"
    )
    
    # Queue and wait
    prompt_id = queue_workflow(workflow)
    if not prompt_id:
        print("[ERROR] Failed to queue")
        return 1
    
    status = wait_for_completion(prompt_id)
    
    # Download and upload
    output_path = "/tmp/landscape.png"
    if download_output(status, output_path):
        url = upload_to_minio(output_path, "landscape.png")
        if url:
            print(f"[OK] Available at: {url}")
            return EXIT_SUCCESS
    
    return 1

if __name__ == "__main__":
    sys.exit(main())

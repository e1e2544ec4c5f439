#!/usr/bin/env python3
"""Example using validation with retry loop."""

from comfy_gen.validation import ImageValidator
from generate import (
    load_workflow,
    modify_prompt,
    queue_workflow,
    wait_for_completion,
    download_output,
    adjust_prompt_for_retry
)

def generate_with_validation(prompt, negative_prompt="", max_retries=3):
    """Generate image with automatic validation and retry."""
    validator = ImageValidator()
    workflow = load_workflow("workflows/flux-dev.json")
    
    for attempt in range(1, max_retries + 1):
        print(f"[INFO] Attempt {attempt}/{max_retries}")
        
        # Adjust prompts for retry
        if attempt > 1:
            prompt, negative_prompt = adjust_prompt_for_retry(
                prompt, negative_prompt, attempt - 1
            )
            print(f"[INFO] Adjusted prompt: {prompt}")
        
        # Generate
        workflow = modify_prompt(workflow, prompt, negative_prompt)
        prompt_id = queue_workflow(workflow)
        if not prompt_id:
            continue
        
        status = wait_for_completion(prompt_id)
        output_path = f"/tmp/attempt_{attempt}.png"
        
        if not download_output(status, output_path):
            continue
        
        # Validate
        result = validator.validate_image(
            output_path,
            prompt,
            negative_prompt,
            positive_threshold=0.25
        )
        
        print(f"[INFO] Score: {result['positive_score']:.3f}")
        
        if result['passed']:
            print("[OK] Validation passed!")
            return output_path
        else:
            print(f"[WARN] Failed: {result['reason']}")
    
    return None

# Usage
output = generate_with_validation(
    "(Porsche 911:2.0) single car, driving",
    "multiple cars, duplicate"
)

"""`python -m comfy_gen.cli` == `comfy-gen`."""

from comfy_gen.cli import main

if __name__ == "__main__":
    main()

"""``python -m comfy_gen.emulator``: same as ``comfy-gen emulator``."""

from comfy_gen.cli._errors import run_guarded
from comfy_gen.cli.emulator_cmd import emulator

if __name__ == "__main__":
    run_guarded(lambda: emulator.main(standalone_mode=False))

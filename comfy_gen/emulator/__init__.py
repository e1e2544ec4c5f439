"""A ComfyUI protocol emulator: the real HTTP + WebSocket API, no models.

Used by the test suite, the demo and the benchmarks. Behaviour follows the
recordings of a real server in ``tests/recordings`` (see PROTOCOL.md there).
"""

from comfy_gen.emulator.emulator import Emulator
from comfy_gen.emulator.faults import Faults

__all__ = ["Emulator", "Faults"]

"""Fault injection switches, settable from Python or via POST /_emulator/faults."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, fields
from typing import Any

_FIELDS = ("http_5xx_rate", "http_5xx_next", "ws_drop_after", "error_node_class", "step_time",
           "model_switch_time", "seed", "black_images_next")


@dataclass
class Faults:
    """What should go wrong, and how slow a sampler step is.

    - ``http_5xx_rate``: share (0..1) of HTTP requests answered 500 or 503, drawn
      from an RNG seeded by ``seed`` so a run is reproducible.
    - ``http_5xx_next``: the next N requests answer 503 (then 500, alternating).
    - ``ws_drop_after``: each socket is cut (no close frame) after N messages.
    - ``error_node_class``: nodes of this class fail at run time (execution_error).
    - ``step_time``: seconds per sampler step; ``None`` uses the emulator default.
    - ``black_images_next``: the next N saved images are all black, as a VAE that
      overflowed in fp16 writes them (the technical checks catch these).
    - ``model_switch_time``: seconds a job spends loading models when its checkpoint
      or LoRA set differs from the previous job's; ``None`` uses the emulator default.
    The ``/_emulator/*`` control routes are never faulted.
    """

    http_5xx_rate: float = 0.0
    http_5xx_next: int = 0
    ws_drop_after: int | None = None
    error_node_class: str | None = None
    step_time: float | None = None
    model_switch_time: float | None = None
    seed: int = 0
    black_images_next: int = 0
    _rng: random.Random = field(default_factory=lambda: random.Random(0), repr=False)
    _served_next: int = field(default=0, repr=False)

    def update(self, values: dict[str, Any]) -> None:
        """Set fields from a JSON-like dict; unknown keys raise ValueError."""
        unknown = set(values) - set(_FIELDS) - {"reset"}
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        if values.get("reset"):
            self.reset()
        for key in _FIELDS:
            if key in values:
                setattr(self, key, _coerce(key, values[key]))
        if "seed" in values:
            self._rng = random.Random(self.seed)

    def reset(self) -> None:
        """Back to no faults (the emulator's default step time applies)."""
        for f in fields(self):
            if not f.name.startswith("_"):
                setattr(self, f.name, f.default)
        self._rng = random.Random(0)
        self._served_next = 0

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}

    def take_black_image(self) -> bool:
        """True (and one fewer to go) when the next saved image should be black."""
        if self.black_images_next > 0:
            self.black_images_next -= 1
            return True
        return False

    def http_status(self) -> int | None:
        """The 5xx status this request should get, or None to serve it normally."""
        if self.http_5xx_next > 0:
            self.http_5xx_next -= 1
            self._served_next += 1
            return 503 if self._served_next % 2 else 500
        if self.http_5xx_rate > 0 and self._rng.random() < self.http_5xx_rate:
            return self._rng.choice((500, 503))
        return None


_NULLABLE = ("ws_drop_after", "error_node_class", "step_time", "model_switch_time")


def _coerce(key: str, value: Any) -> Any:
    if value is None:
        return None if key in _NULLABLE else _default(key)
    if key == "http_5xx_rate":
        rate = float(value)
        if not 0.0 <= rate <= 1.0:
            raise ValueError("http_5xx_rate must be within 0..1")
        return rate
    if key in ("http_5xx_next", "seed", "ws_drop_after", "black_images_next"):
        return int(value)
    if key in ("step_time", "model_switch_time"):
        return max(0.0, float(value))
    return str(value)


def _default(key: str) -> Any:
    return {f.name: f.default for f in fields(Faults)}[key]

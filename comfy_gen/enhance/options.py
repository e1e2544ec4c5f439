"""What a request or recipe asks of the enhancer, and the refinement hook.

Light on purpose (no model, no httpx): the service model, recipes and the
``prompt_enhance`` strategy import it.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Mapping

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.enhance.core import Enhancer


@dataclass(frozen=True)
class EnhanceOptions:
    """``--enhance-prompt``/``--enhance-style``, or a recipe's ``enhance`` section."""

    enabled: bool = False
    style: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "style": self.style}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "EnhanceOptions":
        data = data or {}
        style = data.get("style")
        return cls(enabled=bool(data.get("enabled", False)), style=None if style is None else str(style))


@dataclass(frozen=True)
class Refiner:
    """The enhancer a generation uses, for the ``prompt_enhance`` strategy's retries."""

    enhancer: "Enhancer"
    original: str
    first: str          # the prompt attempt 1 rendered (the enhanced one)
    style: str | None = None

    def variant(self, base_prompt: str, attempt: int) -> str | None:
        """A more detailed enhancement of the original for ``attempt`` (2, 3+), or None
        (another prompt than this generation's, or the enhancer failed: boosters then)."""
        if base_prompt != self.first:
            return None
        result = self.enhancer.enhance(self.original, style=self.style, detail=min(attempt, 3))
        return result.prompt if result.changed else None


_REFINER: ContextVar[Refiner | None] = ContextVar("comfy_gen_enhance_refiner", default=None)


@contextlib.contextmanager
def refining_with(refiner: Refiner | None) -> Iterator[None]:
    """Strategies called inside the block may ask ``refiner`` for prompt variants."""
    token = _REFINER.set(refiner)
    try:
        yield
    finally:
        _REFINER.reset(token)


def current_refiner() -> Refiner | None:
    return _REFINER.get()

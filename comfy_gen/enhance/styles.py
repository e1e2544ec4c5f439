"""Named enhancement styles: each shapes the enhancer's system prompt.

Neutral on purpose: a style names a look, never content; the subject of the
user's prompt is kept as it is.
"""

from __future__ import annotations

from comfy_gen.errors import UsageError

#: style -> what the system prompt asks the model to add.
STYLES: dict[str, str] = {
    "photographic": "realistic photographic detail: lighting, lens, composition, texture",
    "cinematic": "a cinematic film still: dramatic lighting, mood, camera angle, colour grading",
    "illustration": "an illustration: medium, line work, colour palette, artistic technique",
    "minimal": "a minimal, clean look: simple composition, few elements, calm colours",
}

#: The style used when none is named.
DEFAULT_STYLE = "photographic"

_SYSTEM = (
    "You rewrite prompts for an image generator. Expand the user's prompt into one vivid, "
    "concrete prompt of at most {words} words that keeps every subject, count and detail the "
    "user gave and adds {style}. Answer with the prompt only: one line, no quotes, no preamble, "
    "no explanation."
)
#: For refinement retries: how much more detail each later attempt asks for.
_DETAIL = {
    1: "",
    2: " Make it more detailed than a plain description: name textures, materials and lighting.",
    3: " Make it highly detailed: name textures, materials, lighting, composition and quality.",
}


def check_style(style: str | None) -> str:
    """The style to use (``None`` -> the default); UsageError listing the known ones."""
    if style is None:
        return DEFAULT_STYLE
    name = style.strip().lower()
    if name not in STYLES:
        raise UsageError(f"Unknown enhancement style {style!r}; known styles: {', '.join(sorted(STYLES))}",
                         hint="Pass --enhance-style with one of them (recipes: enhance.style).")
    return name


def system_prompt(style: str | None, *, detail: int = 1, words: int = 60) -> str:
    """The system message for ``style``; ``detail`` 2+ (refinement retries) asks for more."""
    name = check_style(style)
    return _SYSTEM.format(words=words, style=STYLES[name]) + _DETAIL[max(1, min(detail, 3))]

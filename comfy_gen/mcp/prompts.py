"""Prompt and category tools: build_prompt, suggest_negative, analyze_prompt, compose_recipe,
list_categories, get_category.

The policy tier is the server's (``COMFY_GEN_POLICY_TIER``); a client may only ask
for a lower one (``comfy_gen.categories.effective_tier``), never a higher one.
"""

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

from comfy_gen.mcp.state import blocking

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.mcp.server import App

Json = dict[str, Any]
Tier = Annotated[Literal["general", "mature", "explicit"] | None, Field(
    description="Content tier for this call; it can only lower the server's tier (null: the server's).")]

#: The default negative prompt per model family (UNET families such as flux and wan
#: ignore a negative prompt at cfg 1, so theirs is empty).
DEFAULT_NEGATIVES: dict[str, str] = {
    "sd15": "bad quality, blurry, low resolution, watermark, text, deformed, ugly, duplicate",
    "sdxl": "bad quality, blurry, low resolution, watermark, text, deformed, ugly, duplicate, jpeg artifacts",
    "flux": "",
    "wan": "static, blurry, watermark, text, low quality, distorted motion",
}
#: Negative additions by subject, appended to a family's default by suggest_negative.
NEGATIVE_SUGGESTIONS: dict[str, str] = {
    "general": "bad quality, blurry, watermark, text, signature",
    "portrait": "bad anatomy, extra fingers, extra limbs, deformed face, asymmetric eyes, cloned face",
    "landscape": "people, buildings, oversaturated, hazy, tilted horizon",
    "anime": "realistic, photo, 3d render, bad hands, extra digits",
    "photo": "illustration, painting, cartoon, cgi, overexposed, underexposed",
    "product": "cluttered background, reflections, dust, cropped, distorted label",
}
QUALITY_TERMS = ("highly detailed", "sharp focus", "best quality")
#: Words analyze_prompt looks for, by element.
ELEMENTS: dict[str, tuple[str, ...]] = {
    "style": ("photo", "photograph", "photorealistic", "realistic", "painting", "oil", "watercolor", "anime",
              "illustration", "sketch", "cinematic", "3d", "render", "pixel art", "digital art"),
    "lighting": ("lighting", "light", "sunset", "sunrise", "golden hour", "backlit", "neon", "shadows", "night",
                 "studio", "dramatic", "soft light"),
    "quality": ("detailed", "highly detailed", "sharp", "8k", "4k", "masterpiece", "best quality", "hdr",
                "high resolution"),
    "composition": ("close-up", "closeup", "portrait", "wide shot", "wide angle", "full body", "macro",
                    "aerial", "overhead", "centered", "rule of thirds"),
    "camera": ("35mm", "50mm", "85mm", "dslr", "bokeh", "depth of field", "f/1.8", "lens"),
}
#: CLIP reads at most 77 tokens (75 usable); words are a rough stand-in for tokens.
CLIP_WORD_LIMIT = 75


def register(app: "App") -> None:
    mcp = app.mcp

    @mcp.tool()
    def build_prompt(
        subject: Annotated[str, Field(description="The main subject.", min_length=1, max_length=2000)],
        style: Annotated[str | None, Field(description="An art style, e.g. oil painting.", max_length=500)] = None,
        setting: Annotated[str | None, Field(description="Where / when, e.g. misty forest at dawn.",
                                             max_length=500)] = None,
    ) -> Json:
        """A prompt from parts: subject, style, setting and quality terms, ", "-joined.
        Returns prompt and components."""
        return assemble_prompt(subject, style, setting)

    @mcp.tool()
    def suggest_negative(
        model_type: Annotated[Literal["sd15", "sdxl", "flux", "wan", "default"],
                              Field(description="Model family.")] = "sd15",
    ) -> Json:
        """The default negative prompt for a model family and subject-specific additions.
        Returns default, suggestions {general, portrait, landscape, ...}, model_type."""
        default = DEFAULT_NEGATIVES.get(model_type, DEFAULT_NEGATIVES["sd15"])
        return {"model_type": model_type, "default": default, "suggestions": dict(NEGATIVE_SUGGESTIONS)}

    @mcp.tool()
    def analyze_prompt(
        prompt: Annotated[str, Field(description="The prompt to analyse.", max_length=10000)],
    ) -> Json:
        """Length, word count, detected elements (style, lighting, quality, composition, camera),
        issues and suggestions. Returns {prompt, analysis}."""
        return {"prompt": prompt, "analysis": analyze(prompt)}

    @mcp.tool()
    async def compose_recipe(
        input_text: Annotated[str, Field(description="Free text with optional @category tags, e.g. "
                                                     "'@portrait woman at @night'.", min_length=1,
                                         max_length=5000)],
        dry_run: Annotated[bool, Field(description="Only compose (nothing is rendered).")] = True,
        max_categories: Annotated[int, Field(ge=1, le=10)] = 3,
        min_confidence: Annotated[float, Field(description="Threshold for inferred categories.", ge=0,
                                               le=1)] = 0.3,
        policy_tier: Tier = None,
    ) -> Json:
        """Compose categories into a generation recipe (prompt, negative, LoRAs, settings, workflow).
        Returns recipe, explanation (steps, inferred categories, warnings), recipe_hash, dry_run."""
        from comfy_gen.categories import compose, effective_tier, get_registry

        def run() -> Json:
            tier = effective_tier(app.settings.policy_tier, policy_tier)
            comp = compose(input_text, registry=get_registry(app.settings), max_categories=max_categories,
                           min_confidence=min_confidence, tier=tier, dry_run=dry_run)
            return {**comp.to_dict(), "policy_tier": tier}
        return await blocking(run)

    @mcp.tool()
    async def list_categories(
        category_type: Annotated[str | None, Field(description="Only this type (subject, setting, "
                                                               "modifier, style, ...).")] = None,
        query: Annotated[str | None, Field(description="Search ids, names and keywords instead of "
                                                       "listing.", max_length=200)] = None,
        page: Annotated[int, Field(ge=1)] = 1,
        page_size: Annotated[int, Field(ge=1, le=200)] = 20,
    ) -> Json:
        """Categories allowed at the server's tier (summaries: id, type, display_name, description).
        Returns items, total, page, page_size (and query when searching)."""
        from comfy_gen.categories import get_registry

        def run() -> Json:
            registry, tier = get_registry(app.settings), app.settings.policy_tier
            cats = registry.search(query, tier=tier) if query else registry.list(type=category_type, tier=tier)
            if query and category_type:
                cats = [c for c in cats if c.type == category_type]
            start = (page - 1) * page_size
            data: Json = {"items": [c.summary() for c in cats[start:start + page_size]], "total": len(cats),
                          "page": page, "page_size": page_size}
            if query:
                data["query"] = query
            return data
        return await blocking(run)

    @mcp.tool()
    async def get_category(
        category_id: Annotated[str, Field(description="A category id.", min_length=1, max_length=200)],
    ) -> Json:
        """One category in full (keywords, prompt fragments, LoRAs, settings, rules).
        Returns {category}; an unknown id is an error with suggestions."""
        from comfy_gen.categories import get_registry

        return await blocking(lambda: {"category": get_registry(app.settings).get(
            category_id, tier=app.settings.policy_tier).to_dict()})


def assemble_prompt(subject: str, style: str | None, setting: str | None) -> Json:
    components: Json = {"subject": subject.strip(), "style": (style or "").strip() or None,
                        "setting": (setting or "").strip() or None, "quality": list(QUALITY_TERMS)}
    parts = [components["subject"], components["style"], components["setting"], *QUALITY_TERMS]
    return {"prompt": ", ".join(p for p in parts if p), "components": components}


def _has(text: str, term: str) -> bool:
    return re.search(rf"(?<![\w]){re.escape(term)}(?![\w])", text) is not None


def analyze(prompt: str) -> Json:
    text = prompt.lower()
    words = re.findall(r"[\w'/.-]+", text)
    detected = {name: [t for t in terms if _has(text, t)] for name, terms in ELEMENTS.items()}
    issues: list[str] = []
    suggestions: list[str] = []
    if len(words) < 4:
        issues.append("Very short prompt: the model will fill in most details itself")
        suggestions.append("Describe the subject, setting and style (build_prompt helps)")
    if len(words) > CLIP_WORD_LIMIT:
        issues.append(f"About {len(words)} words: CLIP reads ~{CLIP_WORD_LIMIT} tokens, later words weigh less")
        suggestions.append("Put the most important words first, or shorten the prompt")
    repeated = sorted({w for w in words if len(w) > 3 and words.count(w) > 2})
    if repeated:
        issues.append(f"Repeated words: {', '.join(repeated)}")
    for name in ("style", "lighting", "quality"):
        if not detected[name]:
            suggestions.append(f"Add a {name} term (e.g. {ELEMENTS[name][0]!r})")
    if re.search(r"\bno\s+\w+|\bwithout\b", text):
        issues.append("Negations ('no ...', 'without') tend to add the thing: use the negative prompt")
    return {"length": len(prompt), "word_count": len(words), "issues": issues, "suggestions": suggestions,
            "detected_elements": {k: v for k, v in detected.items() if v}}

"""Model tools: list_models, list_loras, get_model_info, suggest_model, suggest_loras.

What is installed comes from ComfyUI (``/models``, ``/object_info``); what a model
is good for comes from the LoRA catalog (``comfy_gen.catalogs``: the shipped
sample or ``COMFY_GEN_LORA_CATALOG_FILE``), scored by the original's rules.
"""

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from comfy_gen.errors import UsageError
from comfy_gen.mcp.state import blocking, client

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.mcp.server import App

Json = dict[str, Any]
MAIN_FOLDERS = ("checkpoints", "diffusion_models", "vae")


def register(app: "App") -> None:
    mcp = app.mcp

    @mcp.tool()
    async def list_models() -> Json:
        """Models ComfyUI can load: checkpoints, diffusion_models, vae (file names), count, and
        folders (every model folder with its files)."""
        def run() -> Json:
            with client(app) as c:
                folders = c.available_models()
            data: Json = {name: list(folders.get(name, [])) for name in MAIN_FOLDERS}
            data["count"] = sum(len(data[name]) for name in MAIN_FOLDERS)
            data["folders"] = folders
            return data
        return await blocking(run)

    @mcp.tool()
    async def list_loras() -> Json:
        """Installed LoRAs with what the catalog knows: loras [{name, tags, compatible_with,
        recommended_strength, description, in_catalog}], count."""
        def run() -> Json:
            catalog = _catalog(app)
            with client(app) as c:
                names = c.models("loras")
            rows = [_lora_row(name, catalog.get(name)) for name in names]
            return {"loras": rows, "count": len(rows)}
        return await blocking(run)

    @mcp.tool()
    async def get_model_info(
        model_name: Annotated[str, Field(description="A model file name as list_models/list_loras give it.",
                                         min_length=1, max_length=500)],
    ) -> Json:
        """One installed model: name, type (its folder), installed, and catalog fields (tags,
        compatible_with, base_model, recommended_strength, description, scenarios using it)."""
        def run() -> Json:
            from comfy_gen.workflow import find_model_fallbacks

            with client(app) as c:
                folders = c.available_models()
            found = [folder for folder, files in folders.items() if model_name in files]
            catalog = _catalog(app)
            entry = catalog.get(model_name)
            scenarios = sorted(name for name, s in catalog.model_suggestions.items() if s.model == model_name)
            if not found and entry is None and not scenarios:
                candidates = [f for files in folders.values() for f in files]
                raise UsageError(f"Model {model_name!r} is neither installed on ComfyUI nor in the catalog",
                                 hint="Did you mean: " + (", ".join(find_model_fallbacks(model_name, candidates))
                                                          or "nothing close; see list_models"))
            data: Json = {"name": model_name, "type": found[0] if found else (entry.category if entry else None),
                          "folders": found, "installed": bool(found), "scenarios": scenarios}
            if entry is not None:
                data.update({k: v for k, v in entry.to_dict().items() if k != "filename"})
            return data
        return await blocking(run)

    @mcp.tool()
    def suggest_model(
        task: Annotated[str, Field(description="What to make: portrait, landscape, anime, text-to-video, "
                                               "image-to-video, or a catalog scenario name.",
                                   min_length=1, max_length=200)],
        style: Annotated[str | None, Field(description="Optional style, recorded in the reason.",
                                           max_length=200)] = None,
        subject: Annotated[str | None, Field(description="Optional subject, recorded in the reason.",
                                             max_length=200)] = None,
    ) -> Json:
        """The model (and workflow, default LoRAs) for a task, from the catalog's scenarios else the
        original's table. Returns task, recommended, workflow, alternatives, reason, source, scenario."""
        from comfy_gen.catalogs import suggest_model as suggest

        data = suggest(task, _catalog(app)).to_dict()
        extra = ", ".join(f"{k}: {v}" for k, v in (("style", style), ("subject", subject)) if v)
        if extra:
            data["reason"] = f"{data['reason']} ({extra})"
        return data

    @mcp.tool()
    def suggest_loras(
        prompt: Annotated[str, Field(description="The prompt to match.", min_length=1, max_length=10000)],
        model: Annotated[str, Field(description="The model file the LoRAs must suit.", min_length=1,
                                    max_length=500)],
        max_suggestions: Annotated[int, Field(ge=1, le=50)] = 3,
    ) -> Json:
        """Catalog LoRAs for a prompt on a model, best first (+2 per tag, +3 per use case found in the
        prompt, +5 acceleration on Wan). Returns suggestions [{name, suggested_strength, reason, score,
        matched_reasons}], count."""
        from comfy_gen.catalogs import suggest_loras as suggest

        rows = [s.to_dict() for s in suggest(prompt, model, max_suggestions, _catalog(app))]
        return {"suggestions": rows, "count": len(rows)}


def _catalog(app: Any) -> Any:
    from comfy_gen.catalogs import lora_catalog_for

    return lora_catalog_for(app.settings)


def _lora_row(name: str, entry: Any) -> Json:
    info = entry.to_dict() if entry is not None else {}
    return {"name": name, "tags": info.get("tags", []), "compatible_with": info.get("compatible_with", []),
            "recommended_strength": info.get("recommended_strength"), "description": info.get("description", ""),
            "in_catalog": entry is not None}

"""Image metadata: the sidecar JSON, PNG text chunks, and reading them back.

The sidecar (``<image>.json``) and the ``comfygen_metadata`` PNG chunk hold the
same document (schema: ``comfy_gen/schemas/metadata.schema.json``). PNGs also
get an A1111/CivitAI ``parameters`` line. ComfyUI's own ``prompt``/``workflow``
chunks are kept as they are: they let ComfyUI reload the graph by drag-and-drop.
Embedding happens before upload, so the stored copy carries the metadata too.
"""

from __future__ import annotations

import json
import struct
import uuid
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from comfy_gen import jsonschemas
from comfy_gen.errors import MetadataNotFound, UsageError
from comfy_gen.storage.local import atomic_write_bytes, atomic_write_json, sidecar_path

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.validation.plan import Verdict

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "metadata.schema.json"
METADATA_CHUNK = "comfygen_metadata"
PARAMETERS_CHUNK = "parameters"
COMFYUI_CHUNKS = ("prompt", "workflow")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TEXT_TYPES = (b"tEXt", b"iTXt", b"zTXt")


# --- building the document ----------------------------------------------------


def parse_tags(text: str | None) -> dict[str, str | bool]:
    """``"project:demo,draft"`` -> ``{"project": "demo", "draft": True}``."""
    tags: dict[str, str | bool] = {}
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        if ":" in part:
            key, value = part.split(":", 1)
            if not key.strip():
                raise UsageError(f"Tag {part!r} has no name before ':'",
                                 hint='Use --tags "key:value,flag", e.g. "project:coast,draft"')
            tags[key.strip()] = value.strip()
        else:
            tags[part] = True
    return tags


def _params_dict(params: Any) -> dict[str, Any]:
    if params is None:
        return {}
    if hasattr(params, "to_dict"):
        return dict(params.to_dict())
    return dict(params)


def _loras(items: Any) -> list[dict[str, Any]]:
    out = []
    for item in items or []:
        if isinstance(item, str):
            name, _, strength = item.rpartition(":") if ":" in item else (item, "", "1")
            out.append({"name": name, "strength": float(strength or 1)})
            continue
        if hasattr(item, "to_dict"):
            item = item.to_dict()
        strength = item.get("strength", item.get("strength_model", 1.0))
        entry = {"name": item.get("name") or item.get("filename"), "strength": float(strength)}
        clip = item.get("strength_clip")
        if clip is not None and float(clip) != entry["strength"]:
            entry["strength_clip"] = float(clip)
        out.append(entry)
    return out


def build_metadata(*, params: Any, workflow_name: str | None = None, model: str | None = None,
                   vae: str | None = None, prompt_id: str | None = None, generation_id: str | None = None,
                   preset: str | None = None, validation: dict[str, Any] | None = None,
                   verdicts: "Sequence[Verdict] | None" = None,
                   quality: dict[str, Any] | None = None, attempts: list[dict[str, Any]] | None = None,
                   max_attempts: int | None = None, strategy: str | None = None,
                   final_status: str | None = None, storage: dict[str, Any] | None = None,
                   organization: dict[str, Any] | None = None, flow_run_id: str | None = None,
                   item_id: str | None = None, recipe: str | None = None, backend: str | None = None,
                   timestamp: datetime | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The metadata document of one finished image (sections as in the original).

    ``params`` is a GenerationParams or its ``to_dict()`` for the image as rendered
    (the last attempt's values, not the first's). ``verdicts`` (the kept attempt's)
    give the ``validation`` section; a ready ``validation`` dict is used as given.
    ``attempts`` lists ``{"params": ..., "scores": ...}`` per attempt.
    ``organization.tags`` may be a ``"k:v,flag"`` string.
    """
    from comfy_gen import __version__

    from comfy_gen.validation.plan import validation_block

    p = _params_dict(params)
    width, height = p.get("width"), p.get("height")
    if validation is None and verdicts:
        validation = validation_block(verdicts)
    if quality is None and validation:
        quality = _quality_section(validation)
    adherence = _prompt_adherence(validation) if quality is None and validation else None
    if adherence:
        # No quality scoring ran: the validators' prompt scores are the only scores we have.
        quality = {"composite_score": None, "grade": None, "technical": None, "aesthetic": None,
                   "prompt_adherence": adherence, "detail": None}
    attempt_list = [{"params": _params_dict(a.get("params")), "scores": a.get("scores")}
                    for a in attempts or []]
    org = dict(organization or {})
    if isinstance(org.get("tags"), str):
        org["tags"] = parse_tags(org["tags"])
    meta: dict[str, Any] = {
        "timestamp": (timestamp or datetime.now(timezone.utc)).isoformat(),
        "generation_id": generation_id or str(uuid.uuid4()),
        "input": {"prompt": p.get("prompt"), "negative_prompt": p.get("negative_prompt"), "preset": preset},
        "workflow": {"name": workflow_name, "model": model or p.get("checkpoint"), "vae": vae or p.get("vae")},
        "parameters": {
            "seed": p.get("seed"), "steps": p.get("steps"), "cfg": p.get("cfg"),
            "sampler": p.get("sampler"), "scheduler": p.get("scheduler"), "denoise": p.get("denoise"),
            "resolution": [width, height] if width and height else None,
            "loras": _loras(p.get("loras")),
            # video and background removal: only when asked for (docs/video.md)
            **{k: p[k] for k in ("frames", "fps", "transparent") if p.get(k) is not None},
        },
        "quality": quality,
        "validation": validation,
        "refinement": {
            "attempt": len(attempt_list) or (1 if final_status else None),
            "max_attempts": max_attempts, "strategy": strategy,
            "attempts": attempt_list,
            "previous_scores": [a["scores"] for a in attempt_list[:-1]],
            "final_status": final_status,
        },
        "storage": {"url": None, "key": None, "file_size_bytes": None, "format": None,
                    "generation_time_seconds": None, **(storage or {})},
        "organization": {"project": org.pop("project", None), "batch_id": org.pop("batch_id", None),
                         "tags": org.pop("tags", None) or {}, **org},
        "comfyui": {"prompt_id": prompt_id, "backend": backend},
        "prefect": {"flow_run_id": flow_run_id},
        "comfy_gen": {"version": __version__, "item_id": item_id, "recipe": recipe},
    }
    if extra:
        meta["extra"] = extra
    return meta


def _quality_section(validation: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``quality`` section from the quality validator's verdict, when it ran."""
    for entry in validation.get("verdicts") or []:
        if entry.get("validator") == "quality" and entry.get("scores"):
            from comfy_gen.validation.quality_score import quality_block

            return quality_block(entry["scores"])
    return None


def _prompt_adherence(validation: Mapping[str, Any]) -> dict[str, Any]:
    """Each validator's ``positive_score`` by validator name, from the verdicts of a
    validation section; a flat section without verdicts is the default validator's."""
    from comfy_gen.validation.plan import DEFAULT_VALIDATOR

    entries = validation.get("verdicts")
    if not entries:
        entries = [{"validator": validation.get("validator") or DEFAULT_VALIDATOR, "scores": validation}]
    adherence: dict[str, Any] = {}
    for entry in entries:
        score = (entry.get("scores") or {}).get("positive_score")
        if score is not None:
            adherence.setdefault(str(entry.get("validator") or DEFAULT_VALIDATOR), score)
    return adherence


def load_schema() -> dict[str, Any]:
    return jsonschemas.load(SCHEMA_PATH)


def validate_metadata(meta: dict[str, Any]) -> None:
    """Raise UsageError listing every schema violation of ``meta``."""
    validator = jsonschemas.validator(SCHEMA_PATH)
    problems = [f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
                for e in validator.iter_errors(meta)]
    if problems:
        raise UsageError("Invalid metadata: " + "; ".join(problems))


def write_sidecar(image_path: str | Path, meta: dict[str, Any]) -> Path:
    """Write ``<image>.json`` atomically; returns its path."""
    return atomic_write_json(sidecar_path(image_path), meta)


# --- the A1111 line --------------------------------------------------------------


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def a1111_parameters(meta: dict[str, Any]) -> str:
    """The A1111/CivitAI ``parameters`` text: prompt, negative line, then settings."""
    inp, prm, wf = meta.get("input") or {}, meta.get("parameters") or {}, meta.get("workflow") or {}
    lines = [inp.get("prompt") or ""]
    if inp.get("negative_prompt"):
        lines.append(f"Negative prompt: {inp['negative_prompt']}")
    fields: list[tuple[str, Any]] = [("Steps", prm.get("steps")), ("Sampler", prm.get("sampler")),
                                     ("CFG scale", prm.get("cfg")), ("Seed", prm.get("seed"))]
    res = prm.get("resolution")
    fields.append(("Size", f"{res[0]}x{res[1]}" if res else None))
    fields += [("Model", wf.get("model")), ("VAE", wf.get("vae"))]
    fields += [("Lora", f"{lo['name']}:{_fmt(lo['strength'])}") for lo in prm.get("loras") or []]
    lines.append(", ".join(f"{k}: {_fmt(v)}" for k, v in fields if v is not None and v != ""))
    return "\n".join(lines)


# --- PNG chunks --------------------------------------------------------------------


def _chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Every ``(type, body)`` of a PNG, for files we wrote ourselves (embedding)."""
    if not data.startswith(PNG_SIGNATURE):
        raise UsageError("Not a PNG file")
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        ctype = data[pos + 4:pos + 8]
        yield ctype, data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if ctype == b"IEND":
            return


def _chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def _text_chunk(keyword: str, text: str) -> bytes:
    # tEXt is Latin-1 only; prompts are often not, so use uncompressed iTXt (UTF-8) then.
    try:
        return _chunk(b"tEXt", keyword.encode("latin-1") + b"\0" + text.encode("latin-1"))
    except UnicodeEncodeError:
        return _chunk(b"iTXt", keyword.encode("latin-1") + b"\0\0\0\0\0" + text.encode("utf-8"))


#: A text chunk may inflate to at most this much (zTXt/iTXt are zlib streams: a
#: few kilobytes can claim gigabytes). Our own documents are a few kilobytes;
#: ComfyUI's workflow chunk rarely passes a megabyte.
MAX_TEXT_BYTES = 16 * 1024 * 1024


def _inflate(data: bytes, what: str) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_TEXT_BYTES + 1)
    except zlib.error as exc:
        raise ValueError(f"{what} is not a valid zlib stream ({exc})") from exc
    if len(out) > MAX_TEXT_BYTES:
        raise ValueError(f"{what} inflates to more than {MAX_TEXT_BYTES} bytes")
    return out


def _decode_text(ctype: bytes, body: bytes) -> tuple[str, str]:
    """``(keyword, text)`` of one text chunk; ValueError naming what is damaged."""
    keyword, sep, rest = body.partition(b"\0")
    if not sep or not 1 <= len(keyword) <= 79:
        raise ValueError("no keyword (1-79 bytes, then a NUL)")
    key = keyword.decode("latin-1")
    if ctype == b"tEXt":
        return key, rest.decode("latin-1")
    if ctype == b"zTXt":
        if not rest or rest[0] != 0:
            raise ValueError(f"chunk {key!r}: unknown compression method")
        return key, _inflate(rest[1:], f"chunk {key!r}").decode("latin-1")
    if len(rest) < 2:
        raise ValueError(f"chunk {key!r}: truncated iTXt header")
    compressed, method, rest = rest[0], rest[1], rest[2:]
    if compressed not in (0, 1) or (compressed and method != 0):
        raise ValueError(f"chunk {key!r}: unknown compression flag/method")
    _lang, _, rest = rest.partition(b"\0")
    _translated, _, text = rest.partition(b"\0")
    raw = _inflate(text, f"chunk {key!r}") if compressed else text
    try:
        return key, raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"chunk {key!r}: text is not valid UTF-8 (byte {exc.start})") from exc


def png_text_chunks(path: str | Path) -> dict[str, str]:
    """Every text chunk of a PNG (tEXt, zTXt, iTXt) as keyword -> text.

    Reading is defensive: images come from anywhere. A file cut short, a chunk
    whose length runs past the end, a bad CRC, a broken zlib stream or bad
    UTF-8 in a text chunk is a UsageError naming the file, the chunk and its
    offset (exit 2), never a traceback or a silently partial answer.
    """
    path = Path(path)
    data = path.read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        raise UsageError(f"{path} is not a PNG file")
    out: dict[str, str] = {}
    pos = len(PNG_SIGNATURE)
    while True:
        if pos + 8 > len(data):
            raise UsageError(f"{path}: damaged PNG: the file ends at byte {len(data)} before the IEND chunk")
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        ctype = data[pos + 4:pos + 8]
        name = ctype.decode("latin-1")
        if not ctype.isalpha():
            raise UsageError(f"{path}: damaged PNG: invalid chunk type {ctype!r} at byte {pos}")
        if length > 0x7FFFFFFF or pos + 12 + length > len(data):
            raise UsageError(f"{path}: damaged PNG: chunk {name} at byte {pos} claims {length} bytes, "
                             f"past the end of the file ({len(data)} bytes)")
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        if ctype in _TEXT_TYPES:
            if crc != zlib.crc32(ctype + body):
                raise UsageError(f"{path}: damaged PNG: chunk {name} at byte {pos} fails its CRC check")
            try:
                key, text = _decode_text(ctype, body)
            except ValueError as exc:
                raise UsageError(f"{path}: damaged PNG metadata: {name} chunk at byte {pos}: {exc}") from exc
            out[key] = text
        pos += 12 + length
        if ctype == b"IEND":
            return out


def embed_png_metadata(path: str | Path, meta: dict[str, Any], params: Any = None) -> Path:
    """Add ``comfygen_metadata`` (JSON) and ``parameters`` (A1111) chunks to a PNG.

    Our chunks go before the first IDAT, where ComfyUI and A1111 put theirs:
    readers that stop at the image data (``PIL.Image.open(p).info`` before
    ``load()``, many web tools) see them. Every other chunk, ComfyUI's
    ``prompt``/``workflow`` included, is copied byte for byte in its order (no
    re-encoding); earlier comfy-gen chunks are replaced. The file is rewritten
    atomically. ``params`` is accepted for the contract's signature; the
    document already holds the parameters.
    """
    path = Path(path)
    data = path.read_bytes()
    ours = {METADATA_CHUNK, PARAMETERS_CHUNK}
    out = [PNG_SIGNATURE]
    placed = False
    for ctype, body in _chunks(data):
        if ctype in _TEXT_TYPES and body.partition(b"\0")[0].decode("latin-1") in ours:
            continue
        if not placed and ctype in (b"IDAT", b"IEND"):
            out.append(_text_chunk(METADATA_CHUNK, json.dumps(meta, ensure_ascii=False, default=str)))
            out.append(_text_chunk(PARAMETERS_CHUNK, a1111_parameters(meta)))
            placed = True
        out.append(_chunk(ctype, body))
    return atomic_write_bytes(path, b"".join(out))


# --- reading back ------------------------------------------------------------------


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The comfy-gen document of an image: the ``comfygen_metadata`` chunk, else the
    sidecar, else what ComfyUI itself embedded (``source`` says which).

    UsageError (exit 2) for a damaged PNG, a comfy-gen chunk or sidecar that is
    not a JSON object; MetadataNotFound (exit 1) when there is simply none.
    """
    path = Path(path)
    chunks: dict[str, str] = {}
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise UsageError(f"Cannot read {path}: {exc.strerror or exc}") from exc
    if head == PNG_SIGNATURE:
        chunks = png_text_chunks(path)
    side = sidecar_path(path)
    if METADATA_CHUNK in chunks:
        try:
            return {**_json_object(chunks[METADATA_CHUNK], f"{path}: PNG chunk {METADATA_CHUNK!r}"),
                    "source": "png"}
        except UsageError:
            if not side.is_file():
                raise  # damaged chunk and nothing to fall back on
    if side.is_file():
        try:
            text = side.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UsageError(f"Sidecar {side}: invalid UTF-8 at byte {exc.start}") from exc
        return {**_json_object(text, f"Sidecar {side}"), "source": "sidecar"}
    found = {k: chunks[k] for k in (*COMFYUI_CHUNKS, PARAMETERS_CHUNK) if k in chunks}
    if found:
        data: dict[str, Any] = {"source": "comfyui"}
        for key, text in found.items():
            try:
                data[key] = json.loads(text) if key in COMFYUI_CHUNKS else text
            except (json.JSONDecodeError, RecursionError):
                data[key] = text
        return data
    raise MetadataNotFound(
        f"No comfy-gen metadata in {str(path)!r}: no {METADATA_CHUNK!r} PNG chunk, no sidecar "
        f"{side.name!r}, and no ComfyUI prompt/workflow chunks",
        hint=f"Images made by comfy-gen keep a sidecar next to them ({side.name}); "
             "copy it beside the image, or use the stored copy.")


def _json_object(text: str, where: str) -> dict[str, Any]:
    """A comfy-gen document must be a JSON object: UsageError naming ``where`` otherwise."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{where} is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise UsageError(f"{where} is not valid JSON: nested too deeply") from exc
    if not isinstance(value, dict):
        raise UsageError(f"{where} is not a JSON object (got {type(value).__name__})")
    _check_shape(value, where)
    return value


_SECTIONS = ("input", "workflow", "parameters", "quality", "validation", "refinement", "storage",
             "organization", "comfyui", "prefect", "comfy_gen")


def _check_shape(doc: dict[str, Any], where: str) -> None:
    """The parts readers index into have the shape they expect (UsageError naming the field)."""
    for name in _SECTIONS:
        if doc.get(name) is not None and not isinstance(doc[name], dict):
            raise UsageError(f"{where}: field {name!r} must be an object (got {type(doc[name]).__name__})")
    prm = doc.get("parameters") or {}
    res = prm.get("resolution")
    if res is not None and not (isinstance(res, list) and len(res) == 2):
        raise UsageError(f"{where}: field 'parameters.resolution' must be [width, height]")
    loras = prm.get("loras")
    if loras is not None and not (isinstance(loras, list)
                                  and all(isinstance(lo, dict) and "name" in lo and "strength" in lo
                                          for lo in loras)):
        raise UsageError(f"{where}: field 'parameters.loras' must be a list of {{name, strength}}")
    for key in ("tags",):
        value = (doc.get("organization") or {}).get(key)
        if value is not None and not isinstance(value, dict):
            raise UsageError(f"{where}: field 'organization.tags' must be an object")
    params = (doc.get("comfy_gen") or {}).get("params")
    if params is not None and not isinstance(params, dict):
        raise UsageError(f"{where}: field 'comfy_gen.params' must be an object")

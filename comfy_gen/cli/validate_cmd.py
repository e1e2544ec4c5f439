"""`comfy-gen validate IMAGE_OR_FOLDER...`: run any registered checks on images on disk.

Users vet old batches with it, and it is the simplest way to see what a check
does. Every input is checked before a validator loads (a missing file, a
non-image, a decompression bomb: exit 2); each validator loads once and scores
the images in batches (``PreparedPlan.judge_many``). The prompt of an image is
``--prompt``, else its metadata's (comfy-gen sidecar or PNG chunk, else the
ComfyUI graph it embeds). Exit 0 when every image passes every check, 3 when
some fail.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import click

from comfy_gen.errors import UsageError
from comfy_gen.exit_codes import EXIT_SUCCESS, EXIT_VALIDATION_FAILED

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.validation.plan import Verdict

#: What a folder expands to (sidecars and other files are left alone).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
DEFAULT_CHECKS = "technical,clip"
DEFAULT_MAX_IMAGES = 10_000


def parse_check_list(text: str, *, option: str = "--checks") -> list[str]:
    """``"technical, clip"`` -> ``["technical", "clip"]``; UsageError for an unknown name."""
    from comfy_gen.validation.base import list_validators

    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError(f"{option}: name at least one check ({', '.join(list_validators())})")
    known = list_validators()
    for name in names:
        if name not in known:
            raise UsageError(f"{option}: unknown check {name!r}; known checks: {', '.join(known)}")
    return names


def _value(text: str) -> Any:
    """A threshold's value: a number, true/false, or off/null/none (turns it off)."""
    low = text.strip().lower()
    if low in ("off", "null", "none"):
        return None
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(low) if low.lstrip("-").isdigit() else float(low)
    except ValueError:
        raise UsageError(f"--threshold: {text!r} is not a number, true/false or off") from None


def check_specs(names: Sequence[str], thresholds: Sequence[str]) -> list[dict[str, Any]]:
    """Specs for ``build_checks``: ``--threshold clip=25`` sets a check's threshold,
    ``clip.delta=2`` its delta, ``technical.min_mean=10`` one of its options."""
    specs: dict[str, dict[str, Any]] = {name: {"name": name} for name in names}
    for entry in thresholds:
        key, sep, raw = entry.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--threshold {entry!r}: use NAME=VALUE (clip=25, technical.min_mean=10)")
        check, _, option = key.strip().partition(".")
        if check not in specs:
            raise UsageError(f"--threshold {entry!r}: {check!r} is not one of the checks ({', '.join(specs)})")
        field = {"": "threshold", "delta": "delta_threshold"}.get(option, option)
        specs[check][field] = _value(raw)
    return list(specs.values())


def expand(paths: Sequence[Path], *, recursive: bool, limit: int) -> list[Path]:
    """The image files named or inside the folders named, in order, at most ``limit``."""
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            raise UsageError(f"{path}: no such file or folder")
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            members = sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not members:
                raise UsageError(f"{path}: no images in this folder"
                                 + ("" if recursive else " (--recursive looks in subfolders)"))
            found.extend(members)
        else:
            found.append(path)
        if len(found) > limit:
            raise UsageError(f"More than {limit} images to check; pass fewer, or raise --max-images")
    return found


def check_image(path: Path) -> None:
    """UsageError unless ``path`` is an image of sane size; reads the header only."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    from comfy_gen.validation.technical import MAX_PIXELS

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:  # lazy: nothing is decoded here
                width, height = img.size
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise UsageError(f"{path}: too many pixels (possible decompression bomb); not decoded") from None
    except UnidentifiedImageError:
        raise UsageError(f"{path}: not an image comfy-gen can read") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if width * height > MAX_PIXELS:
        raise UsageError(f"{path}: {width}x{height} is more than {MAX_PIXELS} pixels "
                         "(possible decompression bomb); not decoded")


def prompt_of(path: Path) -> tuple[str | None, str | None, str | None]:
    """(prompt, negative, where it came from) from the image's metadata; Nones when none."""
    from comfy_gen.errors import ComfyGenError
    from comfy_gen.metadata import read_metadata

    try:
        meta = read_metadata(path)
    except ComfyGenError:
        return None, None, None
    inputs = meta.get("input") or {}
    if inputs.get("prompt"):
        return str(inputs["prompt"]), inputs.get("negative_prompt"), str(meta.get("source"))
    if isinstance(meta.get("prompt"), dict):
        try:
            from comfy_gen.workflow import get_params

            params = get_params(meta["prompt"])
        except (ComfyGenError, ValueError, TypeError, KeyError):
            return None, None, None
        if params.prompt:
            return params.prompt, params.negative_prompt, "comfyui graph"
    return None, None, None


def list_checks() -> list[dict[str, str]]:
    """Every registered validator and its one-line description."""
    from comfy_gen.validation.base import get_validator_class, list_validators

    return [{"name": name, "description": get_validator_class(name).description or ""}
            for name in list_validators()]


@click.command("validate")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--prompt", default=None, help="The prompt to judge against (default: each image's metadata).")
@click.option("--negative", default=None, help="The negative prompt (default: each image's metadata).")
@click.option("--checks", default=DEFAULT_CHECKS, show_default=True,
              help="Comma-separated checks to run (see --list-checks).")
@click.option("--threshold", "thresholds", multiple=True, metavar="NAME=VALUE",
              help="A check's threshold (clip=25, clip.delta=2) or option (technical.min_mean=10, "
                   "technical.duplicates=true, technical.min_sharpness=off). Repeatable.")
@click.option("--recursive", "-r", is_flag=True, help="Look for images in subfolders too.")
@click.option("--max-images", type=click.IntRange(1), default=DEFAULT_MAX_IMAGES, show_default=True,
              help="Refuse to check more images than this.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--list-checks", "show_checks", is_flag=True, help="List the available checks, then exit.")
def validate(paths: tuple[Path, ...], prompt: str | None, negative: str | None, checks: str,
             thresholds: tuple[str, ...], recursive: bool, max_images: int, as_json: bool,
             show_checks: bool) -> int:
    """Run checks on images already on disk: exit 0 when all pass, 3 when some fail."""
    if show_checks:
        rows = list_checks()
        if as_json:
            click.echo(json.dumps(rows, indent=2))
        else:
            width = max(len(r["name"]) for r in rows)
            for row in rows:
                click.echo(f"{row['name']:<{width}}  {row['description']}")
        return EXIT_SUCCESS
    if not paths:
        raise UsageError("Name at least one image or folder (comfy-gen validate IMAGE_OR_FOLDER...)")
    results = run_checks(list(paths), prompt=prompt, negative=negative, checks=parse_check_list(checks),
                         thresholds=thresholds, recursive=recursive, max_images=max_images)
    failed = sum(not r["passed"] for r in results)
    if as_json:
        click.echo(json.dumps({"images": results, "passed": len(results) - failed, "failed": failed},
                              indent=2, ensure_ascii=False))
    else:
        _print_table(results)
    return EXIT_VALIDATION_FAILED if failed else EXIT_SUCCESS


def run_checks(paths: list[Path], *, prompt: str | None, negative: str | None, checks: list[str],
               thresholds: Sequence[str] = (), recursive: bool = False,
               max_images: int = DEFAULT_MAX_IMAGES) -> list[dict[str, Any]]:
    """One result dict per image (path, passed, prompt, verdicts, checks)."""
    from comfy_gen.config import get_settings
    from comfy_gen.validation.plan import ValidationPlan
    from comfy_gen.validation.report import checks_cell

    plan = ValidationPlan.from_options(validate=True, checks=check_specs(checks, thresholds))
    images = expand(paths, recursive=recursive, limit=max_images)
    for image in images:
        check_image(image)
    found = [(prompt, negative, "--prompt") if prompt is not None else prompt_of(image) for image in images]
    negatives = [negative if negative is not None else n for _, n, _ in found]
    with plan.prepare(get_settings()) as prepared:
        verdicts: list[list["Verdict"]] = prepared.judge_many(images, [p for p, _, _ in found], negatives)
    return [{"path": str(image), "passed": all(v.passed for v in vs), "prompt": p, "prompt_source": source,
             "checks": checks_cell(vs), "verdicts": [v.to_dict() for v in vs]}
            for image, (p, _, source), vs in zip(images, found, verdicts)]


def _print_table(results: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=False)
    table.add_column("Image", overflow="fold")
    table.add_column("Result")
    table.add_column("Checks", overflow="fold")
    for row in results:
        table.add_row(row["path"], "[green]passed[/]" if row["passed"] else "[red]failed[/]", row["checks"])
    # As wide as the longest row (a pipe or a narrow terminal would fold the reasons).
    needed = max(len(r["path"]) + len(r["checks"]) for r in results) + 20
    console = Console(soft_wrap=False, width=max(needed, Console().width))
    console.print(table)
    failed = sum(not r["passed"] for r in results)
    console.print(f"{len(results)} image(s): {len(results) - failed} passed, {failed} failed")

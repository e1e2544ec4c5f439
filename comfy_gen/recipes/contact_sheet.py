"""Contact sheets: a rows x columns grid of thumbnails with axis labels (Pillow).

Placement, in order of preference:

1. ``rows_axis`` / ``cols_axis`` given: rows and columns are the distinct values
   of ``labels[rows_axis]`` and ``labels[cols_axis]`` in first-seen order (the
   expansion's grid order), written along the left and top edges;
2. otherwise, entries whose labels carry ``_grid`` (``RecipeItem.grid``) go to
   that (row, col), captioned with their labels;
3. otherwise a near-square grid in entry order, captioned with the labels.

Label keys starting with ``_`` are never drawn as labels; ``_caption`` (e.g. a
status or score) is drawn under the thumbnail. Missing or unreadable images
become grey placeholders so a partly failed run still shows its full shape.
A video shows its first frame (``comfy_gen.media.still_frame``) with a play badge.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from comfy_gen.media import media_info, still_frame

Entry = tuple[Path | str | None, dict[str, Any]]
Cell = tuple[Path | str | None, str]

BACKGROUND = (255, 255, 255)
PLACEHOLDER = (200, 200, 200)
TEXT = (20, 20, 20)
PAD = 6


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font: Any, width: float) -> str:
    """Cut ``text`` with an ellipsis so it fits in ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _thumbnail(path: Path | str | None, thumb: int, font: Any) -> Image.Image:
    text = "missing" if path is None else "unreadable"
    if path is not None:
        try:
            # A video's tile is its first frame, marked with a play badge; a container
            # video (MP4/WEBM) has no decoder here and gets a "video" placeholder.
            frame = still_frame(path)
            if frame is not None:
                img = ImageOps.contain(frame.convert("RGB"), (thumb, thumb))
                cell = Image.new("RGB", (thumb, thumb), BACKGROUND)
                cell.paste(img, ((thumb - img.width) // 2, (thumb - img.height) // 2))
                if media_info(path).moving:
                    _play_badge(cell)
                return cell
            text = "video"
        except (OSError, UnidentifiedImageError, ValueError):
            pass  # drawn as a placeholder, like a missing image
    cell = Image.new("RGB", (thumb, thumb), PLACEHOLDER)
    draw = ImageDraw.Draw(cell)
    if text == "video":
        _play_badge(cell)
    width = draw.textlength(text, font=font)
    draw.text(((thumb - width) / 2, thumb / 2 - 8), text, fill=(90, 90, 90), font=font)
    return cell


def _play_badge(cell: Image.Image) -> None:
    """A small white triangle on dark grey in the top-left corner: "this tile moves"."""
    size = max(10, cell.width // 8)
    draw = ImageDraw.Draw(cell)
    draw.rectangle([2, 2, 2 + size, 2 + size], fill=(40, 40, 40))
    pad = size // 4
    draw.polygon([(2 + pad, 2 + pad), (2 + pad, 2 + size - pad), (2 + size - pad, 2 + size // 2)],
                 fill=(255, 255, 255))


def _visible(labels: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in labels.items() if not str(k).startswith("_"))


def _caption(labels: dict[str, Any], *, with_labels: bool) -> str:
    parts = [_visible(labels)] if with_labels else []
    if labels.get("_caption"):
        parts.append(str(labels["_caption"]).strip())
    return " | ".join(p for p in parts if p)


def _grid_of(labels: dict[str, Any]) -> tuple[int, int] | None:
    grid = labels.get("_grid")
    if isinstance(grid, (list, tuple)) and len(grid) == 2 and all(isinstance(v, int) for v in grid):
        return int(grid[0]), int(grid[1])
    return None


def make_contact_sheet(entries: list[Entry], *, rows_axis: str | None = None, cols_axis: str | None = None,
                       thumb: int = 256) -> Image.Image:
    """Draw ``entries`` (image path or None, labels) as a labelled grid and return the image."""
    if thumb < 16:
        raise ValueError("thumb must be at least 16 pixels")
    cells: dict[tuple[int, int], Cell] = {}

    def place(pos: tuple[int, int], path: Path | str | None, caption: str) -> None:
        if cells.get(pos, (None, ""))[0] is None:  # a rendered image beats a failed duplicate
            cells[pos] = (path, caption)

    if rows_axis or cols_axis:
        rows = list(dict.fromkeys(str(lab.get(rows_axis, "")) for _, lab in entries)) if rows_axis else [""]
        cols = list(dict.fromkeys(str(lab.get(cols_axis, "")) for _, lab in entries)) if cols_axis else [""]
        for path, labels in entries:
            r = rows.index(str(labels.get(rows_axis, ""))) if rows_axis else 0
            c = cols.index(str(labels.get(cols_axis, ""))) if cols_axis else 0
            place((r, c), path, _caption(labels, with_labels=False))
        return _draw(cells, len(rows), len(cols), thumb=thumb,
                     row_names=rows if rows_axis else None, col_names=cols if cols_axis else None,
                     rows_axis=rows_axis, cols_axis=cols_axis)
    grids = [_grid_of(labels) for _, labels in entries]
    if entries and all(g is not None for g in grids):
        for (path, labels), pos in zip(entries, grids):
            place(pos, path, _caption(labels, with_labels=True))  # type: ignore[arg-type]
        nrows = max(g[0] for g in grids if g) + 1
        ncols = max(g[1] for g in grids if g) + 1
        return _draw(cells, nrows, ncols, thumb=thumb)
    ncols = math.ceil(math.sqrt(max(1, len(entries))))
    nrows = math.ceil(max(1, len(entries)) / ncols)
    for i, (path, labels) in enumerate(entries):
        place((i // ncols, i % ncols), path, _caption(labels, with_labels=True))
    return _draw(cells, nrows, ncols, thumb=thumb, fill_missing=False)


def _draw(cells: dict[tuple[int, int], Cell], nrows: int, ncols: int, *, thumb: int,
          row_names: Sequence[str] | None = None, col_names: Sequence[str] | None = None,
          rows_axis: str | None = None, cols_axis: str | None = None,
          fill_missing: bool = True) -> Image.Image:
    font = _font(max(10, thumb // 16))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_h = int(font.getbbox("Hg")[3]) + 4
    caption_h = line_h if any(caption for _, caption in cells.values()) else 0
    left = 0
    if row_names is not None:
        widest = max(probe.textlength(name, font=font) for name in [*row_names, f"{rows_axis} v"])
        left = int(min(widest, thumb * 1.5)) + 2 * PAD
    top = (2 * line_h + PAD) if col_names is not None else (line_h + PAD if row_names is not None else 0)
    cell_h = thumb + caption_h + PAD
    origin_y = top or PAD
    width = left + ncols * (thumb + PAD) + PAD
    height = origin_y + nrows * cell_h + (PAD if top else 0)
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    # Axis names: "rows v" over the row labels, "cols ->" over the column labels.
    if row_names is not None:
        draw.text((PAD, PAD), _fit(draw, f"{rows_axis} v", font, left - PAD), fill=TEXT, font=font)
        for r, name in enumerate(row_names):
            y = origin_y + r * cell_h + thumb / 2 - line_h / 2
            draw.text((PAD, y), _fit(draw, name, font, left - 2 * PAD), fill=TEXT, font=font)
    if col_names is not None:
        draw.text((left + PAD, PAD), _fit(draw, f"{cols_axis} ->", font, width - left - PAD), fill=TEXT, font=font)
        for c, name in enumerate(col_names):
            draw.text((left + PAD + c * (thumb + PAD), PAD + line_h), _fit(draw, name, font, thumb),
                      fill=TEXT, font=font)
    for r in range(nrows):
        for c in range(ncols):
            if (r, c) not in cells and not fill_missing:
                continue
            path, caption = cells.get((r, c), (None, ""))
            x, y = left + PAD + c * (thumb + PAD), origin_y + r * cell_h
            sheet.paste(_thumbnail(path, thumb, font), (x, y))
            if caption:
                draw.text((x, y + thumb + 2), _fit(draw, caption, font, thumb), fill=TEXT, font=font)
    return sheet

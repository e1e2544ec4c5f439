"""Contact sheets: a rows x columns grid of thumbnails with axis labels (Pillow).

Rows and columns are the distinct values of ``labels[rows_axis]`` and
``labels[cols_axis]`` in first-seen order (the expansion's grid order). Missing
or unreadable images become grey placeholders so a partly failed run still
shows its full shape. With no axes the entries are laid out in a near-square
grid, each captioned with its labels.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

Entry = tuple[Path | str | None, dict[str, Any]]

BACKGROUND = (255, 255, 255)
PLACEHOLDER = (200, 200, 200)
TEXT = (20, 20, 20)
PAD = 6


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> str:
    """Cut ``text`` with an ellipsis so it fits in ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _thumbnail(path: Path | str | None, thumb: int, font: Any) -> Image.Image:
    if path is not None:
        try:
            with Image.open(path) as img:
                img = ImageOps.contain(img.convert("RGB"), (thumb, thumb))
            cell = Image.new("RGB", (thumb, thumb), BACKGROUND)
            cell.paste(img, ((thumb - img.width) // 2, (thumb - img.height) // 2))
            return cell
        except (OSError, UnidentifiedImageError, ValueError):
            pass  # drawn as a placeholder, like a missing image
    cell = Image.new("RGB", (thumb, thumb), PLACEHOLDER)
    draw = ImageDraw.Draw(cell)
    text = "missing" if path is None else "unreadable"
    width = draw.textlength(text, font=font)
    draw.text(((thumb - width) / 2, thumb / 2 - 8), text, fill=(90, 90, 90), font=font)
    return cell


def _distinct(entries: Sequence[Entry], axis: str) -> list[str]:
    return list(dict.fromkeys(str(labels.get(axis, "")) for _, labels in entries))


def make_contact_sheet(entries: list[Entry], *, rows_axis: str | None = None, cols_axis: str | None = None,
                       thumb: int = 256) -> Image.Image:
    """Draw ``entries`` (image path or None, labels) as a labelled grid and return the image."""
    if thumb < 16:
        raise ValueError("thumb must be at least 16 pixels")
    font = _font(max(10, thumb // 16))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_h = int(font.getbbox("Hg")[3]) + 4
    if rows_axis is None and cols_axis is None:
        return _free_grid(entries, thumb=thumb, font=font, line_h=line_h)
    rows = _distinct(entries, rows_axis) if rows_axis else [""]
    cols = _distinct(entries, cols_axis) if cols_axis else [""]
    left = 0
    if rows_axis:
        widest = max(probe.textlength(r, font=font) for r in rows + [rows_axis])
        left = int(min(widest, thumb * 1.5)) + 2 * PAD
    top = 2 * line_h + PAD if cols_axis else line_h + PAD
    width = left + len(cols) * (thumb + PAD) + PAD
    height = top + len(rows) * (thumb + PAD) + PAD
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    # Axis names: "rows v" over the row labels, "cols ->" over the column labels.
    if rows_axis:
        draw.text((PAD, PAD), _fit(draw, f"{rows_axis} v", font, left - PAD), fill=TEXT, font=font)
    if cols_axis:
        draw.text((left + PAD, PAD), _fit(draw, f"{cols_axis} ->", font, width - left - PAD), fill=TEXT, font=font)
    for c, name in enumerate(cols if cols_axis else []):
        x = left + PAD + c * (thumb + PAD)
        draw.text((x, PAD + line_h), _fit(draw, name, font, thumb), fill=TEXT, font=font)
    for r, name in enumerate(rows if rows_axis else []):
        y = top + r * (thumb + PAD)
        draw.text((PAD, y + thumb / 2 - line_h / 2), _fit(draw, name, font, left - 2 * PAD), fill=TEXT, font=font)
    placed: dict[tuple[int, int], Path | str | None] = {}
    for path, labels in entries:
        r = rows.index(str(labels.get(rows_axis, ""))) if rows_axis else 0
        c = cols.index(str(labels.get(cols_axis, ""))) if cols_axis else 0
        if placed.get((r, c)) is None:  # a rendered image beats a failed duplicate
            placed[(r, c)] = path
    for r in range(len(rows)):
        for c in range(len(cols)):
            cell = _thumbnail(placed.get((r, c)), thumb, font)
            sheet.paste(cell, (left + PAD + c * (thumb + PAD), top + r * (thumb + PAD)))
    return sheet


def _free_grid(entries: Sequence[Entry], *, thumb: int, font: Any, line_h: int) -> Image.Image:
    n = max(1, len(entries))
    ncols = math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    cell_h = thumb + line_h + PAD
    sheet = Image.new("RGB", (PAD + ncols * (thumb + PAD), PAD + nrows * cell_h), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for i, (path, labels) in enumerate(entries):
        x = PAD + (i % ncols) * (thumb + PAD)
        y = PAD + (i // ncols) * cell_h
        sheet.paste(_thumbnail(path, thumb, font), (x, y))
        caption = ", ".join(f"{k}={v}" for k, v in labels.items())
        draw.text((x, y + thumb + 2), _fit(draw, caption, font, thumb), fill=TEXT, font=font)
    return sheet

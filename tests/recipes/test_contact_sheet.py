"""Contact sheets: grid size from the label axes, labels drawn, grey placeholders."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from comfy_gen.recipes.contact_sheet import PAD, PLACEHOLDER, make_contact_sheet


def _png(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> Path:
    Image.new("RGB", size, color).save(path)
    return path


def _cell_origin(sheet_w: int, cols: int, thumb: int, r: int, c: int, top: int) -> tuple[int, int]:
    left = sheet_w - cols * (thumb + PAD) - PAD
    return left + PAD + c * (thumb + PAD), top + r * (thumb + PAD)


def test_grid_shape_placement_and_placeholder(tmp_path: Path) -> None:
    thumb = 32
    red = _png(tmp_path / "r.png", (255, 0, 0), size=(64, 64))
    blue = _png(tmp_path / "b.png", (0, 0, 255), size=(64, 64))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    entries = [
        (red, {"prompt": "lighthouse", "seed": "1"}),
        (blue, {"prompt": "lighthouse", "seed": "2"}),
        (None, {"prompt": "lake", "seed": "1"}),       # failed item
        (broken, {"prompt": "lake", "seed": "2"}),     # unreadable file
        (red, {"prompt": "street", "seed": "1"}),
        # ("street", "2") never rendered: placeholder too
    ]
    sheet = make_contact_sheet(entries, rows_axis="prompt", cols_axis="seed", thumb=thumb)
    height_without_top = 3 * (thumb + PAD) + PAD
    top = sheet.height - height_without_top
    assert top > 0                                   # room for the column labels
    left = sheet.width - (2 * (thumb + PAD) + PAD)
    assert left > 0                                  # room for the row labels

    def center(r: int, c: int) -> tuple[int, int, int]:
        x, y = _cell_origin(sheet.width, 2, thumb, r, c, top)
        return sheet.getpixel((x + 1, y + 1))  # a corner: clear of the placeholder's text

    assert center(0, 0) == (255, 0, 0)
    assert center(0, 1) == (0, 0, 255)
    assert center(1, 0) == PLACEHOLDER
    assert center(1, 1) == PLACEHOLDER
    assert center(2, 0) == (255, 0, 0)
    assert center(2, 1) == PLACEHOLDER


def test_labels_are_drawn(tmp_path: Path) -> None:
    img = _png(tmp_path / "g.png", (0, 255, 0))
    entries = [(img, {"steps": "10", "cfg": "4.5"}), (img, {"steps": "20", "cfg": "4.5"})]
    labelled = make_contact_sheet(entries, rows_axis="steps", cols_axis="cfg", thumb=40)
    again = make_contact_sheet(entries, rows_axis="steps", cols_axis="cfg", thumb=40)
    assert labelled.tobytes() == again.tobytes()     # deterministic drawing
    relabelled = [(img, {"steps": "77", "cfg": "9.5"}), (img, {"steps": "88", "cfg": "9.5"})]
    other = make_contact_sheet(relabelled, rows_axis="steps", cols_axis="cfg", thumb=40)
    assert other.size == labelled.size and other.tobytes() != labelled.tobytes()  # the text is drawn
    # The label band (top rows, left column) has dark text pixels on the white background.
    band = labelled.crop((0, 0, labelled.width, 2 * PAD + 12)).convert("L")
    assert band.getextrema()[0] < 100
    left_band = labelled.crop((0, labelled.height // 2, 20, labelled.height)).convert("L")
    assert left_band.getextrema()[0] < 100


def test_thumbnails_keep_aspect_ratio(tmp_path: Path) -> None:
    wide = _png(tmp_path / "w.png", (10, 10, 10), size=(200, 50))
    sheet = make_contact_sheet([(wide, {"a": "1"})], cols_axis="a", thumb=100)
    assert sheet.width == 100 + 2 * PAD and sheet.mode == "RGB"
    top = sheet.height - (100 + 2 * PAD)
    # 200x50 fits as 100x25, centred: top of the cell stays white, the middle is the image.
    assert sheet.getpixel((PAD + 50, top + 5)) == (255, 255, 255)
    assert sheet.getpixel((PAD + 50, top + 50)) == (10, 10, 10)


def test_no_axes_lays_out_a_square_grid(tmp_path: Path) -> None:
    img = _png(tmp_path / "x.png", (5, 5, 5))
    sheet = make_contact_sheet([(img, {"i": str(n)}) for n in range(5)], thumb=20)
    # 5 entries -> 3 columns x 2 rows, each cell with a caption line.
    assert sheet.width == PAD + 3 * (20 + PAD)
    assert sheet.height > PAD + 2 * (20 + PAD)


def test_grid_key_places_entries_and_hidden_keys(tmp_path: Path) -> None:
    # The flow passes RecipeItem.grid as "_grid" and a status as "_caption".
    img = _png(tmp_path / "k.png", (0, 0, 0), size=(30, 30))
    entries = [(img, {"seed": "1", "_grid": [0, 1], "_caption": "passed 27.1"}),
               (None, {"seed": "2", "_grid": [1, 0], "_caption": "error"})]
    sheet = make_contact_sheet(entries, thumb=30)
    # 2 x 2 cells, each with a caption line under the thumbnail.
    assert sheet.width == PAD + 2 * (30 + PAD)
    cell_h = (sheet.height - PAD) // 2
    assert cell_h > 30 + PAD
    assert sheet.getpixel((PAD + 30 + PAD + 1, PAD + 1)) == (0, 0, 0)          # (0, 1): the image
    assert sheet.getpixel((PAD + 1, PAD + cell_h + 1)) == PLACEHOLDER          # (1, 0): failed
    assert sheet.getpixel((PAD + 1, PAD + 1)) == PLACEHOLDER                   # (0, 0): never listed

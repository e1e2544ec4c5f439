"""Input-image preprocessing and fetching, with real small images and a real local HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import pytest
from PIL import Image

from comfy_gen.errors import PathNotAllowed, UsageError
from comfy_gen.images import fetch_input_image, parse_size, preprocess_image

RED, GREEN, BLUE, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (0, 0, 0)


def _thirds(path: Path, size=(300, 100), fmt=None) -> Path:
    """Left third red, middle green, right third blue."""
    img = Image.new("RGB", size, RED)
    w, h = size
    img.paste(GREEN, (w // 3, 0, 2 * w // 3, h))
    img.paste(BLUE, (2 * w // 3, 0, w, h))
    img.save(path, format=fmt)
    return path


def _near(pixel, color, tol=40) -> bool:
    return all(abs(int(a) - b) <= tol for a, b in zip(pixel[:3], color, strict=True))


@pytest.mark.parametrize(("text", "expected"), [("512x768", (512, 768)), (" 64 X 64 ", (64, 64)), ("8×16", (8, 16))])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["512", "512x", "x512", "0x10", "ax b", "512x768x2", "99999x1", ""])
def test_parse_size_rejects(text):
    with pytest.raises(UsageError, match="size"):
        parse_size(text)


def test_cover_scales_then_crops_the_centre(tmp_path):
    out = Image.open(preprocess_image(_thirds(tmp_path / "a.png"), tmp_path / "o.png", resize=(100, 100),
                                      crop="cover"))
    assert out.size == (100, 100)
    assert all(_near(out.getpixel((x, y)), GREEN) for x in (5, 50, 94) for y in (5, 95))


def test_center_crops_to_aspect_then_resizes(tmp_path):
    out = Image.open(preprocess_image(_thirds(tmp_path / "a.png", (600, 200)), tmp_path / "o.png",
                                      resize=(50, 50), crop="center"))
    # the original's "center" was a plain resize, which would show red and blue at the edges
    assert out.size == (50, 50) and _near(out.getpixel((2, 25)), GREEN) and _near(out.getpixel((47, 25)), GREEN)


def test_contain_letterboxes_with_black(tmp_path):
    out = Image.open(preprocess_image(_thirds(tmp_path / "a.png"), tmp_path / "o.png", resize=(90, 90),
                                      crop="contain"))
    assert out.size == (90, 90)
    assert _near(out.getpixel((45, 2)), BLACK) and _near(out.getpixel((45, 87)), BLACK)
    assert _near(out.getpixel((5, 45)), RED) and _near(out.getpixel((45, 45)), GREEN)
    assert _near(out.getpixel((85, 45)), BLUE)


def test_plain_resize_distorts(tmp_path):
    out = Image.open(preprocess_image(_thirds(tmp_path / "a.png"), tmp_path / "o.png", resize=(60, 60)))
    assert out.size == (60, 60) and _near(out.getpixel((3, 30)), RED) and _near(out.getpixel((57, 30)), BLUE)


def test_format_kept_and_source_untouched(tmp_path):
    src = _thirds(tmp_path / "a.jpg", fmt="JPEG")
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    dest = preprocess_image(src, tmp_path / "o.jpg", resize=(30, 30), crop="cover")
    assert Image.open(dest).format == "JPEG"
    assert hashlib.sha256(src.read_bytes()).hexdigest() == digest


def test_default_dest_is_a_new_temp_file_and_dest_equal_src_overwrites(tmp_path):
    src = _thirds(tmp_path / "a.png")
    tmp = preprocess_image(src, resize=(30, 20))
    try:
        assert tmp != src and tmp.suffix == ".png" and Image.open(tmp).size == (30, 20)
    finally:
        tmp.unlink()
    assert Image.open(src).size == (300, 100)
    preprocess_image(src, src, resize=(30, 10))
    assert Image.open(src).size == (30, 10)


def test_no_resize_copies(tmp_path):
    src = _thirds(tmp_path / "a.png")
    dest = preprocess_image(src, tmp_path / "copy.png")
    assert dest.read_bytes() == src.read_bytes()


def test_palette_gif_is_resampled_and_stays_gif(tmp_path):
    src = tmp_path / "a.gif"
    Image.open(_thirds(tmp_path / "a.png")).convert("P").save(src)
    out = Image.open(preprocess_image(src, tmp_path / "o.gif", resize=(30, 10)))
    assert out.format == "GIF" and out.size == (30, 10)


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (200, 100), RED)
    img.paste(BLUE, (100, 0, 200, 100))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the left (red) half ends up on top
    img.save(tmp_path / "a.jpg", exif=exif)
    out = Image.open(preprocess_image(tmp_path / "a.jpg", tmp_path / "o.jpg", resize=(50, 100)))
    assert _near(out.getpixel((25, 10)), RED) and _near(out.getpixel((25, 90)), BLUE)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"crop": "cover"}, "needs a target size"),
    ({"resize": (10, 10), "crop": "stretch"}, "Unknown crop mode"),
    ({"resize": (0, 10)}, "Invalid target size"),
])
def test_bad_arguments(kwargs, message, tmp_path):
    with pytest.raises(UsageError, match=message):
        preprocess_image(_thirds(tmp_path / "a.png"), tmp_path / "o.png", **kwargs)


def test_not_an_image(tmp_path):
    (tmp_path / "a.png").write_text("hello")
    with pytest.raises(UsageError, match="not a readable image"):
        preprocess_image(tmp_path / "a.png", tmp_path / "o.png", resize=(10, 10))


# --- fetch_input_image ------------------------------------------------------------------


def test_fetch_local_file_confined(tmp_path):
    allowed = tmp_path / "in"
    allowed.mkdir()
    src = _thirds(allowed / "photo.PNG")
    got = fetch_input_image(str(src), tmp_path / "dest", allowed_dirs=[allowed])
    assert got.parent == tmp_path / "dest" and got.name.startswith("input_") and got.suffix == ".png"
    assert got.read_bytes() == src.read_bytes()
    assert fetch_input_image("in/photo.PNG", tmp_path / "dest", allowed_dirs=[allowed])  # relative to cwd
    outside = _thirds(tmp_path / "outside.png")
    with pytest.raises(PathNotAllowed):
        fetch_input_image(str(outside), tmp_path / "dest", allowed_dirs=[allowed])
    with pytest.raises(UsageError, match="does not exist"):
        fetch_input_image(str(allowed / "missing.png"), tmp_path / "dest", allowed_dirs=[allowed])
    with pytest.raises(UsageError, match="Unsupported"):
        fetch_input_image("ftp://example.invalid/a.png", tmp_path / "dest", allowed_dirs=[allowed])


def test_fetch_local_non_image_leaves_nothing(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(UsageError):
        fetch_input_image(str(tmp_path / "notes.png"), tmp_path / "dest", allowed_dirs=[tmp_path])
    assert list((tmp_path / "dest").iterdir()) == []


@pytest.fixture
def http_root(tmp_path):
    """A real HTTP server on 127.0.0.1 serving tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetch_url(http_root, tmp_path):
    root, base = http_root
    src = _thirds(root / "pic.jpg", fmt="JPEG")
    got = fetch_input_image(f"{base}/pic.jpg", tmp_path / "dest", allowed_dirs=[])
    assert got.suffix == ".jpg" and got.read_bytes() == src.read_bytes()


def test_fetch_url_errors(http_root, tmp_path):
    root, base = http_root
    _thirds(root / "big.png", (600, 600))
    (root / "page.html").write_text("<html></html>")
    with pytest.raises(UsageError, match="HTTP 404"):
        fetch_input_image(f"{base}/missing.png", tmp_path / "dest", allowed_dirs=[])
    with pytest.raises(UsageError, match="too large"):
        fetch_input_image(f"{base}/big.png", tmp_path / "dest", allowed_dirs=[], max_bytes=100)
    with pytest.raises(UsageError, match="not a readable image"):
        fetch_input_image(f"{base}/page.html", tmp_path / "dest", allowed_dirs=[])
    with pytest.raises(UsageError, match="failed"):
        fetch_input_image("http://127.0.0.1:9/x.png", tmp_path / "dest", allowed_dirs=[], timeout=2)
    assert list((tmp_path / "dest").iterdir()) == []


def test_fetch_url_without_image_suffix_is_named_by_format(http_root, tmp_path):
    root, base = http_root
    _thirds(root / "render", fmt="PNG")
    got = fetch_input_image(f"{base}/render", tmp_path / "dest", allowed_dirs=[])
    assert got.suffix == ".png" and Image.open(got).format == "PNG"

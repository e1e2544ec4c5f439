"""Videos in contact sheets: the first frame with a play badge; a container video
(no decoder here) is a "video" placeholder, never "unreadable"."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from comfy_gen.media import media_info, still_frame
from comfy_gen.recipes.contact_sheet import PAD, PLACEHOLDER, make_contact_sheet


def _animation(path: Path, colours: list[tuple[int, int, int]], fmt: str, fps: float = 10.0) -> Path:
    frames = [Image.new("RGB", (64, 64), c) for c in colours]
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:], duration=int(1000 / fps))
    return path


def test_media_info_of_animations_stills_and_containers(tmp_path: Path) -> None:
    webp = _animation(tmp_path / "a.webp", [(255, 0, 0), (0, 255, 0), (0, 0, 255)], "WEBP")
    gif = _animation(tmp_path / "a.gif", [(255, 0, 0), (0, 0, 255)], "GIF", fps=5)
    apng = _animation(tmp_path / "a.png", [(255, 0, 0), (0, 0, 255)], "PNG", fps=4)
    still = tmp_path / "s.png"
    Image.new("RGB", (32, 16)).save(still)
    mp4 = tmp_path / "clip.mp4"
    mp4.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    assert media_info(webp).to_dict() == {"kind": "animation", "width": 64, "height": 64, "frames": 3,
                                          "fps": 10.0, "duration_seconds": 0.3}
    assert (media_info(gif).frames, media_info(gif).fps) == (2, 5.0)
    assert (media_info(apng).kind, media_info(apng).frames, media_info(apng).fps) == ("animation", 2, 4.0)
    assert media_info(still).kind == "image" and not media_info(still).moving
    assert media_info(mp4).kind == "video" and still_frame(mp4) is None
    assert still_frame(webp).convert("RGB").getpixel((5, 5))[0] > 200  # the first (red) frame


def test_video_tiles_show_the_first_frame_with_a_badge(tmp_path: Path) -> None:
    thumb = 64
    webp = _animation(tmp_path / "a.webp", [(0, 0, 255), (255, 255, 0)], "WEBP")
    mp4 = tmp_path / "clip.mp4"
    mp4.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    sheet = make_contact_sheet([(webp, {"seed": "1"}), (mp4, {"seed": "2"})], cols_axis="seed", thumb=thumb)
    top = sheet.height - (thumb + 2 * PAD)
    left = sheet.width - (2 * (thumb + PAD) + PAD)
    first = (left + PAD, top)
    second = (left + PAD + thumb + PAD, top)
    r, g, b = sheet.getpixel((first[0] + thumb - 4, first[1] + thumb - 4))[:3]
    assert b > 200 and r < 60                      # the first frame (blue), not the second (yellow)
    assert sheet.getpixel((first[0] + 4, first[1] + 4))[:3] in ((40, 40, 40), (255, 255, 255))  # badge
    assert sheet.getpixel((second[0] + thumb - 4, second[1] + thumb - 4))[:3] == PLACEHOLDER
    assert sheet.getpixel((second[0] + 4, second[1] + 4))[:3] in ((40, 40, 40), (255, 255, 255))

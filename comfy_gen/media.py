"""What an output file is (still image, animation, video) and a still frame of it.

Video workflows produce animated images (SaveAnimatedWEBP, SaveAnimatedPNG,
VideoHelperSuite's image/gif and image/webp) and container videos (SaveWEBM,
SaveVideo, VHS ``video/*``: MP4, WEBM, ...). Pillow reads the first kind, so
their first frame stands in for them in contact sheets and validation. comfy-gen
ships no video decoder: a container video has no still frame here
(``still_frame`` returns None) and its size and frame count come from the
request, not the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

MediaKind = Literal["image", "animation", "video"]

#: Container formats (no Pillow reader).
VIDEO_SUFFIXES = frozenset({".mp4", ".webm", ".mkv", ".mov", ".avi", ".m4v"})


@dataclass(frozen=True)
class MediaInfo:
    """Kind, size, frame count and rate of a file (None where unknown)."""

    kind: MediaKind
    width: int | None = None
    height: int | None = None
    frames: int | None = None
    fps: float | None = None

    @property
    def moving(self) -> bool:
        return self.kind != "image"

    def to_dict(self) -> dict[str, Any]:
        duration = round(self.frames / self.fps, 3) if self.frames and self.fps else None
        return {"kind": self.kind, "width": self.width, "height": self.height, "frames": self.frames,
                "fps": self.fps, "duration_seconds": duration}


def is_container_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def media_info(path: str | Path) -> MediaInfo:
    """Read ``path``'s kind, size, frames and fps (Pillow; containers: kind only).

    Raises OSError (or PIL's UnidentifiedImageError) for an unreadable image.
    """
    from PIL import Image

    if is_container_video(path):
        return MediaInfo("video")
    with Image.open(path) as img:
        frames = int(getattr(img, "n_frames", 1) or 1)
        if frames <= 1:
            return MediaInfo("image", img.width, img.height, 1)
        img.seek(0)  # WEBP fills in the frame duration when a frame is read
        img.load()
        duration = img.info.get("duration")  # ms per frame (GIF, WEBP, APNG)
        fps = round(1000.0 / float(duration), 3) if isinstance(duration, (int, float)) and duration > 0 else None
        return MediaInfo("animation", img.width, img.height, frames, fps)


def still_frame(path: str | Path) -> "Image.Image | None":
    """The first frame (a loaded copy), or None for a container video.

    Raises OSError (or UnidentifiedImageError) for an unreadable image.
    """
    from PIL import Image

    if is_container_video(path):
        return None
    with Image.open(path) as img:
        img.seek(0)
        return img.copy()

"""Write the binary corpus files (tests/corpus/metadata/*.png, images/*).

Run deliberately, from the repository root, after changing a case:
``.venv/bin/python -m tests.corpus.build_binary_cases``. The files are
committed; the corpus test only reads them.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunk(kind: bytes, body: bytes, *, crc: int | None = None) -> bytes:
    value = zlib.crc32(kind + body) if crc is None else crc
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", value)


def ihdr(width: int = 8, height: int = 8) -> bytes:
    return chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))


def idat(width: int = 8, height: int = 8) -> bytes:
    return chunk(b"IDAT", zlib.compress((b"\x00" + b"\x40" * 3 * width) * height))


def png(*extra: bytes, width: int = 8, height: int = 8) -> bytes:
    return SIGNATURE + ihdr(width, height) + b"".join(extra) + idat(width, height) + chunk(b"IEND", b"")


def text(keyword: str, value: str) -> bytes:
    return chunk(b"tEXt", keyword.encode("latin-1") + b"\0" + value.encode("latin-1"))


def meta(doc: object) -> bytes:
    return text("comfygen_metadata", json.dumps(doc))


GOOD_DOC = {"workflow": {"name": "tiny-sd15"}, "parameters": {"seed": 1}, "input": {"prompt": "x"}}

METADATA: dict[str, bytes] = {
    "truncated.png": png(meta(GOOD_DOC))[:60],
    "no-iend.png": SIGNATURE + ihdr() + idat(),
    "bad-crc-text.png": png(chunk(b"tEXt", b"parameters\0steps 20", crc=1)),
    "ztxt-bad-zlib.png": png(chunk(b"zTXt", b"comfygen_metadata\0\0not zlib at all")),
    "ztxt-bomb.png": png(chunk(b"zTXt", b"comfygen_metadata\0\0" + zlib.compress(b" " * (17 << 20), 9))),
    "itxt-bad-utf8.png": png(chunk(b"iTXt", b"comfygen_metadata\0\0\0\0\0\xff\xfe{}")),
    "itxt-bad-flag.png": png(chunk(b"iTXt", b"comfygen_metadata\0\x07\0\0\0{}")),
    "itxt-truncated-header.png": png(chunk(b"iTXt", b"comfygen_metadata\0")),
    "text-no-keyword.png": png(chunk(b"tEXt", b"no separator here")),
    "bad-chunk-type.png": png(chunk(b"t3Xt", b"x\0y")),
    "huge-length.png": SIGNATURE + ihdr() + struct.pack(">I", 0xFFFFFFF0) + b"tEXt" + b"x\0y",
    "metadata-not-json.png": png(text("comfygen_metadata", "{not json")),
    "metadata-list.png": png(meta([1, 2, 3])),
    "metadata-deep.png": png(text("comfygen_metadata", "[" * 100_000 + "]" * 100_000)),
    "metadata-workflow-int.png": png(meta({**GOOD_DOC, "workflow": 5})),
    "metadata-loras-bad.png": png(meta({**GOOD_DOC, "parameters": {"loras": ["a", "b"]}})),
    "metadata-resolution-bad.png": png(meta({**GOOD_DOC, "parameters": {"resolution": "512x512"}})),
    "metadata-tags-list.png": png(meta({**GOOD_DOC, "organization": {"tags": ["a"]}})),
    "reproduce-params-type.png": png(meta({**GOOD_DOC, "comfy_gen": {"workflow": "tiny-sd15",
                                                                   "params": {"steps": "twenty"}}})),
    "reproduce-params-list.png": png(meta({**GOOD_DOC, "comfy_gen": {"workflow": "tiny-sd15",
                                                                   "params": [1, 2]}})),
    "reproduce-lora-bad.png": png(meta({**GOOD_DOC, "comfy_gen": {"workflow": "tiny-sd15",
                                                                "params": {"loras": [{"strength": 1}]}}})),
}


def bmp_header(width: int, height: int) -> bytes:
    """A BMP header that claims a size; no pixel data follows."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info), 0, 0, 14 + len(info)) + info


IMAGES: dict[str, bytes] = {
    "bomb-pixels.png": SIGNATURE + ihdr(10000, 10000) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""),
    "too-wide.png": SIGNATURE + ihdr(20000, 8) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""),
    "bomb.bmp": bmp_header(12000, 12000),
    "truncated-idat.png": png()[:-30],
    "text-file.png": b"this is not an image\n",
    "empty.png": b"",
    "bad-ihdr-crc.png": SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0), crc=0)
                        + idat() + chunk(b"IEND", b""),
    "truncated.jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xdb",
}


def main() -> None:
    for folder, table in (("metadata", METADATA), ("images", IMAGES)):
        (HERE / folder).mkdir(exist_ok=True)
        for name, data in table.items():
            (HERE / folder / name).write_bytes(data)


if __name__ == "__main__":
    main()

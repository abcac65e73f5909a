"""Writes the committed seed corpus, tests/fuzz/corpus/{imaging,protocol}/: ``python -m tests.fuzz.seeds``.

Small inputs that reach every branch the fuzzer should start from: each accepted format and mode, the guards,
and each request form. Inputs a fuzz run found (fixed since) live beside them as ``found-*`` files.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
from PIL import Image

from tests.fixtures import images as fx
from tests.fuzz.targets import BOUNDARY, RAW_TYPES

CORPUS = Path(__file__).resolve().parent / "corpus"


def _img(w: int = 12, h: int = 8) -> Image.Image:
    return fx.rgb_image(w, h)


def image_seeds() -> dict[str, bytes]:
    p = Image.new("P", (8, 8), 1)
    p.putpalette([0, 255, 0, 255, 0, 0] + [0, 0, 0] * 254)
    gif_frames = [Image.new("RGB", (6, 6), (255, 0, 0)), Image.new("RGB", (6, 6), (0, 0, 255))]
    return {
        "rgb.jpg": fx.encode(_img(), "JPEG", quality=80),
        "progressive.jpg": fx.encode(_img(16, 16), "JPEG", quality=70, progressive=True),
        "gray.jpg": fx.encode(_img().convert("L"), "JPEG"),
        "cmyk.jpg": fx.encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG"),
        "exif-rotated.jpg": fx.jpeg_with_orientation(6, 12, 8),
        "truncated.jpg": fx.encode(_img(), "JPEG")[:120],
        "rgb.png": fx.encode(_img(), "PNG"),
        "rgba.png": fx.encode(_img().convert("RGBA"), "PNG"),
        "palette-transparent.png": fx.encode(p, "PNG", transparency=0),
        "gray16.png": fx.encode(Image.fromarray(np.full((4, 4), 40000, dtype=np.uint16)), "PNG"),
        "thin.png": fx.encode(_img(120, 2), "PNG"),
        "huge-header.png": fx.png_huge_header(100_000, 100_000),
        "animated.gif": fx.encode(gif_frames[0], "GIF", save_all=True, append_images=gif_frames[1:], loop=0),
        "rgb.bmp": fx.encode(_img(), "BMP"),
        "1bit.bmp": fx.encode(Image.new("1", (8, 8), 1), "BMP"),
        "lossless.webp": fx.encode(_img(), "WEBP", lossless=True),
        "lossy.webp": fx.encode(_img(), "WEBP", quality=50),
        "tiff.tif": b"II*\x00" + b"\x00" * 16,
    }


def selector(form: int, *, flag: bool = False, sagemaker: bool = False, raw_type: int = 0) -> bytes:
    """The first byte that makes tests.fuzz.targets.fuzz_protocol pick this form and these options."""
    for b in range(256):
        if (b % 3, bool(b & 0x40), bool(b & 0x80)) == (form, flag, sagemaker) and (
            form != 0 or (b >> 2) % len(RAW_TYPES) == raw_type
        ):
            return bytes([b])
    raise ValueError(f"no selector byte for form {form}, flag {flag}, sagemaker {sagemaker}, raw type {raw_type}")


def multipart(*parts: tuple[str, str | None, bytes]) -> bytes:
    out = b""
    for name, ctype, value in parts:
        head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="x"\r\n'
        if ctype:
            head += f"Content-Type: {ctype}\r\n"
        out += head.encode() + b"\r\n" + value + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def protocol_seeds() -> dict[str, bytes]:
    png, jpg = fx.encode(_img(), "PNG"), fx.encode(_img(), "JPEG", quality=80)
    b64 = base64.b64encode(png).decode()
    doc = {"images": [b64], "topk": 3}
    return {
        "raw-topk-header": selector(0, flag=True) + b"3\n" + jpg,
        "raw-sagemaker-attributes": selector(0, sagemaker=True, raw_type=1) + b"trace=1, topk=7\n" + png,
        "raw-text-type": selector(0, raw_type=4) + b"\n" + b"hello",
        "json-bytes": selector(1) + json.dumps(doc).encode(),
        "json-decoded": selector(1, flag=True) + json.dumps(doc).encode(),
        "json-data-uri-urlsafe": selector(1, sagemaker=True)
        + json.dumps({"images": ["data:image/png;base64," + b64, base64.urlsafe_b64encode(jpg).decode()]}).encode(),
        "json-topk-string": selector(1, flag=True) + json.dumps({"images": [b64], "topk": "2"}).encode(),
        "json-nested": selector(1) + b'{"images": [[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]}',
        "json-deep-nesting": selector(1) + b'{"images": ' + b"[" * 3000,  # the classic hostile-JSON shape
        "json-bad": selector(1) + b'{"images": ["%%%"], "topk": 1e400}',
        "multipart-image": selector(2) + multipart(("data", "image/jpeg", jpg)),
        "multipart-json": selector(2, sagemaker=True)
        + multipart(("body", "application/json", json.dumps(doc).encode())),
        "multipart-text-and-file": selector(2) + multipart(("note", "text/plain", b"hi"), ("file", None, png)),
    }


def main() -> None:
    for folder, seeds in (("imaging", image_seeds()), ("protocol", protocol_seeds())):
        out = CORPUS / folder
        out.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (out / f"seed-{name}").write_bytes(data)
        print(f"{out}: {len(seeds)} seeds, {sum(map(len, seeds.values()))} bytes")


if __name__ == "__main__":
    main()

"""Image format sniffing by magic number. Torch-free, so the CLI can use it without importing torch."""

from __future__ import annotations

#: Formats we decode, by PIL's format name.
SUPPORTED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP"}
# Magic numbers of formats we recognise but do not accept (→ 415 rather than 400).
_OTHER_FORMATS: list[tuple[bytes, int, str]] = [
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
    (b"%PDF", 0, "PDF"),
    (b"\x00\x00\x01\x00", 0, "ICO"),
    (b"8BPS", 0, "PSD"),
    (b"\x00\x00\x00\x0cjP  ", 0, "JPEG 2000"),
    (b"\xff\x4f\xff\x51", 0, "JPEG 2000"),
    (b"ftypavif", 4, "AVIF"),
    (b"ftypheic", 4, "HEIC"),
    (b"ftypheix", 4, "HEIC"),
    (b"ftypmif1", 4, "HEIF"),
    (b"\x1a\x45\xdf\xa3", 0, "Matroska/WebM"),
    (b"ftypisom", 4, "MP4"),
    (b"ftypmp42", 4, "MP4"),
    (b"PK\x03\x04", 0, "ZIP"),
    (b"\x1f\x8b", 0, "gzip"),
]


def sniff_format(data: bytes) -> str | None:
    """Name the format from its magic number, or None when it is not a recognisable file format."""
    head = bytes(data[:32])
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head.startswith(b"BM"):
        return "BMP"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    for magic, offset, name in _OTHER_FORMATS:
        if head[offset : offset + len(magic)] == magic:
            return name
    stripped = head.lstrip()
    if stripped.startswith((b"<?xml", b"<svg", b"<!DOCTYPE svg")):
        return "SVG/XML"
    return None


CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "WEBP": "image/webp",
}


def content_type_for(data: bytes) -> str:
    """The Content-Type to send for these bytes (application/octet-stream when unknown)."""
    return CONTENT_TYPES.get(sniff_format(data) or "", "application/octet-stream")

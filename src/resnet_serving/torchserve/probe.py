"""A tiny built-in image and a check that the model really answers (not just that /ping is up). Torch-free."""

from __future__ import annotations

import io
from functools import lru_cache

import requests
from PIL import Image

from resnet_serving import MODEL_NAME


@lru_cache(maxsize=1)
def probe_image() -> bytes:
    """A 64×64 JPEG gradient, generated (no file needed inside a minimal image)."""
    img = Image.new("RGB", (64, 64))
    img.putdata([(x * 4, y * 4, 128) for y in range(64) for x in range(64)])
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def model_answers(url: str, *, model: str = MODEL_NAME, timeout: float = 5.0) -> tuple[bool, str]:
    """POST the probe image to ``url/predictions/<model>``. Returns (ok, detail)."""
    try:
        r = requests.post(
            f"{url.rstrip('/')}/predictions/{model}",
            data=probe_image(),
            headers={"Content-Type": "image/jpeg"},
            timeout=timeout,
        )
    except requests.RequestException as e:
        return False, f"{type(e).__name__}: {e}"
    if r.status_code != 200:
        return False, f"HTTP {r.status_code}: {r.text[:200]}"
    try:
        body = r.json()
    except ValueError:
        return False, f"HTTP 200 but not JSON: {r.text[:200]}"
    if not isinstance(body, dict) or not body.get("predictions"):
        return False, f"HTTP 200 without predictions: {r.text[:200]}"
    return True, f"version {body.get('version')}, weights {body.get('weights')}"

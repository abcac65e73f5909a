"""A tiny built-in image and a check that the model really answers (not just that /ping is up). Torch-free."""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
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


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str
    version: str | None = None
    """The model version that answered, as the handler reports it."""


def probe_model(url: str, *, model: str = MODEL_NAME, version: str | None = None, timeout: float = 5.0) -> ProbeResult:
    """POST the probe image to ``url/predictions/<model>[/<version>]`` and say whether real predictions came back."""
    route = f"{url.rstrip('/')}/predictions/{model}" + (f"/{version}" if version else "")
    try:
        # the id marks probes in the request log: a query can leave them out
        headers = {"Content-Type": "image/jpeg", "X-Request-Id": f"probe-{uuid.uuid4().hex[:16]}"}
        r = requests.post(route, data=probe_image(), headers=headers, timeout=timeout)
    except requests.RequestException as e:
        return ProbeResult(False, f"{type(e).__name__}: {e}")
    if r.status_code != 200:
        return ProbeResult(False, f"HTTP {r.status_code}: {r.text[:200]}")
    try:
        body = r.json()
    except ValueError:
        return ProbeResult(False, f"HTTP 200 but not JSON: {r.text[:200]}")
    if not isinstance(body, dict) or not body.get("predictions"):
        return ProbeResult(False, f"HTTP 200 without predictions: {r.text[:200]}")
    answered = body.get("version")
    return ProbeResult(
        True, f"version {answered}, weights {body.get('weights')}", None if answered is None else str(answered)
    )


def model_answers(url: str, *, model: str = MODEL_NAME, timeout: float = 5.0) -> tuple[bool, str]:
    """POST the probe image to ``url/predictions/<model>``. Returns (ok, detail)."""
    result = probe_model(url, model=model, timeout=timeout)
    return result.ok, result.detail

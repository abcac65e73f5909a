"""docs/openapi.yaml against a real `resnet-serving serve`: schemathesis generates requests from the description
(valid ones with real images, and invalid ones), sends them, and checks every answer: no 5xx, the status, the
content type, the headers and the body all as described, valid requests accepted, invalid ones refused.

`make contract` runs the same with many more examples (CONTRACT_EXAMPLES)."""

from __future__ import annotations

import base64
import io
import os

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from PIL import Image

from tests.fixtures.serving import LoggedServe
from tests.helpers import REPO

pytestmark = pytest.mark.torchserve

SPEC = REPO / "docs" / "openapi.yaml"
#: `make test`: a fixed set of examples per operation. `make contract` (CONTRACT_LONG=1): many more, drawn afresh
#: each run, plus schemathesis' coverage phase (every keyword's boundaries: 16 images, topk 100, …), which is
#: too slow on a CPU for `make test`.
LONG = os.environ.get("CONTRACT_LONG", "0") == "1"
EXAMPLES = int(os.environ.get("CONTRACT_EXAMPLES", "200" if LONG else "12"))
FORMATS = {"JPEG": ("RGB", "L"), "PNG": ("RGB", "RGBA", "L", "P"), "WEBP": ("RGB",), "GIF": ("P",), "BMP": ("RGB",)}


@st.composite
def image_files(draw: st.DrawFn) -> bytes:
    """A real image file: any accepted format and mode, 1 to 128 pixels a side (thin ones too), random pixels."""
    fmt = draw(st.sampled_from(sorted(FORMATS)))
    mode = draw(st.sampled_from(FORMATS[fmt]))
    width, height = draw(st.integers(1, 128)), draw(st.integers(1, 128))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    img = Image.fromarray(pixels, "RGB").convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


# Schema-valid bodies are real images: "valid" per the description means a decodable image within the limits,
# which no JSON Schema can say, so the positive cases draw from these instead of random bytes.
schemathesis.openapi.format("binary", image_files())
schemathesis.openapi.format("byte", image_files().map(lambda b: base64.b64encode(b).decode("ascii")))
for media in ("image/jpeg", "image/png", "application/octet-stream"):
    schemathesis.openapi.media_type(media, image_files())

CONFIG = schemathesis.Config.from_dict(
    {
        # An HTTP server ignores headers it does not know: undeclared headers are not invalid requests.
        "generation": {"allow-extra-parameters": False},
        "phases": {"coverage": {"enabled": LONG}},
        "checks": {
            # what the description promises for invalid requests, narrower than schemathesis' default list
            "negative_data_rejection": {"expected-statuses": [400, 413, 415]},
            # TorchServe's front end answers every method on every path (the description says so)
            "unsupported_method": {"enabled": False},
        },
    }
)
schema = schemathesis.openapi.from_path(SPEC, config=CONFIG)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=not LONG)
def test_every_answer_conforms(case: schemathesis.Case, logged_serve: LoggedServe) -> None:
    case.call_and_validate(base_url=logged_serve.url, timeout=120)


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "Application/X-WWW-Form-Urlencoded; charset=utf-8"]
)
def test_a_form_encoded_image_gets_the_guards_415_not_the_front_ends_500(
    logged_serve: LoggedServe, content_type: str
) -> None:
    """What `curl --data-binary @cat.jpg URL` sends (no -H Content-Type): TorchServe's front end would decode the
    image as a form and answer 500 (tests/integration/test_serving.py pins that); serve's guard answers first, with
    the handler's message, in the description's `Refused` schema."""
    import jsonschema
    import requests
    import yaml

    from resnet_serving.inference.protocol import form_urlencoded_refused
    from tests.fixtures import images as fx

    r = requests.post(
        f"{logged_serve.url}/predictions/resnet50", data=fx.PHOTO.read_bytes(), headers={"Content-Type": content_type},
        timeout=60,
    )  # fmt: skip
    assert r.status_code == 415, r.text[:300]
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert body["message"] == form_urlencoded_refused().message
    spec = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    jsonschema.validate(body, {**spec["components"]["schemas"]["Refused"], "components": spec["components"]})

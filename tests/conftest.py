"""Shared fixtures (a ResNet50 model directory and a real model archive, random weights, built once) and the
markers that say what a test needs, derived from the fixtures it uses."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.audit import REGISTRY_JSON

# RESNET_SERVING_AMP=auto follows the CPU (bf16 where native), and CI's machines differ there: the suite pins fp32,
# inherited by every serve and worker it starts, so its numerics agree on all of them. The auto choice is tested
# with given /proc/cpuinfo texts (tests/unit/test_cpuinfo.py).
os.environ.setdefault("RESNET_SERVING_AMP", "off")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What TorchServe unpacks a .mar into: model.pt, index_to_name.json, model_info.json (random weights)."""
    import torch

    from resnet_serving.artifact.layout import LABELS_FILE, MODEL_INFO_FILE, STATE_DICT_FILE
    from resnet_serving.inference import imaging, postprocess
    from resnet_serving.inference.model import resolve_weights

    d = tmp_path_factory.mktemp("model_dir")
    state, info = resolve_weights("random")
    torch.save(state, d / STATE_DICT_FILE)
    (d / LABELS_FILE).write_text(postprocess.labels_to_json(imaging.categories()), encoding="utf-8")
    (d / MODEL_INFO_FILE).write_text(json.dumps({"name": "resnet50", "version": "7", "weights": info}))
    return d


@pytest.fixture(scope="session")
def archive_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A real ``model.mar`` + ``manifest.json`` built by ``resnet_serving.archiver`` (random weights, v1)."""
    from resnet_serving.archiver import build_archive

    out = tmp_path_factory.mktemp("archive") / "resnet50" / "1"
    build_archive(weights="random", version="1", out_dir=out)
    yield out


# The real-TorchServe session fixture, shared by tests/integration and tests/load.
from tests.fixtures.torchserve import torchserve  # noqa: E402, F401

#: A test that uses one of these fixtures (directly or through another fixture) needs what the marker names.
FIXTURE_MARKERS = {
    "torchserve": "torchserve",
    "moto_s3": "s3",
    "helm_bin": "helm",
    "kubectl_bin": "kubectl",
    "checkov_bin": "checkov",
    "promql_parser": "promql",
    "fault_table": "faults",
    "fuzz_runner": "fuzz",
    "vulnerability_source": "registry",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for fixture, marker in FIXTURE_MARKERS.items():
            if fixture in used:
                item.add_marker(marker)
    # The tests on the built images (fixture `built`) run last: the builds take gigabytes of disk, and a machine
    # short of it must fail (or skip) only them, never the tests that would have run after them.
    items.sort(key=lambda item: "built" in getattr(item, "fixturenames", ()))


@pytest.fixture(scope="session")
def vulnerability_source() -> str:
    """The registry's JSON API when it answers. Where it does not: a skip that says so, except in CI (``CI`` set),
    where the registry is reachable by design and an unreachable one fails the run."""
    url = f"{REGISTRY_JSON}/pip/json"
    try:
        with urllib.request.urlopen(url, timeout=15) as response:
            response.read(1)
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        message = f"no vulnerability source: the registry's JSON API ({url}) did not answer: {e}; nothing audited"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return REGISTRY_JSON

"""Shared fixtures: a ResNet50 model directory and a real model archive (random weights, built once)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)


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
    """A real ``model.mar`` + ``manifest.json`` built by ``resnet_serving.artifact.build`` (random weights, v1)."""
    from resnet_serving.artifact.build import build_archive

    out = tmp_path_factory.mktemp("archive") / "resnet50" / "1"
    build_archive(weights="random", version="1", out_dir=out)
    yield out


# The real-TorchServe session fixture, shared by tests/integration and tests/load (imported last: it uses
# free_ports and archive_dir from this module).
from tests.fixtures.torchserve import torchserve  # noqa: E402, F401

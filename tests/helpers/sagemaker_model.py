"""A model directory as SageMaker lays one out: ``model.tar.gz`` packed as ``sagemaker deploy`` packs it, then
extracted as SageMaker extracts it into ``/opt/ml/model``. Shared by the entrypoint's contract test and the
image tests."""

from __future__ import annotations

import tarfile
from pathlib import Path

from resnet_serving.artifact.layout import ARCHIVE_NAME, SAGEMAKER_TARBALL
from resnet_serving.sagemaker.package import pack


def sagemaker_model_dir(archive_dir: Path, root: Path, *, tamper: bool = False) -> Path:
    """``root/opt-ml-model``, extracted from ``root/model.tar.gz``; ``tamper`` flips one byte of the archive."""
    root.mkdir(parents=True)
    tarball = root / SAGEMAKER_TARBALL
    pack(archive_dir, tarball)
    model_dir = root / "opt-ml-model"
    with tarfile.open(tarball) as tar:
        tar.extractall(model_dir, filter="data")
    if tamper:
        data = bytearray((model_dir / ARCHIVE_NAME).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (model_dir / ARCHIVE_NAME).write_bytes(bytes(data))
    return model_dir

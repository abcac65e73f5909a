"""Read files out of a resnet-serving ``model.mar`` (a zip), so the baseline, ``evaluate`` and the bench's raw
processes run its weights."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import torch

from resnet_serving.artifact.layout import ARCHIVE_NAME, STATE_DICT_FILE
from resnet_serving.errors import ArchiveError


def archive_member(model_dir: Path, name: str) -> bytes:
    """One file of ``model_dir/model.mar``, e.g. the state_dict or the labels."""
    try:
        with zipfile.ZipFile(model_dir / ARCHIVE_NAME) as mar:
            return mar.read(name)
    except (OSError, KeyError, zipfile.BadZipFile) as e:
        raise ArchiveError(f"{model_dir / ARCHIVE_NAME}: no {name} in it ({e})") from e


def archive_state_dict(model_dir: Path) -> dict[str, torch.Tensor]:
    """The weights packed into a resnet-serving archive."""
    state = torch.load(io.BytesIO(archive_member(model_dir, STATE_DICT_FILE)), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ArchiveError(f"{model_dir / ARCHIVE_NAME}: {STATE_DICT_FILE} is not a state_dict")
    return state


def unpack_archive(model_dir: Path, dest: Path) -> Path:
    """``model_dir/model.mar`` extracted into ``dest``, as TorchServe unpacks it for a worker; ``dest``."""
    try:
        with zipfile.ZipFile(model_dir / ARCHIVE_NAME) as mar:
            mar.extractall(dest)
    except (OSError, zipfile.BadZipFile) as e:
        raise ArchiveError(f"{model_dir / ARCHIVE_NAME}: cannot unpack it ({e})") from e
    return dest

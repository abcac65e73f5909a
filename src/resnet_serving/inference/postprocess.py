"""Logits → top-k ``[{label, index, score}]`` sorted by score. NumPy only: the CLI prints these without torch."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from resnet_serving.errors import ArchiveError


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis, in float64."""
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def topk(logits: np.ndarray, k: int, labels: Sequence[str]) -> list[list[dict[str, Any]]]:
    """Top-k per row of a (N, C) logits array: highest score first, ties broken by lower index."""
    arr = np.asarray(logits)
    if arr.ndim != 2:
        raise ValueError(f"logits must be 2-D (N, C), got shape {arr.shape}")
    n_classes = arr.shape[1]
    if len(labels) != n_classes:
        raise ValueError(f"{len(labels)} labels for {n_classes} classes")
    if not 1 <= k <= n_classes:
        raise ValueError(f"k must be in 1..{n_classes}, got {k}")
    probs = softmax(arr)
    out: list[list[dict[str, Any]]] = []
    for row in probs:
        # stable sort on -score keeps equal scores in index order
        order = np.argsort(-row, kind="stable")[:k]
        out.append([{"label": labels[i], "index": int(i), "score": float(row[i])} for i in order])
    return out


def load_labels(path: str | os.PathLike[str]) -> list[str]:
    """Read ``index_to_name.json`` (``{"0": "tench", ...}``, TorchServe's convention) into a list."""
    try:
        with open(path, encoding="utf-8") as f:
            mapping = json.load(f)
        labels = [mapping[str(i)] for i in range(len(mapping))]
    except (OSError, ValueError, KeyError) as e:
        raise ArchiveError(f"{path}: not a valid index_to_name.json ({e})") from e
    if not all(isinstance(x, str) and x for x in labels):
        raise ArchiveError(f"{path}: every label must be a non-empty string")
    return labels


def labels_to_json(labels: Sequence[str]) -> str:
    return json.dumps({str(i): name for i, name in enumerate(labels)}, indent=0, ensure_ascii=False) + "\n"

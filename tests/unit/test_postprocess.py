from __future__ import annotations

import numpy as np
import pytest

from resnet_serving.errors import ArchiveError
from resnet_serving.inference import postprocess


def test_softmax_is_stable_and_normalised() -> None:
    logits = np.array([[1000.0, 1001.0, 999.0], [0.0, 0.0, 0.0]])
    p = postprocess.softmax(logits)
    assert np.allclose(p.sum(axis=1), 1.0)
    assert np.all(np.isfinite(p))
    assert np.allclose(p[1], 1 / 3)


def test_topk_sorted_by_score_with_labels_and_indices() -> None:
    labels = ["a", "b", "c", "d"]
    out = postprocess.topk(np.array([[0.1, 3.0, 2.0, -1.0]]), 3, labels)
    assert [p["label"] for p in out[0]] == ["b", "c", "a"]
    assert [p["index"] for p in out[0]] == [1, 2, 0]
    scores = [p["score"] for p in out[0]]
    assert scores == sorted(scores, reverse=True)
    assert all(isinstance(s, float) for s in scores)


def test_topk_ties_broken_by_index() -> None:
    out = postprocess.topk(np.zeros((1, 5)), 5, list("abcde"))
    assert [p["index"] for p in out[0]] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("k", [0, 5])
def test_topk_bounds(k: int) -> None:
    with pytest.raises(ValueError, match="k must be"):
        postprocess.topk(np.zeros((1, 4)), k, list("abcd"))


def test_topk_label_count_must_match() -> None:
    with pytest.raises(ValueError, match="labels"):
        postprocess.topk(np.zeros((1, 4)), 1, list("abc"))


def test_labels_round_trip(tmp_path) -> None:
    path = tmp_path / "index_to_name.json"
    path.write_text(postprocess.labels_to_json(["tench", "goldfish"]), encoding="utf-8")
    assert postprocess.load_labels(path) == ["tench", "goldfish"]
    path.write_text('{"0": "a", "2": "c"}', encoding="utf-8")
    with pytest.raises(ArchiveError, match="index_to_name"):
        postprocess.load_labels(path)

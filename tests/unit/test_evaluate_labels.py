"""`evaluate`'s labels: ImageNet folders or a CSV mapped to class indices, and a clear refusal (exit 2) otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from resnet_serving.bench import accuracy
from resnet_serving.cli import main
from resnet_serving.errors import InputError
from tests.fixtures import images


def _folder(root: Path, names: list[str], per_class: int = 1) -> Path:
    for name in names:
        (root / name).mkdir(parents=True)
        for k in range(per_class):
            (root / name / f"{k}.jpg").write_bytes(images.jpeg())
    return root


def test_the_synset_list_is_imagenet_1k_in_class_order() -> None:
    ids = accuracy.synsets()
    assert len(ids) == len(set(ids)) == 1000 and ids == sorted(ids)
    index = accuracy.label_index()
    # class 0 is the tench, class 207 the golden retriever, whichever way it is spelled
    assert index["n01440764"] == index["0"] == index["tench"] == 0
    assert index["n02099601"] == index["golden retriever"] == 207


def test_synset_folders_map_to_their_classes(tmp_path: Path) -> None:
    data = _folder(tmp_path / "val", ["n01440764", "n02099601"], per_class=2)
    (data / "n01440764" / "notes.txt").write_text("not an image")
    samples = accuracy.load_samples(data)
    assert sorted((s.path.parent.name, s.label) for s in samples) == [
        ("n01440764", 0),
        ("n01440764", 0),
        ("n02099601", 207),
        ("n02099601", 207),
    ]


def test_a_folder_that_is_not_a_synset_is_refused_with_its_name(tmp_path: Path, capsys) -> None:
    data = _folder(tmp_path / "val", ["n01440764", "cats", "dogs"])
    with pytest.raises(InputError, match=r"2 of 3 folder names are not ImageNet-1k synset ids \(cats, dogs\)"):
        accuracy.load_samples(data)
    assert main(["evaluate", "--data", str(data), "--weights", "random"]) == 2
    assert "not ImageNet-1k synset ids" in capsys.readouterr().err


def test_labels_csv_accepts_index_synset_and_name(tmp_path: Path) -> None:
    data = tmp_path / "flat"
    data.mkdir()
    for name in ("a.jpg", "b.png", "c.jpg"):
        (data / name).write_bytes(images.jpeg() if name.endswith("jpg") else images.png())
    (data / "labels.csv").write_text("file,label\na.jpg,207\nb.png,n01440764\nc.jpg,Golden Retriever\n")
    samples = accuracy.load_samples(data)
    assert [(s.path.name, s.label) for s in samples] == [("a.jpg", 207), ("b.png", 0), ("c.jpg", 207)]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("a.jpg,1000\na.jpg,kitten\n", r"2 label\(s\) map to no ImageNet-1k class \(1000, kitten\)"),
        ("missing.jpg,0\n", r"1 file\(s\) not found"),
        ("a.jpg,cardigan\n", r"1 label\(s\) name more than one ImageNet-1k class \(cardigan\)"),
        ("a.jpg\n", r"is not file,label"),
    ],
)
def test_labels_csv_refuses_what_it_cannot_map(tmp_path: Path, rows: str, message: str) -> None:
    data = tmp_path / "flat"
    data.mkdir()
    (data / "a.jpg").write_bytes(images.jpeg())
    (data / "labels.csv").write_text(rows)
    with pytest.raises(InputError, match=message):
        accuracy.load_samples(data)


def test_an_empty_or_flat_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no class folders and no labels\.csv"):
        accuracy.load_samples(tmp_path)
    _folder(tmp_path / "val", ["n01440764"], per_class=0)
    with pytest.raises(InputError, match="no images"):
        accuracy.load_samples(tmp_path / "val")
    with pytest.raises(InputError, match="not a directory"):
        accuracy.load_samples(tmp_path / "absent")


def test_fp16_on_a_cpu_is_refused() -> None:
    import torch

    with pytest.raises(InputError, match="fp16 on a GPU only"):
        accuracy.check_precisions(["fp16"], torch.device("cpu"))
    assert accuracy.check_precisions(["bf16", "fp32", "bf16"], torch.device("cpu")) == ["fp32", "bf16"]

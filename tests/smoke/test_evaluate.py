"""`resnet-serving evaluate` end to end, bounded: the README's command on a small generated ImageNet-style folder.

Random weights: the figures mean nothing, so the test checks the mechanics, which is what the command says it
checked.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from resnet_serving.cli import main
from tests.helpers.docs_pages import block

pytestmark = [pytest.mark.smoke]


def test_evaluate_on_a_generated_folder(archive_dir: Path, tmp_path: Path, capsys) -> None:
    """The accuracy guard end to end on a small ImageNet-style folder: the archive's weights (random), fp32 and
    every reduced precision this CPU runs natively, through the serving code. Random weights: the figures mean
    nothing, so the test checks the mechanics, exactly what the command says it checked."""
    from resnet_serving.bench.accuracy import supported_precisions
    from tests.fixtures import images

    data = tmp_path / "val"
    for k, wnid in enumerate(("n01440764", "n01443537", "n02099601")):
        (data / wnid).mkdir(parents=True)
        for j in range(2):
            (data / wnid / f"{j}.jpg").write_bytes(images.jpeg(96 + 8 * j, 64 + 8 * k))
    (data / "n02099601" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    out = tmp_path / "evaluate.json"
    # the README's command, with this test's folder, archive and output file in place of its paths
    (line,) = block("evaluate")
    words = shlex.split(line)
    assert words[:2] == ["resnet-serving", "evaluate"]
    mine = {"--data": str(data), "--model-dir": str(archive_dir), "--out": str(out)}
    argv = [mine.get(words[i - 1], w) for i, w in enumerate(words)][1:]
    assert sorted(set(argv) & set(mine.values())) == sorted(mine.values()), argv
    assert main(argv) == 0
    captured = capsys.readouterr()
    result = json.loads(out.read_text())
    import torch

    expected = supported_precisions(torch.device("cpu"))
    assert list(result["precisions"]) == expected and expected[0] == "fp32"
    assert result["images"] == 7 and result["scored"] == 6 and result["classes"] == 3
    assert list(result["unreadable"]) == [str(data / "n02099601" / "broken.jpg")]
    assert result["pretrained"] is False and "only the mechanics were checked" in result["note"]
    fp32 = result["precisions"]["fp32"]
    assert fp32["top1_agreement_with_fp32"] == 1.0 and fp32["graph"] == "torchscript-frozen"
    for name, r in result["precisions"].items():
        assert 0 <= r["top1"] <= r["top5"] <= 1 and 0 <= r["top1_agreement_with_fp32"] <= 1 and r["img_s"] > 0
        if name == "bf16":
            assert r["graph"] == "torchscript-frozen-bf16"
            assert "bf16: top-1" in captured.out and "same top-1 class as fp32" in captured.out
    assert "only the mechanics were checked" in " ".join(captured.err.split())
    assert "could not be decoded" in " ".join(captured.err.split())


def run_readme_command(name: str, flag: str, data: Path, archive_dir: Path, tmp_path: Path) -> dict:
    """The README's `name` block, with this test's folder, archive and output file: returns its JSON result."""
    out = tmp_path / f"{name}.json"
    (line,) = block(name)
    words = shlex.split(line)
    assert words[:2] == ["resnet-serving", "evaluate"] and flag in words
    mine = {"--data": str(data), "--model-dir": str(archive_dir), "--out": str(out)}
    argv = [mine.get(words[i - 1], w) for i, w in enumerate(words)][1:]
    assert main(argv) == 0
    return json.loads(out.read_text())


def check_rows(result: dict, suffix: str) -> None:
    """Each supported precision, then each again with ``suffix``, all scored."""
    import torch

    from resnet_serving.bench.accuracy import supported_precisions

    precisions = supported_precisions(torch.device("cpu"))
    assert list(result["precisions"]) == precisions + [p + suffix for p in precisions]
    assert result["scored"] == 2 and result["unreadable"] == {}
    for r in result["precisions"].values():
        assert 0 <= r["top1"] <= r["top5"] <= 1 and 0 <= r["top1_agreement_with_fp32"] <= 1 and r["img_s"] > 0


def test_evaluate_scores_the_scaled_jpeg_decode_against_the_exact_one(
    archive_dir: Path, tmp_path: Path, capsys
) -> None:
    """The README's second command: each precision again with the scaled JPEG decode, its agreement measured
    against fp32 with the exact decode. The photos are large enough (2× and 4× the example photo) for libjpeg to
    decode them at a reduced scale. Random weights: mechanics only, as the command says."""
    from PIL import Image

    from tests.fixtures import images

    photo = Image.open(images.PHOTO).convert("RGB")
    data = tmp_path / "val"
    for k, wnid in enumerate(("n01440764", "n02099601")):
        (data / wnid).mkdir(parents=True)
        big = photo.resize((photo.width * (2 + 2 * k), photo.height * (2 + 2 * k)))
        (data / wnid / "0.jpg").write_bytes(images.encode(big, "JPEG", quality=90))
    result = run_readme_command("evaluate-scaled", "--jpeg-decode", data, archive_dir, tmp_path)
    captured = capsys.readouterr()
    check_rows(result, "+scaled-jpeg")
    for name, r in result["precisions"].items():
        assert r["jpeg_decode"] == ("scaled" if name.endswith("+scaled-jpeg") else "exact")
    assert result["precisions"]["fp32"]["top1_agreement_with_fp32"] == 1.0
    assert "fp32+scaled-jpeg: top-1" in captured.out and "scaled" in captured.out


def test_evaluate_scores_the_pil_resize_against_the_served_one(archive_dir: Path, tmp_path: Path, capsys) -> None:
    """The README's third command: each precision again with RESNET_SERVING_CPU_RESIZE=pil (bit-exact with
    transforms() on PIL images), its agreement measured against fp32 as served. Random weights: mechanics only."""
    from tests.fixtures import images

    data = tmp_path / "val"
    for k, wnid in enumerate(("n01440764", "n02099601")):
        (data / wnid).mkdir(parents=True)
        (data / wnid / "0.jpg").write_bytes(images.PHOTO.read_bytes() if k == 0 else images.jpeg(300, 200))
    result = run_readme_command("evaluate-pil", "--cpu-resize", data, archive_dir, tmp_path)
    captured = capsys.readouterr()
    check_rows(result, "+pil-resize")
    for name, r in result["precisions"].items():
        assert r["cpu_resize"] == ("pil" if name.endswith("+pil-resize") else "torch")
        assert r["jpeg_decode"] == "exact"
    assert "fp32+pil-resize: top-1" in captured.out


def test_evaluate_refuses_an_unknown_jpeg_decode(capsys: pytest.CaptureFixture[str]) -> None:
    from resnet_serving.bench.accuracy import variants
    from resnet_serving.errors import InputError

    assert variants(["fp32", "bf16"], ["scaled"]) == [
        ("fp32", "fp32", "exact", "torch"),
        ("bf16", "bf16", "exact", "torch"),
        ("fp32+scaled-jpeg", "fp32", "scaled", "torch"),
        ("bf16+scaled-jpeg", "bf16", "scaled", "torch"),
    ]
    assert variants(["fp32"], ["exact"], ["pil", "torch"]) == [
        ("fp32", "fp32", "exact", "torch"),
        ("fp32+pil-resize", "fp32", "exact", "pil"),
    ]
    assert variants(["fp32"], ["exact"], ["torch"], default_resize="pil") == [
        ("fp32", "fp32", "exact", "pil"),
        ("fp32+torch-resize", "fp32", "exact", "torch"),
    ]
    with pytest.raises(InputError, match="--jpeg-decode fast"):
        variants(["fp32"], ["fast"])
    with pytest.raises(InputError, match="--cpu-resize fast"):
        variants(["fp32"], ["exact"], ["fast"])
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--data", ".", "--jpeg-decode", "fast"])
    assert exit_info.value.code == 2
    capsys.readouterr()
    assert main(["evaluate", "--data", ".", "--gpu", "--jpeg-decode", "scaled"]) == 2
    assert "a GPU worker decodes on the GPU" in capsys.readouterr().err
    assert main(["evaluate", "--data", ".", "--gpu", "--cpu-resize", "pil"]) == 2
    assert "a GPU worker resizes on the GPU" in capsys.readouterr().err

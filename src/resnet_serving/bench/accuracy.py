"""The accuracy guard behind ``resnet-serving evaluate``: top-1/top-5 of what ``serve`` answers, per precision.

Each image goes through :class:`~resnet_serving.inference.service.InferenceService`, the code the handler
runs (decode, resize and crop, the model as :meth:`Classifier.configured` builds it, top-k), once per precision,
so the figures are those of the served model and not of a re-implementation. Labels come from an
ImageNet-style folder (one sub-folder per synset id such as ``n01440764``) or a CSV of ``file,label``, where a
label is a class index (0–999), a synset id or a class name; a label that maps to no ImageNet-1k class refuses
the whole folder (:class:`~resnet_serving.errors.InputError`, exit 2).
"""

from __future__ import annotations

import csv
import dataclasses
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from resnet_serving import MODEL_NAME, ui
from resnet_serving.artifact.manifest import open_model_dir
from resnet_serving.errors import ConfigError, InputError
from resnet_serving.inference import imaging
from resnet_serving.inference.cpuinfo import bf16_native as cpu_bf16_native
from resnet_serving.inference.cpuinfo import read_cpuinfo
from resnet_serving.inference.formats import content_type_for
from resnet_serving.inference.model import Classifier
from resnet_serving.inference.service import InferenceService
from resnet_serving.settings import CPU_RESIZE_CHOICES, Settings

#: The 1000 ImageNet-1k synset ids in class-index order (sorted; torchvision's categories follow it).
SYNSETS_FILE = Path(__file__).with_name("imagenet_synsets.txt")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
SYNSET_ID = re.compile(r"^n\d{8}$")
TOPK = 5
#: How many unmapped labels or unreadable files a message names before it says "and N more".
SHOWN = 5


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


def synsets() -> list[str]:
    ids = SYNSETS_FILE.read_text(encoding="ascii").split()
    if len(ids) != 1000:
        raise ConfigError(f"{SYNSETS_FILE}: expected 1000 synset ids, found {len(ids)}")
    return ids


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def label_index() -> dict[str, int | None]:
    """Every spelling of a class this command accepts: its index, its synset id, its name (any case). A name that
    two classes share maps to None: only its index or synset id says which one is meant."""
    index: dict[str, int | None] = {}
    for i, wnid in enumerate(synsets()):
        index[str(i)] = i
        index[wnid] = i
    for i, name in enumerate(imaging.categories()):
        key = name.lower()
        index[key] = None if key in index else i
    return index


def load_samples(data: Path, labels_csv: Path | None = None) -> list[Sample]:
    """The labelled images of ``data``: from ``labels_csv`` (or ``data/labels.csv``), else one folder per synset."""
    if not data.is_dir():
        raise InputError(f"--data {data}: not a directory")
    csv_path = labels_csv or (data / "labels.csv" if (data / "labels.csv").is_file() else None)
    samples = _from_csv(data, csv_path) if csv_path else _from_folders(data)
    if not samples:
        raise InputError(f"--data {data}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return samples


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _from_folders(data: Path) -> list[Sample]:
    folders = sorted(p for p in data.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise InputError(
            f"--data {data}: no class folders and no labels.csv; use one folder per ImageNet synset id "
            "(n01440764/, n01443537/, …) or a CSV of file,label (--labels)"
        )
    wnids = {w: i for i, w in enumerate(synsets())}
    unknown = [f.name for f in folders if f.name not in wnids]
    if unknown:
        raise InputError(
            f"--data {data}: {len(unknown)} of {len(folders)} folder names are not ImageNet-1k synset ids "
            f"({_names(unknown)}), so their images cannot be scored; name each folder by its synset id "
            "(n01440764 is class 0, tench) or give a labels CSV (--labels FILE: file,label)"
        )
    return [Sample(p, wnids[f.name]) for f in folders for p in _images(f)]


def _from_csv(data: Path, csv_path: Path) -> list[Sample]:
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"--labels {csv_path}: cannot be read ({e})") from e
    rows = [r for r in csv.reader(text.splitlines()) if r and any(c.strip() for c in r)]
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["file", "label"]:
        rows = rows[1:]
    index = label_index()
    samples: list[Sample] = []
    unknown: list[str] = []
    ambiguous: list[str] = []
    missing: list[str] = []
    for n, row in enumerate(rows, 1):
        if len(row) < 2:
            raise InputError(f"--labels {csv_path}: row {n} {row!r} is not file,label")
        file, label = row[0].strip(), row[1].strip()
        key = label if label in index else label.lower()
        if key not in index:
            unknown.append(label)
            continue
        i = index[key]
        if i is None:
            ambiguous.append(label)
            continue
        path = data / file
        if not path.is_file():
            missing.append(file)
            continue
        samples.append(Sample(path, i))
    if unknown:
        raise InputError(
            f"--labels {csv_path}: {len(unknown)} label(s) map to no ImageNet-1k class "
            f"({_names(sorted(set(unknown)))}); a label is a class index 0-999, a synset id (n01440764) or a "
            "class name (tench)"
        )
    if ambiguous:
        raise InputError(
            f"--labels {csv_path}: {len(ambiguous)} label(s) name more than one ImageNet-1k class "
            f"({_names(sorted(set(ambiguous)))}); give the class index or the synset id instead"
        )
    if missing:
        raise InputError(f"--labels {csv_path}: {len(missing)} file(s) not found under {data} ({_names(missing)})")
    return samples


def supported_precisions(device: torch.device) -> list[str]:
    """fp32 and the reduced precisions this device runs natively: bf16 on a CPU with bf16 instructions; fp16,
    and bf16 where the GPU has it, on CUDA."""
    if device.type == "cuda":
        return ["fp32", "fp16"] + (["bf16"] if torch.cuda.is_bf16_supported() else [])
    _, flags = read_cpuinfo()
    return ["fp32"] + (["bf16"] if cpu_bf16_native(flags) else [])


def check_precisions(asked: list[str], device: torch.device) -> list[str]:
    """fp32 first (the reference for agreement), each precision once; fp16 only on a GPU."""
    out = ["fp32"] + [p for p in dict.fromkeys(asked) if p != "fp32"]
    for p in out:
        if p not in ("fp32", "bf16", "fp16"):
            raise InputError(f"--precision {p}: expected fp32, bf16 or fp16")
        if p == "fp16" and device.type != "cuda":
            raise InputError("--precision fp16: serving runs fp16 on a GPU only, and none is in use here")
    return out


#: How ``evaluate`` names the row of a precision served with ``RESNET_SERVING_JPEG_SCALED_DECODE=1``.
SCALED_SUFFIX = "+scaled-jpeg"


def variants(
    precisions: list[str],
    jpeg_decodes: list[str],
    cpu_resizes: list[str] | None = None,
    default_resize: str = CPU_RESIZE_CHOICES[0],
) -> list[tuple[str, str, str, str]]:
    """(row name, precision, JPEG decode, CPU resize) for each row; fp32 as served by default first (the reference).
    Each precision gets a row per JPEG decode, and one per CPU resize other than the served one."""
    decodes = ["exact"] + [d for d in dict.fromkeys(jpeg_decodes) if d != "exact"]
    for d in decodes:
        if d not in ("exact", "scaled"):
            raise InputError(f"--jpeg-decode {d}: expected exact or scaled")
    rows = [(p + ("" if d == "exact" else SCALED_SUFFIX), p, d, default_resize) for d in decodes for p in precisions]
    for r in dict.fromkeys(cpu_resizes or []):
        if r not in CPU_RESIZE_CHOICES:
            raise InputError(f"--cpu-resize {r}: expected one of {', '.join(CPU_RESIZE_CHOICES)}")
        if r != default_resize:
            rows += [(f"{p}+{r}-resize", p, "exact", r) for p in precisions]
    return rows


def evaluate(
    samples: list[Sample],
    state_dict: dict[str, torch.Tensor],
    *,
    precisions: list[str],
    device: torch.device,
    batch_size: int = 8,
    meta: dict[str, Any] | None = None,
    jpeg_decodes: list[str] | None = None,
    cpu_resizes: list[str] | None = None,
) -> dict[str, Any]:
    """Top-1/top-5 for each precision (and, asked for, each with the scaled JPEG decode or the other CPU resize),
    agreement of its top-1 with fp32's as served (exact decode, the served resize), and the images it could not
    read."""
    base = dataclasses.replace(Settings.from_env(), default_topk=TOPK, max_topk=max(TOPK, 100))
    labels = imaging.categories()
    meta = {"model": MODEL_NAME, **(meta or {})}
    payloads = [s.path.read_bytes() for s in samples]
    top: dict[str, list[list[int] | None]] = {}
    unreadable: dict[str, str] = {}
    results: dict[str, dict[str, Any]] = {}
    rows = variants(precisions, jpeg_decodes or ["exact"], cpu_resizes, base.cpu_resize)
    models: dict[str, Classifier] = {}
    for name, precision, decode, resize in rows:
        if precision not in models:
            with ui.status(f"building the {precision} model as serving runs it"):
                amp = "off" if precision == "fp32" else precision
                models[precision] = Classifier.configured(
                    state_dict, device, batch_size, dataclasses.replace(base, amp=amp)
                )
        clf = models[precision]
        settings = dataclasses.replace(base, jpeg_scaled_decode=decode == "scaled", cpu_resize=resize)
        service = InferenceService(clf, labels, meta, settings, gpu_decode=settings.gpu_decode)
        got: list[list[int] | None] = []
        started = time.perf_counter()
        with ui.progress(f"{name}: classifying {len(samples)} images", len(samples)) as advance:
            for start in range(0, len(samples), batch_size):
                chunk = payloads[start : start + batch_size]
                responses = service.handle([{"body": b} for b in chunk], [content_type_for(b) for b in chunk])
                for k, resp in enumerate(responses):
                    if resp.status == 200:
                        got.append([int(p["index"]) for p in resp.body["predictions"]])
                    else:
                        got.append(None)
                        unreadable.setdefault(str(samples[start + k].path), str(resp.body.get("message", "")))
                advance(len(chunk))
        seconds = time.perf_counter() - started
        top[name] = got
        results[name] = {
            "graph": clf.graph,
            "jpeg_decode": decode,
            "cpu_resize": resize if device.type == "cpu" else None,
            "img_s": len(samples) / seconds if seconds > 0 else float("nan"),
        }
    scored = [i for i in range(len(samples)) if all(top[name][i] is not None for name, *_ in rows)]
    if not scored:
        raise InputError(f"none of the {len(samples)} images could be decoded (first: {_names(list(unreadable))})")
    for name, *_ in rows:
        preds = [top[name][i] for i in scored]
        ref = [top["fp32"][i] for i in scored]
        truth = [samples[i].label for i in scored]
        n = len(scored)
        results[name].update(
            top1=sum(p is not None and p[0] == t for p, t in zip(preds, truth, strict=True)) / n,
            top5=sum(p is not None and t in p for p, t in zip(preds, truth, strict=True)) / n,
            top1_agreement_with_fp32=sum(
                p is not None and r is not None and p[0] == r[0] for p, r in zip(preds, ref, strict=True)
            )
            / n,
        )
    return {
        "images": len(samples),
        "scored": len(scored),
        "classes": len({samples[i].label for i in scored}),
        "unreadable": unreadable,
        "precisions": results,
    }


def subsample(samples: list[Sample], limit: int | None) -> list[Sample]:
    """At most ``limit`` samples, drawn with a fixed seed so that a rerun scores the same images."""
    if limit is None or limit >= len(samples):
        return samples
    return sorted(random.Random(0).sample(samples, limit), key=lambda s: str(s.path))


def evaluate_model(
    data: Path,
    labels: Path | None,
    *,
    limit: int | None,
    gpu: bool,
    precisions: list[str] | None,
    model_dir: Path | None,
    weights: str | None,
    batch_size: int,
    jpeg_decodes: list[str] | None,
    cpu_resizes: list[str] | None,
) -> dict[str, Any]:
    """``resnet-serving evaluate``: score the weights of ``model_dir`` (sha256-checked) or ``weights`` on a
    labelled folder, for each precision; the result as :func:`evaluate` gives it, with what was scored."""
    from resnet_serving.bench.mar import archive_state_dict
    from resnet_serving.inference.model import resolve_weights, select_device

    samples = subsample(load_samples(data, labels), limit)
    if gpu and not torch.cuda.is_available():
        raise InputError("--gpu: no CUDA device is available here")
    device = select_device(0 if gpu else None)
    supported = supported_precisions(device)
    chosen = check_precisions(precisions or supported, device)
    for p in chosen:
        if p not in supported:
            ui.warn(f"{p} is not native on this {device.type}: it is emulated (same numerics, far slower)")
    if model_dir:
        with ui.status(f"verifying {model_dir}"):
            manifest = open_model_dir(model_dir)
        state, weights_info = archive_state_dict(model_dir), dict(manifest.weights)
        meta = {"version": manifest.version, "weights": weights_info.get("id")}
    else:
        with ui.status(f"resolving weights ({weights or 'auto'})"):
            state, weights_info = resolve_weights(weights or "auto")
        meta = {"version": "", "weights": weights_info.get("id")}
    result = evaluate(
        samples,
        state,
        precisions=chosen,
        device=device,
        batch_size=batch_size,
        meta=meta,
        jpeg_decodes=jpeg_decodes,
        cpu_resizes=cpu_resizes,
    )
    result.update(
        data=str(data),
        device=str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        weights=weights_info.get("id"),
        pretrained=bool(weights_info.get("pretrained", False)),
        supported_precisions=supported,
    )
    if not result["pretrained"]:
        result["note"] = (
            "random weights: only the mechanics were checked (labels mapped, every precision run, agreement "
            "computed); the accuracy figures mean nothing. Evaluate the weights you serve."
        )
    return result

"""Raw forward passes in one process: torch's frozen fp32 graph against the OpenVINO IR (fp32, and bf16 as
compiled on this CPU), at each batch size, in alternating rounds so that a drifting shared host hits each runtime
alike. Prints one JSON object: img/s per round and OpenVINO ÷ torch per round (docs/measurements).

    .venv/bin/python dev/openvino_raw.py --threads 2 --batches 1,8 --rounds 3 --seconds 5
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from resnet_serving.artifact.layout import IR_XML_FILE
from resnet_serving.inference.cpuinfo import cpu_report
from resnet_serving.inference.model import Classifier, resolve_weights
from resnet_serving.inference.openvino_model import OpenVinoClassifier, export_ir
from resnet_serving.settings import Settings


def rate(model: Any, batch: int, seconds: float) -> float:
    x = torch.randn(batch, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    model.forward(x)  # warm-up: this shape's kernels
    n, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        model.forward(x)
        n += batch
    return n / elapsed


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batches", default="1,8")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0)
    args = p.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    torch.set_num_threads(args.threads)
    state, _ = resolve_weights("random")
    models: dict[str, Any] = {"torch": Classifier.configured(state, torch.device("cpu"), 8, Settings(amp="off"))}
    with tempfile.TemporaryDirectory() as tmp:
        export_ir(state, Path(tmp), "fp32")
        for precision in ("fp32", "bf16"):
            models[f"openvino-{precision}"] = OpenVinoClassifier(
                Path(tmp) / IR_XML_FILE, precision=precision, threads=args.threads
            )
    graphs = {name: m.graph for name, m in models.items()}
    rounds: list[dict[str, dict[str, float]]] = []
    for _ in range(args.rounds):
        rounds.append(
            {str(b): {name: round(rate(m, b, args.seconds), 2) for name, m in models.items()} for b in batches}
        )
    ratios = {
        str(b): {
            name: [round(r[str(b)][name] / r[str(b)]["torch"], 2) for r in rounds] for name in models if name != "torch"
        }
        for b in batches
    }
    print(
        json.dumps(
            {
                "cpu": cpu_report(),
                "threads": args.threads,
                "graphs": graphs,
                "rounds": rounds,
                "ratio_to_torch": ratios,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()

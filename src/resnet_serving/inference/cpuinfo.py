"""What the CPU can do for reduced precision: its model name and instruction-set flags (``/proc/cpuinfo``).

``RESNET_SERVING_AMP=auto`` runs bf16 on a CPU with native bf16 and fp32 elsewhere (:func:`auto_cpu_precision`),
``serve`` says which at start-up and warns when bf16 is forced on a CPU that would emulate it, and ``bench``
records the flags it ran on. Torch-free.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resnet_serving.settings import env_name

CPUINFO = Path("/proc/cpuinfo")
#: The flags that decide how fast ResNet50 runs on a CPU, in the order the bench records them.
RELEVANT_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
#: Either one gives native bf16 arithmetic; without both, bf16 is emulated with fp32 instructions.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
#: bf16 ÷ fp32 served throughput on a CPU without BF16_FLAGS, as the reduced-precision measurements page states
#: (one figure, stated here for the warning and checked against that page by tests/unit/test_cpuinfo.py).
BF16_EMULATED_SPEED = 0.37
BF16_EMULATED_CPU = "Ice Lake, AVX-512 without AVX512-BF16"


def read_cpuinfo(path: Path | None = None) -> tuple[str, frozenset[str]]:
    """The first processor's model name and flags (of ``path``, default :data:`CPUINFO`); ``("", frozenset())``
    where the file is absent (not Linux)."""
    try:
        text = (path or CPUINFO).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "", frozenset()
    model, flags = "", frozenset[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:  # Features: the ARM spelling
            flags = frozenset(value.split())
        if model and flags:
            break
    return model, flags


def cpu_report(path: Path | None = None) -> dict[str, Any]:
    """What the bench records: the model name, each relevant flag, and whether bf16 is native."""
    model, flags = read_cpuinfo(path)
    return {
        "model": model,
        "flags": {f: f in flags for f in RELEVANT_FLAGS},
        "bf16_native": bf16_native(flags),
    }


def bf16_native(flags: frozenset[str]) -> bool:
    return any(f in flags for f in BF16_FLAGS)


def auto_cpu_precision(path: Path | None = None) -> tuple[str, str]:
    """What ``RESNET_SERVING_AMP=auto`` runs on a CPU, and why: ``("bf16", …)`` where the CPU has native bf16
    (:data:`BF16_FLAGS`), as OpenVINO's own default is there, else ``("fp32", …)``."""
    model, flags = read_cpuinfo(path)
    name = model or "this CPU"
    if not flags:
        return "fp32", "the CPU's flags cannot be read (no /proc/cpuinfo), so fp32"
    have = [f for f in BF16_FLAGS if f in flags]
    if have:
        return "bf16", (
            f"{name} has {' and '.join(have)} (native bf16); {env_name('amp')}=off serves fp32, and `resnet-serving "
            "evaluate` shows the top-1 agreement with fp32 on your images"
        )
    return "fp32", f"{name} has neither {' nor '.join(BF16_FLAGS)}: bf16 would be emulated, slower than fp32"


def asked_precision(precision: str, path: Path | None = None) -> tuple[str, str]:
    """What an OpenVINO archive's recorded precision asks OpenVINO for on this CPU, and why: ``auto`` follows the
    CPU as ``RESNET_SERVING_AMP=auto`` does for torch (:func:`auto_cpu_precision`); fp32 and bf16 are what they say."""
    if precision == "auto":
        return auto_cpu_precision(path)
    return precision, "as archived"


def bf16_warning(amp: str, path: Path | None = None) -> str | None:
    """The start-up warning for ``RESNET_SERVING_AMP=bf16`` on a CPU without bf16 instructions, else None.

    A CPU whose flags cannot be read (no /proc/cpuinfo) gets no warning: nothing is known about it."""
    if amp != "bf16":
        return None
    model, flags = read_cpuinfo(path)
    if not flags or bf16_native(flags):
        return None
    return (
        f"{env_name('amp')}=bf16 on a CPU without bf16 instructions ({model or 'unknown model'} has neither "
        f"{' nor '.join(BF16_FLAGS)} in /proc/cpuinfo): workers on this CPU emulate bf16, which served at "
        f"{BF16_EMULATED_SPEED:.2f}× of fp32's throughput on {BF16_EMULATED_CPU} (docs: how-to/reduced-precision). "
        "Unset it or use auto (fp32 on such a CPU); a worker on a GPU is not affected."
    )

"""What runs the network of an archive: its ``runtime`` record, written by ``archive --runtime`` into the manifest
and into the archive's ``model_info.json``, and checked wherever either is read. Torch-free.

::

    {"name": "torch"}                                           what every archive without a record runs
    {"name": "openvino", "version": "2026.4.1", "precision": "auto",
     "files": {"model.xml": "<sha256>", "model.bin": "<sha256>"}}
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping
from typing import Any

from resnet_serving.artifact.layout import IR_BIN_FILE, IR_XML_FILE
from resnet_serving.errors import IntegrityError

#: The runtimes ``archive --runtime`` builds for; the first is the default.
RUNTIMES = ("torch", "openvino")
#: The precisions an OpenVINO archive may ask for; the first is the default: bf16 on a CPU with native bf16, else
#: fp32, decided where it is served (docs: how-to/openvino).
OPENVINO_PRECISIONS = ("auto", "fp32", "bf16")
#: The files an OpenVINO archive carries beside model.pt, each recorded with its sha256.
OPENVINO_FILES = (IR_XML_FILE, IR_BIN_FILE)
#: The extra that installs OpenVINO (pyproject.toml).
OPENVINO_EXTRA = "openvino"
#: The record of an archive built before runtimes were recorded: torch ran it.
TORCH = {"name": "torch"}


def validate_runtime(record: Any, *, where: str) -> dict[str, Any]:
    """``record`` as read from a manifest or ``model_info.json``, checked; :class:`IntegrityError` names what is
    wrong with it."""
    if not isinstance(record, Mapping):
        raise IntegrityError(f"{where}: runtime must be an object")
    name = record.get("name")
    if name not in RUNTIMES:
        raise IntegrityError(f"{where}: runtime name {name!r} is not one of {', '.join(RUNTIMES)}")
    if name == "openvino":
        if record.get("precision") not in OPENVINO_PRECISIONS:
            raise IntegrityError(
                f"{where}: runtime precision {record.get('precision')!r} is not one of {', '.join(OPENVINO_PRECISIONS)}"
            )
        files = record.get("files")
        if not isinstance(files, Mapping) or sorted(files) != sorted(OPENVINO_FILES):
            raise IntegrityError(f"{where}: runtime files must be {' and '.join(OPENVINO_FILES)}, each with its sha256")
        for file, digest in files.items():
            if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise IntegrityError(f"{where}: runtime files: {file}'s sha256 must be 64 lowercase hex characters")
    return dict(record)


def openvino_missing(purpose: str) -> str:
    """The message for an OpenVINO archive (or ``archive --runtime openvino``) where OpenVINO is not installed."""
    return (
        f"{purpose} needs OpenVINO, which is not installed in this environment: install the {OPENVINO_EXTRA} "
        f"extra (pip install 'resnet-serving[{OPENVINO_EXTRA}]'), or build the archive with --runtime torch"
    )


def runtime_unavailable(record: Mapping[str, Any], purpose: str) -> str | None:
    """Why this environment cannot run ``record``'s runtime (:func:`openvino_missing`), or None when it can;
    found without importing the runtime, so ``serve`` can refuse before TorchServe starts."""
    if record.get("name") != "openvino":
        return None
    try:
        found = importlib.util.find_spec("openvino") is not None
    except (ImportError, ValueError):  # a finder that refuses it, or a module set to None in sys.modules
        found = False
    return None if found else openvino_missing(purpose)

"""A stand-in for TorchServe's request context, and one request as TorchServe hands it to the handler: for the tests
that call handlers/resnet50_handler.py without a TorchServe process (its ``handler`` fixture is in
tests/unit/conftest.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class StandInContext:
    """Implements the parts of ts.context.Context the handler uses, and records what it sets."""

    def __init__(self, model_dir: Path, headers: list[dict[str, Any]] | None = None) -> None:
        self.system_properties = {"model_dir": str(model_dir), "gpu_id": None}
        self.headers = headers or []
        self.statuses: dict[int, tuple[int, str]] = {}
        self.content_types: dict[int, str] = {}
        self.request_ids: dict[int, str] = {}  # TorchServe's own ids; empty: the handler makes one

    def get_request_id(self, idx: int) -> str | None:
        return self.request_ids.get(idx)

    def get_request_header(self, idx: int, key: str) -> Any:
        return self.headers[idx].get(key)

    def get_all_request_header(self, idx: int) -> dict[str, Any]:
        return self.headers[idx]

    def set_response_status(self, code: int, phrase: str, idx: int) -> None:
        self.statuses[idx] = (code, phrase)

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.content_types[idx] = value


def body(data: Any, ctype: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return {"body": data}, {"body": {"content-type": ctype}, "Content-Type": ctype}

"""The chart gets serve's JSON request lines with no flag: its serving container has no TTY, and nothing in any
values variant picks another --log-format (serve defaults to JSON when stdout is not a terminal)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.chart import VARIANTS, container, deployment


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_serving_container_logs_json(rendered: dict[str, list[dict[str, Any]]], variant: str) -> None:
    c = container(deployment(rendered[variant])["spec"]["template"]["spec"], "torchserve")
    assert not c.get("tty") and not c.get("stdin"), c
    args = c["args"]
    assert args[0] == "serve"
    if "--log-format" in args:
        assert args[args.index("--log-format") + 1] == "json", args

"""Fixtures of the fault suite: the table its serve cases fill (printed, and written under faults-results/ by
`make faults`), the moto server, and the fault-injecting proxy in front of it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.moto_server import MotoS3, aws_test_env, moto_s3  # noqa: F401
from tests.helpers import REPO
from tests.helpers.faults import LONG, Row, markdown
from tests.helpers.s3_proxy import S3FaultProxy


@pytest.fixture(scope="session")
def fault_table() -> Iterator[list[Row]]:
    rows: list[Row] = []
    yield rows
    if not rows:
        return
    text = markdown(rows)
    if LONG:
        out = REPO / "faults-results"
        out.mkdir(exist_ok=True)
        (out / "faults.md").write_text(text + "\n", encoding="utf-8")
    print("\n\n" + text)


@pytest.fixture
def bucket(moto_s3: MotoS3) -> str:  # noqa: F811
    return moto_s3.create_bucket()


@pytest.fixture
def proxy(moto_s3: MotoS3) -> Iterator[S3FaultProxy]:  # noqa: F811
    """A fault proxy in front of the moto server: give the store ``proxy.url`` as its endpoint."""
    with S3FaultProxy(moto_s3.host, moto_s3.port) as p:
        yield p

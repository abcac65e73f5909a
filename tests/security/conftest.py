"""Fixtures for the security checks: the vulnerability source, asked once per session."""

from __future__ import annotations

import os
import urllib.error
import urllib.request

import pytest

from tests.security.audit import REGISTRY_JSON


@pytest.fixture(scope="session")
def vulnerability_source() -> str:
    """The registry's JSON API when it answers. Where it does not: a skip that says so, except in CI (``CI`` set),
    where the registry is reachable by design and an unreachable one fails the run."""
    url = f"{REGISTRY_JSON}/pip/json"
    try:
        with urllib.request.urlopen(url, timeout=15) as response:
            response.read(1)
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        message = f"no vulnerability source: the registry's JSON API ({url}) did not answer: {e}; nothing audited"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return REGISTRY_JSON

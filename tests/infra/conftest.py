"""Fixtures for the infra tests: one synthesis of infra/ per session (a synth costs seconds of jsii start-up).

`synth` builds the app from infra/config.json with cdk-nag on, exactly as `make infra` does; a cdk-nag error
fails that synth, and with it every test here. The helpers (synthesize with another config, the findings
with every acknowledgment off, cfn-lint, checkov) are in tests/helpers/infra.py, for the default and the options
tests alike.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.infra import Synth, synthesize


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize(tmp_path_factory.mktemp("cdk-out"))


@pytest.fixture(scope="session")
def templates(synth: Synth) -> dict[str, dict[str, Any]]:
    return synth.templates

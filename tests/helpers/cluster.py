"""A real Kubernetes cluster as the cluster tests drive it (tests/cluster/conftest.py makes one from KUBECONFIG):
kubectl and helm run against it, and waiting on a condition.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import yaml

from tests.helpers import REPO

ROOT = REPO
T = TypeVar("T")


@dataclass
class Cluster:
    kubectl: str
    helm: str
    namespace: str
    store: str
    image: str
    operator_image: str | None
    values: str | None
    cluster_endpoint: str | None

    def run(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def kubectl_json(self, *args: str) -> Any:
        return yaml.safe_load(self.run(self.kubectl, "-n", self.namespace, *args, "-o", "json").stdout)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        proc = self.run(self.kubectl, "-n", self.namespace, "get", kind, name, "-o", "json", check=False)
        return yaml.safe_load(proc.stdout) if proc.returncode == 0 else None


def wait_for(what: str, probe: Callable[[], T | None], *, timeout: float, every: float = 5.0) -> T:
    """Poll ``probe`` until it returns something truthy (waiting on a condition, never a bare sleep)."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")

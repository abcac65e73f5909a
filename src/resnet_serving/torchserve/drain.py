"""serve's drain on SIGTERM/Ctrl-C: answer what TorchServe has accepted before it stops."""

from __future__ import annotations

import sys
import threading
import time

from resnet_serving import ui
from resnet_serving.errors import ManagementError, Stopped
from resnet_serving.torchserve.config import ServeConfig
from resnet_serving.torchserve.management import ManagementClient
from resnet_serving.torchserve.versions import Versions


def drain_accepted(cfg: ServeConfig, timeout: float, hurry: threading.Event) -> None:
    """Answer every request TorchServe has accepted before stopping it: TorchServe 0.12 resets them on SIGTERM.

    Readiness needs no change here: Kubernetes takes a terminating pod out of the Service's endpoints whatever
    its probe answers, and the chart's preStop sleep lets the ALB deregister it before the SIGTERM."""
    started = time.monotonic()
    versions = Versions(
        ManagementClient(cfg.management_url, timeout=min(5.0, timeout)),
        model=cfg.model_name,
        inference_url=cfg.inference_url,
    )
    versions.stop = hurry
    try:
        with ui.status(f"draining: answering the requests already accepted (at most {timeout:g}s)"):
            _current, registered = versions.served()
            for version in registered:
                left = timeout - (time.monotonic() - started)
                if left <= 0:
                    break
                versions.drain(version, versions.settings(version).workers, timeout=left)
    except Stopped:
        ui.warn("second signal: stopping without draining")
        return
    except ManagementError as e:
        ui.warn(f"could not drain ({e.message}); stopping")
        return
    print(f"resnet-serving: drained in {time.monotonic() - started:.1f}s", file=sys.stderr, flush=True)

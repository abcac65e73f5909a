"""On SageMaker the container answers behind API Gateway, which gives up at its integration timeout: TorchServe's
response timeout, the guard's wait for a place and its read timeout must all end before it does, so the client
gets the container's answer and not the gateway's 504 while the model goes on working."""

from __future__ import annotations

import argparse

from resnet_serving.settings import Settings
from resnet_serving.torchserve.config import RESPONSE_TIMEOUT_S, ServeConfig
from resnet_serving.torchserve.guard import DEFAULT_ADMISSION_WAIT_S, Guard


def _serve_args(*argv: str) -> argparse.Namespace:
    from resnet_serving.cli import serve

    parser = argparse.ArgumentParser()
    serve.register(parser.add_subparsers())
    return parser.parse_args(["serve", *argv])


def test_sagemaker_mode_answers_before_the_gateway_gives_up(tmp_path: object) -> None:
    from resnet_serving.torchserve.config import GATEWAY_TIMEOUT_S, response_timeout

    sagemaker = Settings.from_env({"RESNET_SERVING_SAGEMAKER_MODE": "realtime"})
    timeout = response_timeout(_serve_args().response_timeout, sagemaker)
    cfg = ServeConfig(model_store=tmp_path, workers=1, response_timeout_s=timeout)  # type: ignore[arg-type]
    guard = Guard.in_front_of(cfg, host="127.0.0.1", port=1, retry_after=1, sagemaker=True)
    guard._loop.close()  # never started: only its event loop holds sockets
    assert timeout < GATEWAY_TIMEOUT_S
    # the longest a request can spend in the container: waiting for a place, then the guard's read timeout
    assert DEFAULT_ADMISSION_WAIT_S + guard.timeout < GATEWAY_TIMEOUT_S


def test_outside_sagemaker_the_response_timeout_is_unchanged() -> None:
    from resnet_serving.torchserve.config import response_timeout

    assert response_timeout(_serve_args().response_timeout, Settings.from_env({})) == RESPONSE_TIMEOUT_S


def test_an_explicit_response_timeout_wins_on_sagemaker_too() -> None:
    from resnet_serving.torchserve.config import response_timeout

    sagemaker = Settings.from_env({"RESNET_SERVING_SAGEMAKER_MODE": "realtime"})
    assert response_timeout(_serve_args("--response-timeout", "7").response_timeout, sagemaker) == 7

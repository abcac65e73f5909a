"""The four clients this package uses: SageMaker, sagemaker-runtime, Application Auto Scaling, CloudWatch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import NoRegionError

from resnet_serving.errors import InputError


@dataclass
class Clients:
    sm: Any
    runtime: Any
    aas: Any
    cw: Any


def make_clients(endpoint_url: str | None = None, region: str | None = None) -> Clients:
    """Clients against AWS, or against one S3/SageMaker-compatible ``endpoint_url`` (moto in tests).

    botocore's standard retry mode absorbs throttling and 5xx answers (3 tries); the error conversion in
    :mod:`.errors` names whatever is left.
    """
    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=10, read_timeout=70)
    session = boto3.session.Session(region_name=region or None)
    try:
        make = lambda name: session.client(name, endpoint_url=endpoint_url or None, config=config)  # noqa: E731
        return Clients(
            make("sagemaker"), make("sagemaker-runtime"), make("application-autoscaling"), make("cloudwatch")
        )
    except NoRegionError as e:
        raise InputError("no AWS region: pass --region or set AWS_REGION / AWS_DEFAULT_REGION") from e

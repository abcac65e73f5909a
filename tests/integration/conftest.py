"""Fixtures for integration tests: real servers on loopback ports, started once per run."""

from tests.fixtures.moto_server import aws_test_env, moto_s3, s3_bucket, s3_store_uri  # noqa: F401
from tests.fixtures.sagemaker import endpoint_name, sm_store  # noqa: F401
from tests.fixtures.serving import logged_serve  # noqa: F401

"""Flags that several commands share, defined once."""

from __future__ import annotations

import argparse

from resnet_serving.errors import ConfigError
from resnet_serving.settings import ENV_AWS_ENDPOINT_URL, environment


def add_endpoint_url(p: argparse.ArgumentParser) -> None:
    """Every command that touches S3 takes --endpoint-url (default: $AWS_ENDPOINT_URL)."""
    p.add_argument(
        "--endpoint-url",
        default=environment().get(ENV_AWS_ENDPOINT_URL) or None,
        help="S3-compatible endpoint URL (default: $AWS_ENDPOINT_URL, else AWS)",
    )


def auto_or_positive(flag: str, value: str, auto: int) -> int:
    """``auto`` → ``auto``; else a positive integer, or a ConfigError naming the flag."""
    if value == "auto":
        return auto
    try:
        n = int(value)
    except ValueError as e:
        raise ConfigError(f"{flag} {value!r}: expected 'auto' or a positive integer") from e
    if n < 1:
        raise ConfigError(f"{flag} {value!r}: expected 'auto' or a positive integer")
    return n

"""Retries with capped exponential backoff and full jitter, for throttling and transient store errors.

This is the only retry layer for S3: the boto3 client is built with botocore's own retries switched off, so a
throttled request is never retried by two layers multiplying each other's attempts.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from resnet_serving.errors import StoreError

T = TypeVar("T")
log = logging.getLogger(__name__)


def backoff(doublings: int, *, base: float, cap: float) -> float:
    """``base`` doubled ``doublings`` times, at most ``cap``: the one backoff curve (retries, sync, operator)."""
    return float(min(cap, base * 2 ** min(max(doublings, 0), 60)))


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all; before try ``n`` (from 1) wait ``uniform(0, min(max_delay, base_delay*2**n))``."""

    attempts: int = 5
    base_delay: float = 0.25
    max_delay: float = 10.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("RetryPolicy delays must not be negative")

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The waits between tries: ``attempts - 1`` values, each within its capped exponential bound."""
        uniform = (rng or random).uniform
        for n in range(self.attempts - 1):
            yield uniform(0.0, backoff(n, base=self.base_delay, cap=self.max_delay))


NO_RETRY = RetryPolicy(attempts=1)
#: Store retries inside one poll of sync or the operator. Short: both back off between polls themselves.
POLL_RETRY = RetryPolicy(attempts=3, base_delay=0.25, max_delay=2.0)


def call_with_retries(
    fn: Callable[[], T],
    *,
    convert: Callable[[Exception, int], StoreError | None],
    policy: RetryPolicy,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``fn``; a raised exception goes through ``convert(exc, attempt)``.

    ``convert`` returns a typed :class:`StoreError`, or ``None`` for exceptions that are not the store's to
    explain (they propagate unchanged). Transient errors are retried after a backoff; the last one, or any
    permanent one, is raised ``from`` the original exception.
    """
    delays = policy.delays()
    attempt = 1
    while True:
        try:
            return fn()
        except Exception as exc:
            err = convert(exc, attempt)
            if err is None:
                raise
            delay = next(delays, None) if err.transient else None
            if delay is None:
                raise err from exc
            log.warning(
                "%s: %s; retrying in %.2fs (attempt %d of %d)",
                what,
                err.message,
                delay,
                attempt,
                policy.attempts,
            )
            sleep(delay)
            attempt += 1

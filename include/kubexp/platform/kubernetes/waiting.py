"""Bounded polling: every wait on a cluster ends, with a message saying what did not happen."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from kubexp.platform.base import PlatformError

T = TypeVar("T")


def wait_until(check: Callable[[], T | None], *, timeout_s: float, interval_s: float, what: str) -> T:
    """Call `check` until it returns something truthy; PlatformError naming `what` after `timeout_s`.

    The last exception or falsy answer of `check` is kept for the error message.
    """
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while True:
        try:
            result = check()
            if result:
                return result
            last = f"last answer: {result!r}"
        except PlatformError as exc:
            last = f"last error: {exc}"
        if time.monotonic() >= deadline:
            raise PlatformError(f"{what}: not reached within {timeout_s:g} s ({last})")
        time.sleep(interval_s)

"""Background work of a run whose error must not be reported twice."""

from __future__ import annotations

import asyncio
from typing import TypeVar

T = TypeVar("T")


def retrieved(future: asyncio.Future[T]) -> asyncio.Future[T]:
    """`future`, its error marked as seen once it ends: work a stopping run never awaits (closed under it, or
    cancelled) logs no "exception was never retrieved"; whoever awaits it still gets the error."""
    future.add_done_callback(lambda done: done.cancelled() or done.exception())
    return future

"""Loaded by a toolsync child that `python -m benchmarks.run CASE --profile timeline` starts (this folder is on its
PYTHONPATH): when TOOLSYNC_TIMELINE names a file, every statement aiomysql sends and every step of the event loop is
timed, and written there as the child exits (benchmarks/timeline.py reads it). Nothing of the product is changed.

    S <connection> <start> <end> <statement's first 100 characters>
    L <start> <seconds> <task> <toolsync_tui frame the task waits in after the step>
"""

from __future__ import annotations

import atexit
import os
import time
from typing import Any

TARGET = os.environ.get("TOOLSYNC_TIMELINE")
# Frames that every wait goes through: the one named is the caller's, nearer the operation.
PLUMBING = ("timed_connection.py", "gateway.py", "recording.py")


def _install(target: str) -> None:
    import asyncio.events

    import aiomysql.connection

    lines: list[str] = []
    connection = aiomysql.connection.Connection
    query, commit, step = connection.query, connection.commit, asyncio.events.Handle._run

    async def timed_query(self: Any, sql: Any, unbuffered: bool = False) -> Any:
        start = time.perf_counter()
        try:
            return await query(self, sql, unbuffered)
        finally:
            text = sql if isinstance(sql, str) else bytes(sql).decode("utf-8", "replace")
            lines.append(f"S\t{id(self)}\t{start:.6f}\t{time.perf_counter():.6f}\t{' '.join(text[:100].split())}")

    async def timed_commit(self: Any) -> Any:
        start = time.perf_counter()
        try:
            return await commit(self)
        finally:
            lines.append(f"S\t{id(self)}\t{start:.6f}\t{time.perf_counter():.6f}\tCOMMIT")

    def timed_step(self: Any) -> Any:
        start = time.perf_counter()
        try:
            return step(self)
        finally:
            task, where = _task_and_wait(self)
            lines.append(f"L\t{start:.6f}\t{time.perf_counter() - start:.6f}\t{task}\t{where}")

    def write() -> None:
        with open(f"{target}.{os.getpid()}", "w", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")

    connection.query, connection.commit = timed_query, timed_commit
    asyncio.events.Handle._run = timed_step  # type: ignore[method-assign]
    atexit.register(write)


def _task_and_wait(handle: Any) -> tuple[str, str]:
    """The task a loop step ran (its coroutine's name) and where it waits now (innermost toolsync frame)."""
    owner = getattr(handle._callback, "__self__", None)
    if owner is None or not hasattr(owner, "get_coro"):
        return getattr(handle._callback, "__qualname__", "?"), ""
    coroutine = owner.get_coro()
    where, awaited = "", coroutine
    while awaited is not None:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        name = frame.f_code.co_filename if frame is not None else ""
        if frame is not None and "toolsync_tui" in name and not name.endswith(PLUMBING):
            where = f"{name.rsplit('toolsync_tui/', 1)[-1]}:{frame.f_lineno} {frame.f_code.co_name}"
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return getattr(coroutine, "__qualname__", "?"), where


if TARGET:
    _install(TARGET)

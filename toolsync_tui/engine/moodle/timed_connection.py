"""MariaDB connections whose every wait for the server has a deadline.

aiomysql has no read timeout of its own: a server that stops answering (stalled, a frozen VM, a network that drops
packets without a reset) leaves a statement waiting for ever, and the run with it, holding the run lock. Here every
call that waits for the server's answer (a statement and its rows, commit, rollback, ping, the log-in) gets a deadline;
past it the connection is closed and the call fails with NoAnswer: SQLAlchemy takes it for a lost connection (error
2013, so the pool discards the connection) and db_errors.classify for a timeout. (The rows of a server-side cursor,
which toolsync never opens, would be read outside these calls.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiomysql
import pymysql
from pymysql.constants import CR

T = TypeVar("T")


class NoAnswer(pymysql.err.OperationalError):  # type: ignore[misc]
    """The server did not answer a call within its deadline; the connection was closed."""

    def __init__(self, seconds: float, during: str) -> None:
        super().__init__(CR.CR_SERVER_LOST, f"the database did not answer within {seconds:g} s ({during})")
        self.seconds = seconds


class TimedConnection(aiomysql.Connection):  # type: ignore[misc]
    """An aiomysql connection whose calls that wait for the server end after `answer_timeout` seconds (0: never)."""

    def __init__(self, *args: Any, answer_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.answer_timeout = answer_timeout

    async def _answer(self, call: Awaitable[T], during: str, seconds: float | None = None) -> T:
        seconds = self.answer_timeout if seconds is None else seconds
        if not seconds:
            return await call
        deadline = asyncio.timeout(seconds)
        try:
            async with deadline:
                return await call
        except TimeoutError:
            if not deadline.expired():
                raise
            self.close()  # the server may answer later: this connection's exchange is out of step for good
            raise NoAnswer(seconds, during) from None

    # The public calls that send a command and wait for its answer (aiomysql's Cursor goes through query()).
    async def query(self, sql: Any, unbuffered: bool = False) -> Any:
        return await self._answer(super().query(sql, unbuffered), "a statement")

    async def next_result(self) -> Any:
        return await self._answer(super().next_result(), "a statement")

    async def commit(self) -> None:
        await self._answer(super().commit(), "a commit")

    async def rollback(self) -> None:
        await self._answer(super().rollback(), "a rollback")

    async def begin(self) -> None:
        await self._answer(super().begin(), "a transaction's start")

    async def autocommit(self, value: Any) -> None:
        await self._answer(super().autocommit(value), "a session setting")

    async def ping(self, reconnect: bool = True) -> Any:
        return await self._answer(super().ping(reconnect), "a ping")

    async def log_in(self, seconds: float) -> None:
        """Open the connection: the TCP connect, the handshake and the log-in, within `seconds`."""
        await self._answer(self._connect(), "while connecting", seconds)


def timed_creator(
    connect_args: Callable[[], dict[str, Any]], answer_timeout: float, connect_timeout: float
) -> Callable[[], Awaitable[TimedConnection]]:
    """An `async_creator` for create_async_engine: connections made from `connect_args()` (the dialect's own, from
    the URL) whose calls have `answer_timeout` seconds each, the log-in `connect_timeout`."""

    async def create() -> TimedConnection:
        args = connect_args() | {"connect_timeout": connect_timeout}
        conn = TimedConnection(answer_timeout=answer_timeout, **args)
        await conn.log_in(connect_timeout)
        return conn

    return create

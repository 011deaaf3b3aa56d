"""PostgreSQL connections whose every wait for the server has a deadline, and whose failures below the server's
(a stalled, vanished or unreachable server) reach the run as database errors with their class.

The server's statement_timeout stops a statement that runs too long, but a server that stops answering (stalled, a
frozen VM, a network that drops packets without a reset) stops nothing: the call would wait for ever, and the run
with it, holding the run lock. asyncpg's command_timeout gives every call a deadline: the statement_timeout and
GRACE more, so that a live server's own cancellation (SQLSTATE 57014, with its words) comes first. asyncpg raises a
bare TimeoutError for it, and a socket that fails under it (a reset, a refused connect) raises a bare OSError, which
SQLAlchemy passes on unwrapped (it translates asyncpg's own exceptions only): a run would take either for a problem
of its data directory. Here each becomes an OperationalError whose `orig` db_errors.classify reads: NoAnswer
(timed out) or ConnectionFailure (SQLSTATE 08006 lost, 08001 cannot connect); the connection is terminated (its
exchange with the server is out of step for good) and the pool discards it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import URL, event
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi
from sqlalchemy.engine import Dialect, ExceptionContext
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

T = TypeVar("T")

GRACE = 1.0  # seconds past the server's statement_timeout before the client gives up on an answer
CLOSE_WAIT = 0.5  # seconds a closing connection waits for the server to see it off; then it is cut
LOST = "08006"  # connection_failure
CANNOT_CONNECT = "08001"  # sqlclient_unable_to_establish_sqlconnection


class NoAnswer(AsyncAdapt_asyncpg_dbapi.OperationalError):
    """The server did not answer a call within its deadline; the connection was closed."""

    def __init__(self, seconds: float, during: str) -> None:
        super().__init__(f"the database did not answer within {seconds:g} s ({during})")  # type: ignore[no-untyped-call]
        self.seconds = seconds


class ConnectionFailure(AsyncAdapt_asyncpg_dbapi.OperationalError):
    """The connection's socket failed (reset, refused, unreachable): SQLSTATE `state` says which side of a run."""

    def __init__(self, error: OSError, state: str) -> None:
        super().__init__(error.strerror or str(error) or type(error).__name__)  # type: ignore[no-untyped-call]
        self.sqlstate = self.pgcode = state


def answer_timeout(statement_timeout: float) -> float | None:
    """Seconds the client waits for each answer: None (never) when the server's statement_timeout is 0 (never)."""
    return statement_timeout + GRACE if statement_timeout else None


class DeadlineConnection(asyncpg.Connection):  # type: ignore[misc]
    """asyncpg's connection, its closing and its log-in set-up (type codecs) bounded as well."""

    async def close(self, *, timeout: float | None = None) -> None:  # noqa: ASYNC109 - asyncpg's own signature
        # A graceful close waits for the server to drop the connection: a stalled server never does.
        try:
            await super().close(timeout=CLOSE_WAIT if timeout is None else min(timeout, CLOSE_WAIT))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):  # TimeoutError is an OSError
            self.terminate()

    async def set_type_codec(self, *args: Any, **kwargs: Any) -> None:
        # SQLAlchemy sets the JSON codecs on each new connection, outside the calls its error handling sees.
        await self._answered(super().set_type_codec(*args, **kwargs), "while connecting")

    async def _answered(self, call: Awaitable[T], during: str) -> T:
        try:
            return await call
        except OSError as exc:
            self.terminate()
            raise _failure(exc, during, self._config.command_timeout, CANNOT_CONNECT) from None


def deadline_engine(
    url: str | URL, statement_timeout: float, connect_timeout: float, settings: dict[str, str], **pool: Any
) -> AsyncEngine:
    """An asyncpg engine with the server `settings` (statement_timeout among them), each call's answer due within
    answer_timeout(statement_timeout), the log-in within `connect_timeout`."""
    seconds = answer_timeout(statement_timeout)
    connect_args = {
        "timeout": connect_timeout,
        "command_timeout": seconds,
        "server_settings": settings,
        "connection_class": DeadlineConnection,
    }
    engine = create_async_engine(url, connect_args=connect_args, **pool)

    def connect(dialect: Dialect, record: ConnectionPoolEntry, cargs: Any, cparams: Any) -> Any:
        try:
            return dialect.connect(*cargs, **cparams)
        except OSError as exc:  # not a server's refusal (those are asyncpg's, translated): no answer, or no server
            raise _failure(exc, "while connecting", connect_timeout, CANNOT_CONNECT) from None

    def translate(context: ExceptionContext) -> BaseException | None:
        error = context.original_exception
        if not isinstance(error, OSError):
            return None
        held = context.connection
        if held is not None and not held.closed and not held.invalidated:
            driver = held.connection.driver_connection
            if driver is not None:
                driver.terminate()  # the pool's rollback or close must not wait on it
        context.is_disconnect = True
        during = "a statement" if context.statement is not None else "a commit or rollback"
        orig = _failure(error, during, seconds or 0.0, LOST)
        return OperationalError(context.statement, None, orig, hide_parameters=True, connection_invalidated=True)

    event.listen(engine.sync_engine, "do_connect", connect)
    event.listen(engine.sync_engine, "handle_error", translate)
    return engine


def _failure(error: OSError, during: str, seconds: float | None, state: str) -> NoAnswer | ConnectionFailure:
    """What the driver's bare OSError says: no answer in time, or a socket that failed (`state`)."""
    if isinstance(error, TimeoutError | asyncio.TimeoutError):
        return NoAnswer(seconds or 0.0, during)
    return ConnectionFailure(error, state)

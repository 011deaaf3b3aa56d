"""One PHP process of the Moodle bridge: the request on stdin, then JSON lines read from stdout as they come.

Protocol 3: item commands write one line per item as soon as it is done (`{"item": 12, "ok": true, ...}`), and every
command ends with one answer line (`{"ok": true, "done": true, ...}` or `{"ok": false, "error": "..."}`). Anything
else on stdout came from PHP code writing there behind the script's back: tolerated before the answer, and quoted
when no answer comes. stderr is drained as it comes (a restore logs a lot) and its tail quoted in errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OnResult = Callable[[dict[str, Any]], None]  # each item line, as it arrives

STDERR_TAIL = 1500  # characters of PHP's stderr quoted in errors
STDERR_KEPT = 64 * 1024  # bytes of stderr kept while PHP runs (a restore can log megabytes)
STRAY_KEPT = 50  # stdout lines that are not the protocol's, kept to quote and to find hints in
LINE_LIMIT = 16 * 1024 * 1024  # the longest stdout line read (an item line with a course's status lines is far less)
EXIT_GRACE = 10.0  # seconds PHP may take to exit after its answer (shutdown handlers) before it is stopped

# Hints for failures whose raw message does not say what to change.
_HINTS = (
    (
        "Could not open input file",
        "the PHP process cannot read the bridge script: with run_as, that user needs read access to {script}",
    ),
    (
        "a password is required",
        "sudo asks for a password: allow this user to run PHP as {run_as} without one (sudoers NOPASSWD)",
    ),
    ("unknown user", "sudo does not know the user {run_as}: check [bridge] run_as"),
    (
        "Permission denied",
        "permission denied: PHP must run as the user owning the site's files and moodledata "
        "([bridge] run_as, e.g. www-data)",
    ),
)


class BridgeError(Exception):
    """The bridge could not do what was asked; the message names the command and quotes PHP's stderr.

    For item commands, `done` holds the items answered before the failure (id -> None when done, else why not) and
    `items` their lines as PHP wrote them.
    """

    def __init__(
        self, message: str, done: dict[int, str | None] | None = None, items: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.done: dict[int, str | None] = done or {}
        self.items: list[dict[str, Any]] = items or []


@dataclass(frozen=True)
class Launch:
    """How to start PHP, and what the hints in error messages name."""

    argv: list[str]
    script: Path
    run_as: str


@dataclass
class Exchange:
    """What one PHP process answered: its item lines in order, and its final answer."""

    command: str
    items: list[dict[str, Any]] = field(default_factory=list)
    answer: dict[str, Any] | None = None
    stray: deque[str] = field(default_factory=lambda: deque(maxlen=STRAY_KEPT))
    returncode: int | None = None

    def outcomes(self) -> dict[int, str | None]:
        """Item id -> None when done, else why not."""
        return {int(line["item"]): item_error(line) for line in self.items}


def item_error(line: dict[str, Any]) -> str | None:
    return None if line.get("ok") is True else str(line.get("error") or "failed")


async def exchange(
    launch: Launch,
    request: dict[str, Any],
    seconds: float,
    on_result: OnResult | None = None,
    unfinished: str = "",
) -> Exchange:
    """Run PHP on `request` and read its lines until its answer, within `seconds` in all.

    Raises BridgeError when there is no answer or the answer is a failure; its `done` then holds the items answered.
    `unfinished` says what may be half done when PHP is stopped at the limit.
    """
    command = str(request["command"])
    reply = Exchange(command)
    process = await _start(launch, command)
    stderr = asyncio.ensure_future(_tail(process.stderr))
    try:
        try:
            async with asyncio.timeout(seconds):
                await _send(process, request)
                await _read(process, reply, on_result)
                if reply.answer is None:
                    reply.returncode = await process.wait()
        except TimeoutError:
            note = f" ({unfinished}; {len(reply.items)} had answered)" if unfinished else ""
            raise _failure(reply, f"bridge {command}: no answer after {seconds:g} s, PHP stopped{note}") from None
        if reply.answer is not None:
            with contextlib.suppress(TimeoutError):
                reply.returncode = await asyncio.wait_for(process.wait(), EXIT_GRACE)
    finally:
        await _stop(process)
        errors = await _finished(stderr)
    return _checked(launch, reply, errors)


async def _start(launch: Launch, command: str) -> asyncio.subprocess.Process:
    try:
        return await asyncio.create_subprocess_exec(
            *launch.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=LINE_LIMIT,
        )
    except FileNotFoundError:
        what = "sudo (needed for [bridge] run_as)" if launch.run_as else "the PHP command ([bridge] php)"
        raise BridgeError(f"bridge {command}: {launch.argv[0]!r} not found: install or set {what}") from None
    except OSError as exc:
        raise BridgeError(f"bridge {command}: cannot run {launch.argv[0]!r}: {exc.strerror or exc}") from None


async def _send(process: asyncio.subprocess.Process, request: dict[str, Any]) -> None:
    """The request, then end of input; a PHP that exits without reading it is answered for by its output."""
    assert process.stdin is not None
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        process.stdin.write(json.dumps(request).encode())
        await process.stdin.drain()
        process.stdin.close()
        await process.stdin.wait_closed()


async def _read(process: asyncio.subprocess.Process, reply: Exchange, on_result: OnResult | None) -> None:
    """Lines until the answer or the end of stdout; item lines go to `on_result` as they arrive."""
    assert process.stdout is not None
    while True:
        try:
            raw = await process.stdout.readline()
        except ValueError:  # a line longer than LINE_LIMIT: not the script's
            raise _failure(reply, f"bridge {reply.command}: PHP wrote a line over {LINE_LIMIT} bytes") from None
        if not raw:
            return
        text = raw.decode("utf-8", errors="replace").strip()
        line = _protocol_line(text)
        if line is None:
            if text:
                reply.stray.append(text)
        elif "item" in line:
            reply.items.append(line)
            if on_result is not None:
                on_result(line)
        else:
            reply.answer = line
            return


def _protocol_line(text: str) -> dict[str, Any] | None:
    """An item line or an answer line of the protocol, else None."""
    if not text.startswith("{"):
        return None
    try:
        line = json.loads(text)
    except ValueError:
        return None
    if not isinstance(line, dict) or not isinstance(line.get("ok"), bool):
        return None
    if "item" in line and (isinstance(line["item"], bool) or not isinstance(line["item"], int)):
        return None
    return line


def _checked(launch: Launch, reply: Exchange, stderr: bytes) -> Exchange:
    command, code = reply.command, reply.returncode
    if reply.answer is None:
        after = f" after {len(reply.items)} item(s)" if reply.items else ""
        if not reply.stray:
            raise _failure(
                reply,
                f"bridge {command}: the PHP process exited with code {code} and no answer{after}"
                + _note(launch, stderr),
            )
        raise _failure(
            reply,
            f"bridge {command}: the answer is not the bridge's JSON (exit code {code}){after}: "
            f"{reply.stray[-1][:200]!r}{_note(launch, stderr, chr(10).join(reply.stray))}",
        )
    if not reply.answer["ok"]:
        raise _failure(reply, f"bridge {command}: {reply.answer.get('error') or 'failed'}{_note(launch, stderr)}")
    return reply


def _failure(reply: Exchange, message: str) -> BridgeError:
    return BridgeError(message, reply.outcomes(), list(reply.items))


def _note(launch: Launch, stderr: bytes, stdout: str = "") -> str:
    """A hint when the output says what to fix (php prints some of its own errors on stdout), and stderr's tail."""
    text = stderr.decode("utf-8", errors="replace").strip()
    said = f"{stdout}\n{text}"
    hints = [hint.format(script=launch.script, run_as=launch.run_as) for needle, hint in _HINTS if needle in said]
    note = "".join(f"\n  hint: {hint}" for hint in hints[:1])
    if text:
        tail = text[-STDERR_TAIL:]
        note += "\n  PHP stderr: " + ("..." if len(text) > len(tail) else "") + tail.replace("\n", "\n    ")
    return note


async def _tail(stream: asyncio.StreamReader | None) -> bytes:
    """Read a stream to its end, keeping its last STDERR_KEPT bytes (and whether more came before)."""
    assert stream is not None
    kept = b""
    cut = False
    while chunk := await stream.read(65536):
        kept += chunk
        if len(kept) > STDERR_KEPT:
            kept, cut = kept[-STDERR_KEPT:], True
    return b"..." + kept if cut else kept


async def _finished(stderr: asyncio.Future[bytes]) -> bytes:
    """stderr's tail once PHP has ended (a process that left a child holding the pipe is not waited for)."""
    try:
        return await asyncio.wait_for(asyncio.shield(stderr), 5)
    except TimeoutError:
        stderr.cancel()
        return b""


async def _stop(process: asyncio.subprocess.Process) -> None:
    """End a PHP process still running (timeout, or the caller was cancelled): TERM, which sudo passes on, then KILL."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 5)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()

"""Worker processes that die with the process that started them, kill -9 included.

A pool's worker outlives a killed parent for ever on its own: it waits on a queue whose write end it holds itself,
and a forkserver's workers hold the server's "alive" pipe, so the server never exits either. Password workers hold
plaintext passwords: they must not linger. A lifeline is a pipe only the parent writes to; each worker blocks on its
read end in a thread and exits at its end of file, which the kernel signals when the parent is gone, however it went.

(PR_SET_PDEATHSIG would watch the wrong process: a forkserver worker's parent is the server, not the run.)
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only a pool, which imports multiprocessing itself, uses a lifeline
    from multiprocessing.connection import Connection
    from multiprocessing.context import BaseContext


class Lifeline:
    """The parent's side: pass `reader` to each worker (initargs) and call `hold` there; `close` when the pool is
    shut down."""

    def __init__(self, context: BaseContext) -> None:
        self.reader, self._writer = context.Pipe(duplex=False)

    def close(self) -> None:
        self._writer.close()
        self.reader.close()


def hold(reader: Connection) -> None:
    """In a worker: leave the parent's process group and exit when the parent is gone.

    Its own group: Ctrl-C's SIGINT and `timeout`'s SIGTERM go to the whole foreground group, and a worker they kill
    mid-batch breaks the pool under a run that is stopping cleanly; the run decides, and its death ends the worker.
    """
    os.setpgid(0, 0)
    threading.Thread(target=_watch, args=(reader,), name="lifeline", daemon=True).start()


def _watch(reader: Connection) -> None:
    with contextlib.suppress(EOFError, OSError):
        reader.recv_bytes()  # nothing is ever sent: this returns only at the end of the pipe
    os._exit(1)

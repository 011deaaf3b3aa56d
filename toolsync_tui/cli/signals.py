"""SIGINT (Ctrl-C) and SIGTERM (cron's `timeout`, a service stop) in a headless command: the run in progress stops
after its batch, reports what it did and exits with 128 + the signal's number; a second signal stops it at once."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from toolsync_tui.cli.output import complain
from toolsync_tui.engine.run.exits import signal_exit
from toolsync_tui.engine.run.interrupt import INTERRUPTION, Interruption, Stop

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_on_signals() -> Iterator[Interruption]:
    """Within a running event loop's main task: the interruption every run started inside sees (interrupt.py)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    interruption = Interruption()

    def received(number: int) -> None:
        name = signal.Signals(number).name
        if interruption.is_set():
            complain(f"{name} again: stopping at once, the batch in progress is rolled back")
            if task is not None:
                task.cancel()
            return
        complain(f"{name}: stopping after the batch in progress ({name} again stops at once)")
        interruption.interrupt(Stop(name, signal_exit(number)))

    token = INTERRUPTION.set(interruption)
    for number in SIGNALS:
        loop.add_signal_handler(number, received, number)
    try:
        yield interruption
    finally:
        for number in SIGNALS:
            loop.remove_signal_handler(number)
        INTERRUPTION.reset(token)

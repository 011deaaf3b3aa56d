"""How often a run's threads take turns with the GIL.

A run's event loop shares the GIL with its helper threads: the journal's (hashing a batch's digests, writing the
journal and the ledger) and the command file's reader. When the loop's statement answer arrives while such a thread
holds the GIL, the loop waits for the thread's slice to end: Python's default slice of 5 ms, several times a batch,
while the database idles. A shorter slice gives the loop back its turn sooner, at the cost of a few more switches.
"""

from __future__ import annotations

import sys

RUN_SWITCH_INTERVAL = 0.0005  # seconds (Python's default: 0.005)


def switch_often() -> None:
    """Shorten the GIL's slice for the rest of the process (never lengthened: a shorter one set by its host stays)."""
    if sys.getswitchinterval() > RUN_SWITCH_INTERVAL:
        sys.setswitchinterval(RUN_SWITCH_INTERVAL)

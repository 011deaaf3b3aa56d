"""A run's exit codes, the same for the command line, the run log, cron and the command-line tools."""

from typing import Final

EXIT_OK: Final = 0  # every row succeeded
EXIT_ROWS_FAILED: Final = 1  # some rows failed (see the report and the tryback), or the run was cancelled
EXIT_CANNOT_RUN: Final = 2  # file, header, configuration, database or data directory problem (a full disk too)
EXIT_SAFETY: Final = 3  # stopped by the safety threshold or a source guard; nothing was written
EXIT_HELD: Final = 4  # stopped by a threshold or a source guard and held for approval (`toolsync held`)
# Stopped by a signal after the batch in progress: 128 + the signal's number, as a shell reports a command a signal
# ended, so that cron, `timeout` and scripts read it alike. 130: SIGINT (Ctrl-C), 143: SIGTERM.
EXIT_SIGNAL_BASE: Final = 128
EXIT_INTERRUPTED: Final = 130  # SIGINT
EXIT_TERMINATED: Final = 143  # SIGTERM
# In the run log only: a run that ended without its last line (kill -9, a crash, a power cut), as the next run or
# the interface found it (128 + SIGKILL's 9).
EXIT_KILLED: Final = 137


def signal_exit(signum: int) -> int:
    """The exit code of a run a signal stopped."""
    return EXIT_SIGNAL_BASE + signum

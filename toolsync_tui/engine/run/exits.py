"""A run's exit codes, the same for the command line, the run log, cron and the command-line tools."""

from typing import Final

EXIT_OK: Final = 0  # every row succeeded
EXIT_ROWS_FAILED: Final = 1  # some rows failed (see the report and the tryback), or the run was cancelled
EXIT_CANNOT_RUN: Final = 2  # file, header, configuration or database problem
EXIT_SAFETY: Final = 3  # stopped by the safety threshold; nothing was written

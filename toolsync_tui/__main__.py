"""`toolsync` and `python -m toolsync_tui`: the command line, as cron calls it every few minutes
(engine/unattended/crontab.py).

Without the garbage collector's passes over what start-up loads: importing makes about a million objects and no
garbage, yet the collector walks them again and again while they load, and once more at exit; a third of a small
run's CPU. Frozen once loaded (gc.freeze), they are skipped by the run's collections and by the one at exit.
"""

import gc
import sys

from toolsync_tui import headstart


def main() -> int:
    gc.disable()
    headstart.begin(sys.argv[1:])  # a users run's passwords start hashing while the rest loads
    try:
        from toolsync_tui.cli import main as command_line  # imported with the collector off

        gc.freeze()
        gc.enable()
        code = command_line()
    finally:
        headstart.end()
    gc.freeze()  # what the run leaves is freed as the interpreter ends, without a last walk over it all
    return code


if __name__ == "__main__":
    sys.exit(main())

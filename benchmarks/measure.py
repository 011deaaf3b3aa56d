"""Run a command and write its wall time, exit code and peak RSS as JSON: `measure.py OUT.json -- CMD...`.

Why a separate small process: Linux's ru_maxrss of a child also counts the memory of the process it
was forked from (exec records the old address space's high-water mark), so a child started by the
harness, which holds generated files and parsed reports, would inherit the harness's peak. Started
from this launcher, which holds nothing, the figure is the command's own. Standard library only; run
by path, not as a module, so that nothing is imported before the command starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: measure.py OUT.json -- COMMAND [ARG ...]", file=sys.stderr)
        return 2
    out, command = argv[0], argv[2:]
    clock = time.perf_counter()
    child = subprocess.Popen(command)
    with open(f"{out}.pid", "w") as pid_file:  # for the harness's RSS sampler
        pid_file.write(str(child.pid))
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - clock
    child.returncode = code = os.waitstatus_to_exitcode(status)
    with open(out, "w") as result:
        cpu = usage.ru_utime + usage.ru_stime  # the command's CPU seconds (and its reaped descendants')
        json.dump({"wall": wall, "exit_code": code, "maxrss_kb": usage.ru_maxrss, "cpu": cpu}, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Run one command; write its wall time, CPU time, peak RSS and exit status as JSON.

Usage: `python -I -S _child.py REPORT.json -- COMMAND...` (stdlib only, so it starts small).

Why a separate wrapper: on Linux a child's `ru_maxrss` starts at the high-water mark of the
memory it was forked from (exec records the old mm's peak), so a child spawned straight from
the benchmark process would inherit the benchmark's own RSS. Forked from this small
interpreter instead, the figure is the command's own peak. `os.wait4` gives the rusage of
exactly this child, which is `getrusage(RUSAGE_CHILDREN)` of the wrapper.
"""

import json
import os
import sys
import time


def main() -> int:
    report, sep, *command = sys.argv[1:]
    if sep != "--" or not command:
        print("usage: _child.py REPORT.json -- COMMAND...", file=sys.stderr)
        return 2
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(command[0], command)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    with open(report, "w") as f:
        json.dump(
            {
                "wall_s": wall,
                "user_s": usage.ru_utime,
                "sys_s": usage.ru_stime,
                "maxrss_kib": usage.ru_maxrss,
                "exit_code": os.waitstatus_to_exitcode(status),
            },
            f,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

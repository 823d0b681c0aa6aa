#!/usr/bin/env python3
"""The least any Python daemon can do per check: one process, one timer, the check spawned and
its output read and parsed, nothing else (no table, no journal, no second process).

rest.py runs it beside keepalived and hadaemon, on the same script at the same rate, to show
how much of hadaemon's cost per check is the interpreter's own and how much is hadaemon's.

    python bench/floor.py SCRIPT COUNTFILE [--checks 10] [--interval 1]
"""

import argparse
import json
import os
import select
import signal
import sys
import time


def run(argv, env):
    """Spawn argv with its stdout on a pipe, read it to its end, reap it; its parsed output."""
    r, w = os.pipe()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=[
        (os.POSIX_SPAWN_DUP2, w, 1), (os.POSIX_SPAWN_CLOSE, r)])
    os.close(w)
    poll = select.poll()  # a daemon waits with a timeout; so does this
    poll.register(r, select.POLLIN)
    out = b""
    while poll.poll(5000):
        chunk = os.read(r, 65536)
        if not chunk:
            break
        out += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("script")
    ap.add_argument("count")
    ap.add_argument("--checks", type=int, default=10)
    ap.add_argument("--interval", type=float, default=1.0)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    env = {"PATH": "/usr/bin:/bin"}
    start = time.monotonic()
    # first runs spread over the interval, as hadaemon's are
    due = [(start + i * a.interval / a.checks, i) for i in range(a.checks)]
    while True:
        when, i = min(due)
        delay = when - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        run([a.script, f"h{i}", a.count], env)
        due[due.index((when, i))] = (when + a.interval, i)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Where the time goes: the supervisor under cProfile with a CPU clock (time.process_time), and
py-spy flame graphs of the supervisor and its workers, under the load of bench/throughput.py
(64 checks back to back) or of bench/rest.py (10 checks at 1 s); or (--load worker) a worker's
part of a check, run_job, profiled in this process.

py-spy cannot tell a process waiting in epoll or recv from one running here, so its graphs show
where each process spends its wall time (waiting included); the cProfile table is CPU only.

    python bench/hotpath.py [--load throughput|rest|worker] [--seconds 20] [--out docs/profiles]
"""

import argparse
import cProfile
import io
import os
import pstats
import signal
import subprocess
import sys
import time

from harness import ROOT, Home, control, cpu
from throughput import CHECKS as BUSY_CHECKS

LOADS = {"throughput": dict(checks=BUSY_CHECKS, interval="10ms"),
         "rest": dict(checks=10, interval="1")}


def supervisor_under_cprofile(argv, out):
    """Run `hadaemon run` in this process with a CPU-time profiler; forked children exit with
    os._exit and never write the profile."""
    from hadaemon.cli import main
    me = os.getpid()
    prof = cProfile.Profile(time.process_time)
    prof.enable()
    try:
        main(argv)  # hadaemon's group runs click with standalone_mode=False itself
    finally:
        prof.disable()
        if os.getpid() == me:
            prof.dump_stats(out)


def worker_run_job(out, n=3000):
    """A worker's part of one check, in this process: hadaemon.worker.run_job back to back."""
    from hadaemon import worker
    home = Home("profile-worker")
    try:
        os.chdir(home.root)  # as a worker does
        job = {"job": 1, "check": "c1", "argv": [str(home.root / "checks/trivial"), "h1"],
               "timeout": 5, "limit": 65536, "host": "h1", "user": ""}
        for _ in range(200):
            worker.run_job(job, str(home.root))
        t0 = time.process_time()
        for _ in range(n):
            worker.run_job(job, str(home.root))
        bare = (time.process_time() - t0) / n
        prof = cProfile.Profile(time.process_time)
        prof.enable()
        for _ in range(n):
            worker.run_job(job, str(home.root))
        prof.disable()
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(25)
        head = (f"$ python bench/hotpath.py --load worker\n{n} runs of worker.run_job on the "
                f"trivial check; {1e6 * bare:.0f} us CPU per run without the profiler\n")
        with open(f"{out}/worker-run_job.txt", "w") as f:
            f.write(head + text.getvalue().replace(str(ROOT) + "/", ""))
        print(head)
    finally:
        os.chdir(ROOT)
        home.remove()


def run(load, seconds, out):
    home = Home("profile")
    stats = f"{out}/{load}-supervisor.prof"
    try:
        spec = LOADS[load]
        home.configure([(f"c{i:03d}", "trivial", f"h{i:03d} {home.count}")
                        for i in range(spec["checks"])],
                       interval=spec["interval"], workers=2, log_level="warning")
        proc = subprocess.Popen([sys.executable, __file__, "--supervisor", stats, "--home",
                                 str(home.root), "run"], cwd=str(ROOT))
        while not os.path.exists(home.root / "var/control.sock"):
            time.sleep(0.1)
        control.request(home.root / "var/control.sock", {"cmd": "ping"})
        time.sleep(2.0)
        n0, c0 = home.counted(), cpu([proc.pid])[0]
        subprocess.run(["py-spy", "record", "--subprocesses", "--pid", str(proc.pid),
                        "--duration", str(int(seconds)), "--rate", "200", "--nonblocking",
                        "--output", f"{out}/{load}.svg"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        n, busy = home.counted() - n0, cpu([proc.pid])[0] - c0
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        text = io.StringIO()
        p = pstats.Stats(stats, stream=text)
        p.sort_stats("tottime").print_stats(30)
        head = (f"$ python bench/hotpath.py --load {load} --seconds {seconds:g}\n"
                f"{n} checks in {seconds:g} s; supervisor CPU (/proc, under cProfile) "
                f"{1e6 * busy / n:.0f} us per check\n")
        with open(f"{out}/{load}-supervisor.txt", "w") as f:
            f.write(head + text.getvalue().replace(str(ROOT) + "/", ""))
        os.unlink(stats)
        print(head)
    finally:
        home.remove()


def main():
    if sys.argv[1:2] == ["--supervisor"]:
        return supervisor_under_cprofile(sys.argv[3:], sys.argv[2])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--load", choices=list(LOADS) + ["worker"], default="throughput")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--out", default=str(ROOT / "docs/profiles"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    if a.load == "worker":
        worker_run_job(a.out)
    else:
        run(a.load, a.seconds, a.out)


if __name__ == "__main__":
    main()

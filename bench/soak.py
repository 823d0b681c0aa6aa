"""Soak: the daemon at a high check rate while workers are SIGKILLed and checks hang.

    python bench/soak.py [--seconds 600] [--hosts 20] [--interval 0.05] [--kill-every 2]

Hosts flip status at random; every transition fires one action that appends its job id to a
log. At the end the script lets the hosts settle and checks the books:
- lost: a committed transition whose action did not run, a job not finished, a break in a host's
  chain of transitions (each must start where the previous ended), or a final committed status
  that differs from what the check reports;
- doubled: a job whose action ran more than once.
Every `--sample` seconds it records the memory (sum of RSS and PSS of the supervisor, runner and
workers), the supervisor's open file descriptors and the zombies among its children.
"""

import argparse
import collections
import os
import random
import signal
import sys
import time

from harness import Daemon, Home, _stat, children, print_table, pss_kib, rss_kib

CHECK = """\
#!/bin/sh
# Reports every host given; one run in 50 hangs past the timeout, to be killed.
[ "$(od -An -N1 -tu1 /dev/urandom)" -lt 5 ] && sleep 30
out=""
for h in "$@"; do
  read s < "$HA_HOME/status/$h"
  out="$out{\\"host\\": \\"$h\\", \\"status\\": \\"$s\\"},"
done
echo "[${out%,}]"
"""

ACTION = """\
#!/bin/sh
echo "$HA_JOB $HA_HOST $HA_FROM $HA_TO" >> "$HA_HOME/var/fired.log"
"""


def write_status(home, host, status):
    tmp = home.root / "status" / f".{host}"
    tmp.write_text(status + "\n")
    tmp.rename(home.root / "status" / host)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--checks", type=int, default=4, help="checks, each reporting some hosts")
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--kill-every", type=float, default=2.0, help="seconds between worker kills")
    ap.add_argument("--flip-every", type=float, default=0.05, help="seconds between flips")
    ap.add_argument("--sample", type=float, default=30.0)
    args = ap.parse_args()
    command = "python bench/soak.py " + " ".join(sys.argv[1:])

    home = Home("soak")
    (home.root / "status").mkdir()
    home.script("hosts", CHECK)
    home.script("fire", ACTION, kind="actions")
    hosts = [f"h{i}" for i in range(args.hosts)]
    for h in hosts:
        write_status(home, h, "up")
    groups = [hosts[i::args.checks] for i in range(args.checks)]
    home.configure([(f"c{i}", "hosts", " ".join(g), {"timeout": 0.5})
                    for i, g in enumerate(groups)],
                   actions="[*_to_*]\nfire\n", interval=args.interval, workers=4, max_jobs=200)
    rng = random.Random(1)
    samples, kills, flips = [], 0, 0
    with Daemon(home) as d:
        start = time.monotonic()
        next_kill = next_sample = start
        while time.monotonic() - start < args.seconds:
            now = time.monotonic()
            write_status(home, rng.choice(hosts), rng.choice(["up", "down", "slave", "master"]))
            flips += 1
            if now >= next_kill:
                workers = [p for p in children(d.proc.pid) if _is_worker(p)]
                if workers:
                    os.kill(rng.choice(workers), signal.SIGKILL)
                    kills += 1
                next_kill = now + args.kill_every
            if now >= next_sample:
                samples.append(_sample(d, now - start))
                next_sample = now + args.sample
            time.sleep(args.flip_every)
        samples.append(_sample(d, time.monotonic() - start))
        # Settle: no more flips; wait until the committed table matches the files.
        want = {h: (home.root / "status" / h).read_text().strip() for h in hosts}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = _committed(home)
            jobs_open = home.journal("SELECT count(*) FROM jobs WHERE state IN "
                                     "('queued', 'running')")[0][0]
            if got == want and not jobs_open:
                break
            time.sleep(0.5)
    lost, doubled, transitions = _books(home, want)
    rows = [(f"{s['t']:.0f}", s["rss"], s["pss"], s["fds"], s["zombies"], s["procs"])
            for s in samples]
    print_table(f"Soak: {args.hosts} hosts, {args.checks} checks every {args.interval}s, "
                f"a worker SIGKILLed every {args.kill_every}s, 1 run in 50 hangs",
                ["seconds", "RSS KiB", "PSS KiB", "fds", "zombies", "processes"], rows, command)
    print(f"\n{transitions} transitions committed, {flips} flips, {kills} workers killed; "
          f"lost: {lost}, doubled: {doubled}")
    first, last = samples[1] if len(samples) > 2 else samples[0], samples[-1]
    print(f"RSS {first['rss']} -> {last['rss']} KiB, fds {first['fds']} -> {last['fds']}, "
          f"zombies at the end: {last['zombies']}")
    home.remove()
    return 1 if lost or doubled else 0


def _is_worker(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"hadaemon.runner" not in f.read()
    except OSError:
        return False


def _sample(d, t):
    pids = d.pids()
    zombies = sum(1 for p in children(d.proc.pid) if (_stat(p) or ["?"])[0] == "Z")
    return {"t": t, "rss": rss_kib(pids), "pss": pss_kib(pids),
            "fds": len(os.listdir(f"/proc/{d.proc.pid}/fd")), "zombies": zombies,
            "procs": len(pids)}


def _committed(home):
    import pickle
    rows = home.journal("SELECT key, value FROM hosts")
    return {k.decode(): pickle.loads(v)["status"] for k, v in rows}


def _books(home, final):
    jobs = home.journal("SELECT id, host, source, target, state FROM jobs ORDER BY id")
    fired = collections.Counter(int(line.split()[0]) for line in
                                (home.root / "var/fired.log").read_text().splitlines())
    lost, doubled, last = [], [], {}
    for job_id, host, source, target, state in jobs:
        if last.get(host, "unknown") != source:
            lost.append(f"#{job_id} {host}: {source} -> {target} follows {last.get(host)}")
        last[host] = target
        if state != "done" or fired[job_id] == 0:
            lost.append(f"#{job_id} {host}: {source} -> {target} {state}, fired {fired[job_id]}x")
        if fired[job_id] > 1:
            doubled.append(f"#{job_id} {host}: {source} -> {target} fired {fired[job_id]}x")
    lost += [f"{h}: committed {last.get(h)}, checks say {s}" for h, s in final.items()
             if last.get(h) != s]
    for line in (lost + doubled)[:20]:
        print(line, file=sys.stderr)
    return len(lost), len(doubled), len(jobs)


if __name__ == "__main__":
    sys.exit(main())

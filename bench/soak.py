"""Soak: the daemon at a high check rate while workers are SIGKILLed and checks hang, through
phases of a machine's limits: no file descriptors, a full var/, frozen workers.

    python bench/soak.py [--seconds 600] [--hosts 20] [--interval 0.05] [--kill-every 2]
                         [--phases calm,fd-limit,calm,full-var,calm,sigstop] [--phase-seconds 30]

Hosts flip status at random; every transition fires one action that appends its job id to a
log. At the end the script lets the hosts settle and checks the books:
- lost: a committed transition whose action did not run, a job not finished, a break in a host's
  chain of transitions (each must start where the previous ended), or a final committed status
  that differs from what the check reports;
- doubled: a job whose action ran more than once.
The phases repeat in turn for the whole run:
- calm: only the kills and hangs above;
- fd-limit: the supervisor's RLIMIT_NOFILE is lowered to the descriptors it has open (prlimit),
  so no worker, runner or control client can be replaced until the phase ends;
- full-var: var/ (a 64 MiB tmpfs mounted for the run) is filled with a file, removed at the end;
- sigstop: a random worker is SIGSTOPped every 3 s and left frozen (SIGCONT at the phase's end).
Each host's results are followed through the control socket every 0.25 s: the table reports, per
phase, the longest gap between two results of a host and how long after the phase ended every
host had a fresh result again.
Every `--sample` seconds it also records the memory (sum of RSS and PSS of the supervisor, runner and
workers), the supervisor's open file descriptors and the zombies among its children.
"""

import argparse
import collections
import os
import random
import resource
import signal
import subprocess
import sys
import time

from harness import Daemon, Home, _stat, children, control, print_table, pss_kib, rss_kib

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

# Outside var/, which a phase fills.
ACTION = """\
#!/bin/sh
echo "$HA_JOB $HA_HOST $HA_FROM $HA_TO" >> "$HA_HOME/fired.log"
"""
SAMPLE_EVERY = 0.25  # seconds between two looks at every host's last result
TIMEOUT = 0.5  # the checks' timeout


def stale_limit(interval):
    """The daemon's rule (stale.py): two intervals plus the timeout without a result."""
    return 2 * interval + TIMEOUT


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
    ap.add_argument("--phases", default="calm,fd-limit,calm,full-var,calm,sigstop",
                    help=f"comma-separated, repeated in turn: {', '.join(FAULTS)} or calm")
    ap.add_argument("--phase-seconds", type=float, default=30.0)
    args = ap.parse_args()
    command = "python bench/soak.py " + " ".join(sys.argv[1:])
    phases = args.phases.split(",")
    if not set(phases) <= {"calm", *FAULTS}:
        ap.error(f"--phases: unknown phase in {args.phases}")

    home = Home("soak")
    tmpfs = "full-var" in phases and _mount_tmpfs(home.root / "var")
    if "full-var" in phases and not tmpfs:
        print("full-var skipped: cannot mount a tmpfs on var/ (not root?)", file=sys.stderr)
        phases = [p for p in phases if p != "full-var"]
    (home.root / "status").mkdir()
    home.script("hosts", CHECK)
    home.script("fire", ACTION, kind="actions")
    hosts = [f"h{i}" for i in range(args.hosts)]
    for h in hosts:
        write_status(home, h, "up")
    groups = [hosts[i::args.checks] for i in range(args.checks)]
    home.configure([(f"c{i}", "hosts", " ".join(g), {"timeout": TIMEOUT})
                    for i, g in enumerate(groups)],
                   actions="[*_to_*]\nfire\n", interval=args.interval, workers=4, max_jobs=200,
                   keep_jobs=10**8)  # the audit reads every job: none may be pruned
    rng = random.Random(1)
    samples, kills, flips = [], 0, 0
    with Daemon(home, log=home.root / "daemon.log") as d:
        watch = Freshness(home, hosts, stale_limit(args.interval))
        start = time.monotonic()
        next_kill = next_sample = next_look = start
        fault, phase_no = None, -1
        while time.monotonic() - start < args.seconds:
            now = time.monotonic()
            if int((now - start) // args.phase_seconds) != phase_no:
                if fault:
                    fault.end()
                phase_no = int((now - start) // args.phase_seconds)
                name = phases[phase_no % len(phases)]
                watch.begin(name)
                fault = FAULTS[name](d, home, rng) if name in FAULTS else None
            if fault:
                fault.tick(now)
            write_status(home, rng.choice(hosts), rng.choice(["up", "down", "slave", "master"]))
            flips += 1
            if now >= next_kill:
                workers = [p for p in children(d.proc.pid) if _is_worker(p)]
                if workers:
                    os.kill(rng.choice(workers), signal.SIGKILL)
                    kills += 1
                next_kill = now + args.kill_every
            if now >= next_look:
                watch.look()
                next_look = now + SAMPLE_EVERY
            if now >= next_sample:
                samples.append(_sample(d, now - start))
                next_sample = now + args.sample
            time.sleep(args.flip_every)
        if fault:
            fault.end()
        watch.begin("settle")
        samples.append(_sample(d, time.monotonic() - start))
        # Settle: no more flips; wait until the committed table matches the files.
        want = {h: (home.root / "status" / h).read_text().strip() for h in hosts}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = _committed(home)
            jobs_open = home.journal("SELECT count(*) FROM jobs WHERE state IN "
                                     "('queued', 'running')")[0][0]
            watch.look()
            if got == want and not jobs_open:
                break
            time.sleep(0.5)
        watch.look()
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
    stale_after = stale_limit(args.interval)
    print_table(f"Freshness by phase ({args.phase_seconds:g} s each; a host is stale after "
                f"{stale_after:g} s without a result)",
                ["phase", "times", "longest gap between results s", "fresh again after s"],
                watch.table(), command)
    if tmpfs:
        subprocess.run(["umount", "-l", str(home.root / "var")])
    home.remove()
    return 1 if lost or doubled else 0


class Freshness:
    """Each host's newest result, looked at through the control socket; per phase, the longest
    gap between two results and how long after the phase every host had a fresh one."""

    def __init__(self, home, hosts, stale_after):
        self.socket, self.hosts = home.root / "var/control.sock", hosts
        self.stale_after = stale_after
        self.seen = {}  # host -> wall time of its newest result
        self.gaps = collections.defaultdict(float)  # phase -> longest gap
        self.recovery = collections.defaultdict(float)  # phase -> longest time to all fresh
        self.count = collections.Counter()
        self.phase, self.waiting = None, []  # waiting: (phase, when it ended), not yet recovered
        self.starts = []  # (wall time, phase) of every phase begun

    def begin(self, name):
        # A phase is recovered from once every host has a result newer than its end.
        now = time.time()
        if self.phase:
            self.waiting.append((self.phase, now))
        self.phase = name
        self.starts.append((now, name))
        self.count[name] += 1

    def _phase_at(self, when):
        return next((name for start, name in reversed(self.starts) if start <= when),
                    self.starts[0][1])

    def look(self):
        try:
            hosts = control.request(self.socket, {"cmd": "status"}, 2)["hosts"]
        except (control.ControlError, OSError, KeyError):
            return  # no descriptor for us either: the next look catches up
        now = time.time()
        for h in self.hosts:
            t = hosts.get(h, {}).get("last_seen")
            if t is None:
                continue
            # A gap belongs to the phase in which the host went stale (its last result plus
            # the stale limit): what a phase did not cause, it is not charged with.
            before = self.seen.get(h, t)
            gap = max(t - before, now - t)
            phase = self._phase_at((before if t - before >= now - t else t) + self.stale_after)
            self.gaps[phase] = max(self.gaps[phase], gap)
            self.seen[h] = t
        for phase, ended in list(self.waiting):
            if all(self.seen.get(h, 0) > ended for h in self.hosts):
                self.recovery[phase] = max(self.recovery[phase], now - ended)
                self.waiting.remove((phase, ended))

    def table(self):
        return [(name, self.count[name], round(self.gaps[name], 2),
                 round(self.recovery[name], 2) if name in self.recovery else "-")
                for name in self.count if name != "settle"]


class FdLimit:
    """The supervisor may open nothing more: its limit is what it has open now."""

    def __init__(self, d, home, rng):
        self.pid = d.proc.pid
        self.before = resource.prlimit(self.pid, resource.RLIMIT_NOFILE)
        held = len(os.listdir(f"/proc/{self.pid}/fd"))
        resource.prlimit(self.pid, resource.RLIMIT_NOFILE, (held, self.before[1]))

    def tick(self, now):
        pass

    def end(self):
        resource.prlimit(self.pid, resource.RLIMIT_NOFILE, self.before)


class FullVar:
    """var/ full: a file takes every free block of its tmpfs until the phase ends."""

    def __init__(self, d, home, rng):
        self.filler = home.root / "var/filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={self.filler}", "bs=64k"],
                       capture_output=True)

    def tick(self, now):
        pass

    def end(self):
        self.filler.unlink(missing_ok=True)


class Freeze:
    """Every 3 s a random worker is SIGSTOPped and left so: only the daemon can get it out."""

    def __init__(self, d, home, rng):
        self.d, self.rng, self.next, self.frozen = d, rng, 0.0, []

    def tick(self, now):
        if now < self.next:
            return
        workers = [p for p in children(self.d.proc.pid) if _is_worker(p)]
        if workers:
            pid = self.rng.choice(workers)
            os.kill(pid, signal.SIGSTOP)
            self.frozen.append(pid)
        self.next = now + 3.0

    def end(self):
        for pid in self.frozen:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


FAULTS = {"fd-limit": FdLimit, "full-var": FullVar, "sigstop": Freeze}


def _mount_tmpfs(path):
    return subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


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
                                (home.root / "fired.log").read_text().splitlines())
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

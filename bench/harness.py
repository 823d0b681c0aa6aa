"""What every benchmark shares: a throw-away home, the real daemon as a process, the checks,
/proc accounting and the printed table.

Benchmarks run the daemon exactly as a user does (`python -m hadaemon run`) and measure it from
outside: check executions are counted by the check itself (one byte appended per run), CPU and
memory come from /proc, reaction times from the journal the daemon keeps anyway.
"""

import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from hadaemon import control  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
# CPU is read per process from /proc: a worker recycled inside the window would take its time
# along into the supervisor's children time, mixed with its checks'.
NO_RECYCLING = 10**6

# The trivial check: one JSON result; with a second argument it also appends one byte to that
# file, so runs are counted without asking the daemon (printf and >> are dash builtins: no fork).
TRIVIAL = """\
#!/bin/sh
[ -n "$2" ] && printf x >> "$2"
echo "{\\"host\\": \\"$1\\", \\"status\\": \\"up\\"}"
"""

# A check that reports the opposite of its last result each run, so every run is a transition,
# once its state file exists; until then it says up.
FLIP = """\
#!/bin/sh
s=up
if [ -e "$2" ]; then
  read s < "$2"
  if [ "$s" = up ]; then s=down; else s=up; fi
  echo $s > "$2"
fi
echo "{\\"host\\": \\"$1\\", \\"status\\": \\"$s\\"}"
"""

# Scheduling needs the moment a check starts on CLOCK_MONOTONIC, which no shell builtin gives:
# a few lines of C, appending "NAME SECONDS" to a log with one O_APPEND write.
STAMP_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char line[256];
    int n = snprintf(line, sizeof line, "%s %ld.%09ld\n", argv[1], (long)ts.tv_sec, ts.tv_nsec);
    int fd = open(argv[2], O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd >= 0) { write(fd, line, n); close(fd); }
    printf("{\"host\": \"%s\", \"status\": \"up\"}\n", argv[1]);
    return 0;
}
"""


def machine():
    """The line every table is printed under: commit, cores, Python, kernel."""
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "hadaemon"],
                               capture_output=True, text=True).stdout.strip()
    except OSError:
        commit, dirty = "?", ""
    # The load average says how much else ran on the machine meanwhile.
    return (f"commit {commit}{'+dirty' if dirty else ''}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, Linux {platform.release()}, "
            f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


def print_table(title, headers, rows, command):
    print(f"\n{title}\n{machine()}\n$ {command.rstrip()}\n")
    cells = [headers] + [[cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [all(isinstance(row[i], (int, float)) for row in rows) for i in range(len(headers))]
    for n, r in enumerate(cells):
        print("| " + " | ".join(c.rjust(w) if num else c.ljust(w)
                                for c, w, num in zip(r, widths, numeric)) + " |")
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    sys.stdout.flush()


def cell(v):
    """A figure as the tables print it: 3 significant digits, whole numbers from 100 on."""
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


def ms_summary(seconds):
    """n, p50, p99 and max in ms of a non-empty list of durations in seconds."""
    ms = [1000 * x for x in seconds]
    return dict(n=len(ms), p50=percentile(ms, 50), p99=percentile(ms, 99), max=max(ms))


class Home:
    """A temporary hadaemon home on disk (not tmpfs: fsync must cost what it costs)."""

    def __init__(self, name):
        self.root = Path(tempfile.mkdtemp(prefix=f"hadaemon-bench-{name}-", dir="/var/tmp"))
        for d in ("etc", "checks", "actions", "var"):
            (self.root / d).mkdir()
        self.script("trivial", TRIVIAL)
        self.script("flip", FLIP)
        self.count = self.root / "count"

    def script(self, name, text, kind="checks"):
        path = self.root / kind / name
        path.write_text(textwrap.dedent(text))
        path.chmod(0o755)
        return path

    def compile_stamp(self):
        src = self.root / "stamp.c"
        src.write_text(STAMP_C)
        out = self.root / "checks" / "stamp"
        subprocess.run(["cc", "-O2", "-o", str(out), str(src)], check=True)
        return out

    def configure(self, checks, actions="", **daemon):
        """checks: [(id, script, args[, {setting: value}])]; daemon: [daemon] settings."""
        settings = dict(log="stderr", **daemon)
        lines = ["[daemon]"] + [f"{k} = {v}" for k, v in settings.items()] + ["", "[local]"]
        lines += [c[0] for c in checks]
        for cid, script, args, *extra in checks:
            lines += ["", f"[check:{cid}]", f"script = {script}", f"args = {args}"]
            lines += [f"{k} = {v}" for k, v in (extra[0] if extra else {}).items()]
        (self.root / "etc/checks.conf").write_text("\n".join(lines) + "\n")
        (self.root / "etc/actions.conf").write_text(actions)

    def counted(self):
        return counted(self.count)

    def journal(self, sql):
        conn = sqlite3.connect(str(self.root / "var/state.db"))
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    def remove(self):
        if os.environ.get("BENCH_KEEP"):
            print(f"(kept {self.root})", file=sys.stderr)
        else:
            shutil.rmtree(self.root, ignore_errors=True)


class Daemon:
    """`python -m hadaemon run` on a home; stopped with SIGTERM (SIGKILL if it hangs)."""

    def __init__(self, home, log=None, tree=ROOT, wrapper=(), start_within=60):
        """tree: the checkout whose package runs; wrapper: a command the daemon runs under
        (valgrind), with start_within the seconds it may take to answer."""
        self.home = home
        self.log_path = log or home.root / "var/daemon.log"
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [*wrapper, sys.executable, "-m", "hadaemon", "--home", str(home.root), "run"],
            cwd=str(tree), env=dict(os.environ, PYTHONPATH=str(tree)), stdout=self.log,
            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + start_within
        while not self.ping():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"daemon did not start; see {self.log_path}")
            time.sleep(0.05)

    def ping(self):
        try:
            return control.request(self.home.root / "var/control.sock", {"cmd": "ping"}, 5)["ok"]
        except (control.ControlError, OSError):
            return False

    def pids(self):
        """The supervisor and its live children (workers, runner); not the checks they run."""
        return [self.proc.pid] + children(self.proc.pid)

    def stop(self, within=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(within)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def counted(path):
    """Runs counted in path (one byte per run; none before the first)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def children(pid):
    """Direct children of pid that are not check processes (those are in their own session)."""
    result = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st and int(st[1]) == pid and int(st[3]) != int(entry):
                result.append(int(entry))
    return result


def _stat(pid):
    """Fields of /proc/PID/stat from the state on (index 0 = state, as field 3 of proc(5))."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu(pids):
    """(own, with_children) CPU seconds of pids: utime+stime, and that plus reaped children's.

    Summed over a process tree at two moments, the difference of with_children counts every
    process that lived in between, the short-lived checks included, once.
    A process's own time is read in nanoseconds (schedstat: what the kernel scales utime and
    stime to), since a small C daemon at rest can use less than one clock tick (10 ms) in a
    short window; reaped children's time is only known in ticks.
    """
    own = reaped = 0.0
    for pid in pids:
        st = _stat(pid)
        if st:
            ran = _runtime(pid)
            own += ran if ran is not None else (int(st[11]) + int(st[12])) / TICK
            reaped += (int(st[13]) + int(st[14])) / TICK
    return own, own + reaped


def _runtime(pid):
    """Seconds pid's threads have run, from /proc/PID/task/*/schedstat; None if unknown."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    total = 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            continue  # a thread that ended meanwhile
        except (OSError, ValueError, IndexError):
            return None
    return total / 1e9


def pss_kib(pids):
    return _kib(pids, "smaps_rollup", "Pss:")


def rss_kib(pids):
    return _kib(pids, "status", "VmRSS:")


def _kib(pids, name, field):
    """The sum of one kB field of /proc/PID/NAME over pids (gone ones count 0)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/{name}") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith(field))
        except (OSError, StopIteration):
            pass
    return total


def spawn_loop(argv, env, seconds):
    """Spawn argv back to back for `seconds`, reading its stdout as a worker would; count runs."""
    count, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        r, w = os.pipe()
        pid = os.posix_spawn(argv[0], argv, env, file_actions=[
            (os.POSIX_SPAWN_DUP2, w, 1), (os.POSIX_SPAWN_CLOSE, r)])
        os.close(w)
        while os.read(r, 65536):
            pass
        os.close(r)
        os.waitpid(pid, 0)
        count += 1
    return count


def parallel_spawn_loops(n, argv, env, seconds):
    """n bare loops in n processes at once (as n workers would run): total runs per second."""
    read_ends, pids = [], []
    for _ in range(n):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            os.write(w, str(spawn_loop(argv, env, seconds)).encode())
            os._exit(0)
        os.close(w)
        read_ends.append(r)
        pids.append(pid)
    total = 0
    for r, pid in zip(read_ends, pids):
        total += int(os.read(r, 64) or 0)
        os.close(r)
        os.waitpid(pid, 0)
    return total / seconds

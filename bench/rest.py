#!/usr/bin/env python3
"""Cost at rest: CPU seconds per 1000 checks and memory (sum of PSS over the daemon's processes)
with 10 checks at a 1 s interval, hadaemon against keepalived running the same script as 10
vrrp_scripts at the same interval, both measured over the same window of the same run.

keepalived (Debian's package; VRRP only) runs in a network namespace of its own with a dummy
interface, its own config and pid files in a temporary directory; nothing leaves the namespace.
Both count their checks the same way: the script appends one byte to a file per run.
CPU is taken from /proc: 'daemon' is the daemon processes' own time, 'with checks' adds the
time of the checks they ran and reaped.

With --http the daemon also serves its HTTP endpoint ([http], on a free local port) and is
scraped once every SCRAPE_EVERY seconds, as Prometheus would: its row then counts the HTTP
server's process too, shown apart below it as the supervisor's share is, and the scrapes are
counted under the table.

    python bench/rest.py [--seconds 60] [--http]  (as root: ip netns)
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from harness import NO_RECYCLING, Daemon, Home, children, counted, cpu, print_table, pss_kib

CHECKS = 10
WARMUP = 5.0
SCRAPE_EVERY = 15.0  # Prometheus' default scrape_interval


def keepalived_conf(home, count):
    lines = ["global_defs {", "    script_user root", "    router_id hadaemon_bench", "}"]
    for i in range(CHECKS):
        lines += [f"vrrp_script s{i} {{",
                  f'    script "{home.root}/checks/trivial k{i} {count}"',
                  "    interval 1", "    timeout 5", "}"]
    lines += ["vrrp_instance bench {", "    state BACKUP", "    interface hb0",
              "    virtual_router_id 51", "    priority 100", "    advert_int 1",
              "    virtual_ipaddress {", "        192.0.2.1/32", "    }", "    track_script {"]
    lines += [f"        s{i}" for i in range(CHECKS)] + ["    }", "}"]
    return "\n".join(lines) + "\n"


class Keepalived:
    """keepalived -n in namespace `ns`, files under home; stop() removes both."""

    def __init__(self, home):
        self.ns = f"hadaemon-bench-{os.getpid()}"
        self.home = home
        self.count = home.root / "keepalived.count"
        conf = home.root / "keepalived.conf"
        conf.write_text(keepalived_conf(home, self.count))
        self.proc = None
        self.log = open(home.root / "keepalived.log", "ab")
        ip = ["ip", "-n", self.ns]
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        try:
            # A veth pair with both ends inside the namespace: adverts go nowhere else.
            for argv in (ip + ["link", "set", "lo", "up"],
                         ip + ["link", "add", "hb0", "type", "veth", "peer", "name", "hb1"],
                         ip + ["link", "set", "hb0", "up"], ip + ["link", "set", "hb1", "up"]):
                subprocess.run(argv, check=True)
            self.start(conf)
        except BaseException:
            self.stop()
            raise

    def start(self, conf):
        run = self.home.root
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "keepalived", "--dont-fork", "--log-console",
             "--vrrp", "-f", str(conf), "-p", str(run / "keepalived.pid"),
             "-r", str(run / "vrrp.pid"), "-c", str(run / "checkers.pid"),
             ], stdout=self.log, stderr=subprocess.STDOUT)

    def pids(self):
        return [self.proc.pid] + children(self.proc.pid)

    def counted(self):
        return counted(self.count)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # keepalived takes its vrrp child along
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        subprocess.run(["ip", "netns", "del", self.ns], stderr=subprocess.DEVNULL)


class Floor:
    """bench/floor.py on the same script at the same rate: the least a Python daemon pays."""

    def __init__(self, home):
        self.count = home.root / "floor.count"
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("floor.py")),
                                      str(home.root / "checks/trivial"), str(self.count),
                                      "--checks", str(CHECKS)])

    def counted(self):
        return counted(self.count)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class Scraper(threading.Thread):
    """GET /metrics every SCRAPE_EVERY seconds until stopped; counts the answers."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.done, self.ok, self.failed = threading.Event(), 0, []

    def run(self):
        while not self.done.wait(SCRAPE_EVERY):
            try:
                with urllib.request.urlopen(self.url, timeout=5) as r:
                    r.read()
                self.ok += 1
            except OSError as e:
                self.failed.append(f"{time.strftime('%H:%M:%S')} {e}")


def server_pid(pids):
    """The HTTP server among the daemon's processes."""
    for pid in pids:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"hadaemon.httpserver" in f.read():
                return pid
    raise RuntimeError("no HTTP server process")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(seconds, http=False):
    home = Home("rest")
    keepalived = floor = scraper = None
    try:
        home.configure([(f"c{i}", "trivial", f"h{i} {home.count}") for i in range(CHECKS)],
                       interval="1", workers=2, log_level="warning",
                       max_jobs=NO_RECYCLING)
        if http:
            port = free_port()
            with open(home.root / "etc/checks.conf", "a") as f:
                f.write(f"\n[http]\nlisten = 127.0.0.1:{port}\n")
            scraper = Scraper(port)
        keepalived = Keepalived(home)
        floor = Floor(home)
        with Daemon(home) as d:
            time.sleep(WARMUP)
            if scraper:
                scraper.start()
            if keepalived.proc.poll() is not None:
                raise RuntimeError(f"keepalived exited; see {home.root}/keepalived.log")
            who = {"hadaemon": (d.pids, home.counted),
                   "keepalived": (keepalived.pids, keepalived.counted),
                   "Python floor": (lambda: [floor.proc.pid], floor.counted)}
            # Shares of the daemon's row, apart: the loop's, and the HTTP server's.
            who["supervisor"] = (lambda: [d.proc.pid], home.counted)
            if scraper:
                who["HTTP server"] = (lambda pid=server_pid(d.pids()): [pid], home.counted)
            before = {k: (cpu(p()), n()) for k, (p, n) in who.items()}
            time.sleep(seconds / 2)
            memory = {k: (pss_kib(p()), len(p())) for k, (p, n) in who.items()}
            time.sleep(seconds / 2)
            after = {k: (cpu(p()), n()) for k, (p, n) in who.items()}
            if scraper:  # before the daemon stops: a scrape in flight ends first
                scraper.done.set()
                scraper.join()
        result = {"scrapes": (scraper.ok, scraper.failed) if scraper else None}
        for k in who:
            (own0, all0), n0 = before[k]
            (own1, all1), n1 = after[k]
            checks = n1 - n0
            result[k] = dict(checks=checks, own=1000 * (own1 - own0) / checks,
                             total=1000 * (all1 - all0) / checks, pss=memory[k][0] / 1024,
                             procs=memory[k][1])
        return result
    finally:
        if keepalived:
            keepalived.stop()
        if floor:
            floor.stop()
        home.remove()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--http", action="store_true",
                    help=f"serve [http] and scrape /metrics every {SCRAPE_EVERY:g} s")
    a = ap.parse_args()
    # Ctrl-C or a kill still removes the namespace and stops both daemons (finally clauses).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    r = measure(a.seconds, a.http)
    h, k, f = r["hadaemon"], r["keepalived"], r["Python floor"]
    rows = [[name, x["checks"], x["own"], x["total"], x["pss"], x["procs"]]
            for name, x in (("keepalived", k), ("hadaemon", h), ("Python floor", f))]
    rows += [[f"{name} / keepalived", x["checks"] / k["checks"], x["own"] / k["own"],
              x["total"] / k["total"], x["pss"] / k["pss"], ""]
             for name, x in (("hadaemon", h), ("Python floor", f))]
    rows += [[f"  of which {name}", r[name]["checks"], r[name]["own"], "", r[name]["pss"],
              r[name]["procs"]] for name in ("supervisor", "HTTP server") if name in r]
    http = f", [http] on, /metrics every {SCRAPE_EVERY:g} s" if a.http else ""
    print_table(f"Cost at rest: {CHECKS} checks at 1 s, {a.seconds:g} s window{http}",
                ["", "checks run", "daemon CPU s / 1000 checks", "with checks CPU s / 1000",
                 "PSS MiB", "processes"], rows,
                "python bench/rest.py " + " ".join(sys.argv[1:]))
    if r["scrapes"]:
        ok, failed = r["scrapes"]
        print(f"\nscrapes answered: {ok}, failed: {len(failed)}"
              + "".join(f"\n  {f}" for f in failed))


if __name__ == "__main__":
    main()

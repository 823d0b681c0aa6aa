"""The HTTP endpoint ([http]) for real: a daemon serving /metrics and the health endpoints
through a failover, a real HAProxy following them, hostile clients, and the server's child
killed or unable to bind."""

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import committed, new_results, wait_for
from etcdkit import ETCD, Etcd, Node
from ports import free_port, free_ports
from hadaemon.checkstats import LATENESS_BUCKETS
from hadaemon.httpserver import HEAD_TIMEOUT, MAX_AGE

# The documented bound (README, "HTTP endpoint"): while hostile clients hold the endpoint, no
# check starts later than this against its schedule (the lateness histogram's own bucket).
LATE_BOUND = 0.5
assert LATE_BOUND in LATENESS_BUCKETS

ACTIONS = """\
[master_to_down]
-false
record fenced %HOST%

[slave_to_master]
record stopservice1
record plumb %MASTER%
"""


def seed(home, listen, interval="0.2", more=""):
    home.write("checks.conf", f"""\
        [daemon]
        interval = {interval}
        timeout = 5
        workers = 2

        [local]
        status_from_files db1 db2
        {more}

        [http]
        listen = {listen}
        """)
    home.write("actions.conf", ACTIONS)
    home.set_status("db1", "master")
    home.set_status("db2", "slave")


def connect(where, timeout=5.0):
    """A socket to the endpoint: where is a port or a UNIX socket path."""
    if isinstance(where, int):
        s = socket.create_connection(("127.0.0.1", where), timeout=timeout)
    else:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(str(where))
    return s


def read_all(s):
    chunks = []
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def parse_answer(data):
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def get(where, path, method="GET"):
    """(status, body) of one request; None if the endpoint does not answer."""
    try:
        with connect(where) as s:
            s.sendall(f"{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
            return parse_answer(read_all(s))
    except OSError:
        return None


def status_code(where, path):
    answer = get(where, path)
    return answer and answer[0]


def scrape(where):
    """{(name, sorted labels): value} from /metrics, parsed back by prometheus-client."""
    answer = get(where, "/metrics")
    assert answer and answer[0] == 200, answer
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(answer[1].decode()) for s in f.samples}


def host_status(m, host):
    """The status whose gauge is 1 for host: exactly one must be."""
    ones = [dict(k[1])["status"] for k, v in m.items()
            if k[0] == "hadaemon_host_status" and dict(k[1])["host"] == host and v == 1]
    assert len(ones) <= 1, ones
    return ones[0] if ones else None


def status_json(home):
    r = home.cli("status", "--json")
    assert r.returncode in (0, 4), r.stderr
    return json.loads(r.stdout)


def assert_agree(m, status):
    """The metrics say what `hadaemon status --json` says (of a moment with no transition)."""
    for host, e in status["hosts"].items():
        assert host_status(m, host) == e["status"], (host, e)
        assert m[("hadaemon_host_stale", (("host", host),))] == (1 if e["stale"] else 0)
    d = status["daemon"]
    assert m[("hadaemon_workers", ())] == d["workers"]
    assert m[("hadaemon_stale_checks", ())] == len(d["stale"]["checks"])
    assert m[("hadaemon_paused", ())] == (1 if d["paused"] else 0)


def outcomes(history):
    """{job state: count}, {command outcome: count} of history entries."""
    states, commands = {}, {}
    for job in history:
        states[job["state"]] = states.get(job["state"], 0) + 1
        for c in job["commands"]:
            commands[c["outcome"]] = commands.get(c["outcome"], 0) + 1
    return states, commands


def counted(m, name):
    return {dict(k[1])["result"]: v for k, v in m.items() if k[0] == name}


@pytest.mark.parametrize("daemons, kind", [("run", "tcp"), ("start", "unix")],
                         indirect=["daemons"])
def test_metrics_and_health_follow_a_failover(home, daemons, kind):
    where = free_port() if kind == "tcp" else home.root / "var/http.sock"
    home.script("checks", "broken", "#!/bin/sh\necho not JSON\n")  # a failure every run
    seed(home, f"127.0.0.1:{where}" if kind == "tcp" else "var/http.sock", more="broken")
    assert home.cli("check-config").returncode == 0
    d = daemons(home)
    wait_for(lambda: status_code(where, "/hosts/db2/slave") == 200, 30, "db2 slave over HTTP")
    wait_for(lambda: status_code(where, "/hosts/db1/master") == 200, 30, "db1 master")
    assert status_code(where, "/hosts/db1/down") == 503
    assert status_code(where, "/hosts/db2/master") == 503
    assert status_code(where, "/hosts/db3") == 404
    assert status_code(where, "/hosts/db1/mastre") == 404
    assert get(where, "/hosts/db1/master", method="POST")[0] == 405
    answer = get(where, "/hosts/db1")
    assert answer[0] == 200
    assert json.loads(answer[1]) == dict(status_json(home)["hosts"]["db1"], host="db1",
                                         last_seen=json.loads(answer[1])["last_seen"])
    wait_for(lambda: scrape(where)[("hadaemon_transitions_total", (("result", "done"),))] == 2,
             10, "both first transitions counted")
    assert_agree(scrape(where), status_json(home))

    # The failover: db1 goes down (one failing command, carried on), db2 becomes master.
    home.set_status("db1", "down")
    seen = []
    while True:
        m, status = scrape(where), status_json(home)
        seen.append(host_status(m, "db1"))
        if seen[-1] == "down":
            break
        time.sleep(0.02)
        assert len(seen) < 1000, "db1 never down in /metrics"
    # The snapshot is older than the status read after it: the change is there too.
    assert status_json(home)["hosts"]["db1"]["status"] == "down"
    assert set(seen) <= {"master", "down"}, seen
    assert status_code(where, "/hosts/db1/master") == 503
    assert status_code(where, "/hosts/db1/down") == 200
    home.set_status("db2", "master")
    wait_for(lambda: status_code(where, "/hosts/db2/master") == 200, 20, "db2 master over HTTP")
    assert status_code(where, "/hosts/db2/slave") == 503
    assert committed(home, "db2", "master")()
    wait_for(lambda: all(j["state"] not in ("queued", "running") for j in home.history())
             and len(home.history()) == 4, 20, "both sequences ended")
    states, commands = outcomes(home.history())
    assert commands == {"ok": 3, "failed": 1}

    def counts_agree():
        m = scrape(where)
        return (counted(m, "hadaemon_transitions_total"), counted(m, "hadaemon_commands_total")
                ) == (states, commands)
    wait_for(counts_agree, 10, "transitions and commands counted as history has them")
    m, status = scrape(where), status_json(home)
    assert_agree(m, status)
    since = status["hosts"]["db1"]["since"]
    assert 0 <= m[("hadaemon_host_last_change_age_seconds", (("host", "db1"),))] <= \
        time.time() - since
    runs = m[("hadaemon_check_runs_total", (("check", "status_from_files"),))]
    assert runs >= 4 and m[("hadaemon_check_failures_total",
                            (("check", "status_from_files"),))] == 0
    assert m[("hadaemon_check_duration_seconds_count", (("check", "status_from_files"),))] == runs
    broken = m[("hadaemon_check_runs_total", (("check", "broken"),))]
    assert broken >= 2 and m[("hadaemon_check_failures_total", (("check", "broken"),))] == broken

    assert home.cli("pause").returncode == 0
    wait_for(lambda: scrape(where)[("hadaemon_paused", ())] == 1, 10, "paused in /metrics")
    assert_agree(scrape(where), status_json(home))

    if kind == "unix":  # a socket file left by a kill is replaced; a clean stop removes it
        d.kill_all()
        assert where.exists()
        d = daemons(home)
        wait_for(lambda: status_code(where, "/hosts/db2/master") == 200, 30, "served again")
        assert d.stop() == 0 and not where.exists()


def haproxy_config(tmp, port):
    """The README's HAProxy backend: each server is up while its host is master."""
    stats = tmp / "haproxy.sock"
    path = tmp / "haproxy.cfg"
    path.write_text(f"""\
global
    stats socket {stats} mode 600 level admin

defaults
    mode tcp
    timeout connect 1s
    timeout client 30s
    timeout server 30s

backend db_master
    option httpchk
    http-check send meth GET uri-lf /hosts/%[srv_name]/master
    default-server inter 500ms fall 1 rise 1 addr 127.0.0.1 port {port}
    server db1 127.0.0.1:15432 check
    server db2 127.0.0.1:15433 check
""")
    return path, stats


def server_states(stats):
    """{server: UP or DOWN} of backend db_master, from HAProxy's `show stat`."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(stats))
        s.sendall(b"show stat\n")
        lines = read_all(s).decode().splitlines()
    fields = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(fields, line.split(","))) for line in lines[1:] if line]
    return {r["svname"]: r["status"] for r in rows
            if r["pxname"] == "db_master" and r["svname"] != "BACKEND"}


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed "
                    "(Debian: apt-get install haproxy)")
def test_haproxy_follows_the_health_endpoint(home, daemons, tmp_path):
    port = free_port()
    seed(home, f"127.0.0.1:{port}")
    cfg, stats = haproxy_config(tmp_path, port)
    assert subprocess.run(["haproxy", "-c", "-q", "-f", str(cfg)]).returncode == 0
    daemons(home)
    proxy = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: stats.exists(), 10, "haproxy's stats socket")
        wait_for(lambda: server_states(stats) == {"db1": "UP", "db2": "DOWN"}, 30,
                 "db1 UP, db2 DOWN in haproxy")
        home.set_status("db1", "down")
        wait_for(lambda: server_states(stats) == {"db1": "DOWN", "db2": "DOWN"}, 30,
                 "db1 DOWN in haproxy")
        assert committed(home, "db1", "down")()
        home.set_status("db2", "master")
        wait_for(lambda: server_states(stats) == {"db1": "DOWN", "db2": "UP"}, 30,
                 "db2 UP in haproxy")
        assert committed(home, "db2", "master")()
    finally:
        proxy.kill()
        proxy.wait()


def late_runs(home):
    """(runs, runs that started later than LATE_BOUND) of every check, from the daemon's own
    lateness histogram (the control socket's snapshot, what /metrics shows)."""
    checks = home.ask({"cmd": "snapshot"})["checks"]
    runs = sum(c["lateness"]["count"] for c in checks.values())
    within = sum(n for c in checks.values() for le, n in c["lateness"]["buckets"]
                 if le == LATE_BOUND)
    return runs, runs - within


def descriptors(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_hostile_clients_never_delay_checks_and_the_server_recovers(home, daemons):
    port = free_port()
    seed(home, f"127.0.0.1:{port}", interval="0.1")
    d = daemons(home)
    wait_for(lambda: status_code(port, "/hosts/db1/master") == 200, 30, "the endpoint")
    runs_before, late_before = late_runs(home)
    server = home.status()["daemon"]["http"]
    at_rest = descriptors(server)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048:  # this process holds them all
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(2048, hard), hard))
    # A client scraping back to back all along: the supervisor's share of the load (one
    # snapshot a second) is there too, as it would be while Prometheus scrapes.
    scraping, scrapes = threading.Event(), []

    def scrape_all_along():
        while not scraping.is_set():
            scrapes.append(status_code(port, "/metrics"))
    scraper = threading.Thread(target=scrape_all_along)
    scraper.start()
    idle = []  # 1000 connections that never send a byte
    for _ in range(1000):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        idle.append(s)
    slow = connect(port)  # a slowloris: a header line now and then, never the blank line
    slow.sendall(b"GET /metrics HTTP/1.1\r\n")
    big = connect(port)  # a head far over the limit
    big.sendall(b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 65536)
    junk = connect(port)  # garbage bytes
    junk.sendall(os.urandom(2000).replace(b"\r\n\r\n", b"") + b"\r\n\r\n")
    # With all of them connected, a real client is answered: idle ones make room for it.
    assert status_code(port, "/hosts/db1/master") == 200
    assert parse_answer(read_all(big))[0] == 431
    assert parse_answer(read_all(junk))[0] == 400
    slow.settimeout(0.5)
    for _ in range(int(4 * HEAD_TIMEOUT / 0.5)):  # trickles for up to 4 head timeouts
        try:
            slow.sendall(b"X-Slow: 1\r\n")
            if slow.recv(1) == b"":
                break
        except socket.timeout:
            continue
        except OSError:
            break
    else:
        pytest.fail(f"the slowloris client was not dropped in {4 * HEAD_TIMEOUT:g}s")
    # Connections the kernel never handed over (its accept queue was full) stay open on this
    # side only; those the server took it closes within HEAD_TIMEOUT.
    wait_for(lambda: descriptors(server) <= at_rest, 4 * HEAD_TIMEOUT + 10,
             "the server back to its descriptors at rest")
    runs_after, late_after = late_runs(home)
    scraping.set()
    scraper.join()
    for s in idle + [slow, big, junk]:
        s.close()

    # shown for a failed test (with pytest -s: always)
    print(f"hostile phase: {runs_after - runs_before} runs, {late_after - late_before} later "
          f"than {LATE_BOUND}s; {scrapes.count(200)} of {len(scrapes)} scrapes answered")
    assert runs_after - runs_before >= 10, "the checks ran meanwhile"
    assert scrapes.count(200) >= 10, scrapes[:20]
    assert late_after - late_before == 0, (
        f"{late_after - late_before} of {runs_after - runs_before} runs started more than "
        f"{LATE_BOUND}s late while hostile clients were connected")
    assert status_code(port, "/hosts/db1/master") == 200  # recovered
    assert d.alive() and home.answers()

    # However many clients ask, the daemon answers one snapshot a second at most.
    served = home.ask({"cmd": "snapshot"})["served"]
    start = time.monotonic()
    for _ in range(200):
        assert get(port, "/metrics")[0] == 200
    elapsed = time.monotonic() - start
    asked = home.ask({"cmd": "snapshot"})["served"] - served - 1
    assert asked <= elapsed + 1, f"{asked} snapshots in {elapsed:.1f}s for 200 scrapes"

    # A supervisor that stops answering: health checks say 503 once the snapshot is too old,
    # rather than an old status; it answers again once the supervisor does.
    os.kill(d.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: status_code(port, "/hosts/db1/master") == 503, MAX_AGE + 20,
                 "503 while the supervisor is stopped")
    finally:
        os.kill(d.pid, signal.SIGCONT)
    wait_for(lambda: status_code(port, "/hosts/db1/master") == 200, 20, "200 again")


@pytest.mark.parametrize("daemons", ["run", "start"], indirect=True)
def test_the_server_unable_to_bind_or_killed_never_stops_the_daemon(home, daemons):
    port = free_port()
    taken = socket.socket()
    taken.bind(("127.0.0.1", port))
    taken.listen()
    seed(home, f"127.0.0.1:{port}")
    d = daemons(home)
    wait_for(lambda: "Address already in use" in home.log(), 30, "the bind failure logged")
    wait_for(committed(home, "db2", "slave"), 20, "db2 slave")  # the daemon works
    taken.close()
    wait_for(lambda: status_code(port, "/hosts/db2/slave") == 200, 70,
             "served once the port is free (after the child's back-off)")
    pid = home.status()["daemon"]["http"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: home.status()["daemon"]["http"] not in (None, pid), 30, "a new server")
    wait_for(lambda: status_code(port, "/hosts/db2/slave") == 200, 30, "served again")
    results = new_results(home)
    wait_for(lambda: results() >= 3, 20, "checks go on")
    home.set_status("db1", "down")
    wait_for(lambda: status_code(port, "/hosts/db1/down") == 200, 20, "db1 down over HTTP")
    assert d.alive()
    # [http] is read at start: a reload that changes it keeps the running one and says so.
    conf = home.root / "etc/checks.conf"
    conf.write_text(conf.read_text().replace(f":{port}", f":{free_port()}"))
    answer = home.ask({"cmd": "reload"})
    assert answer["ok"] and answer["restart_needed"] == ["[http]"], answer
    assert status_code(port, "/hosts/db1/down") == 200  # still served where it was


@pytest.mark.skipif(ETCD is None, reason="etcd binary missing: apt-get install etcd-server "
                    "etcd-client")
def test_in_cluster_mode_every_node_serves_the_cluster_view_and_names_the_leader(tmp_path):
    """Two nodes on one etcd member: both serve the cluster's table and its history and say
    who leads; the leader killed, the other says it leads now."""
    (tmp_path / "etcd").mkdir()
    etcd = Etcd(tmp_path / "etcd", n=1)
    nodes, ports = [], free_ports(2)
    try:
        etcd.start()
        for name, port in zip(("n1", "n2"), ports):
            node = Node(tmp_path / name, name, etcd.endpoints, 3)
            with open(node.root / "etc/checks.conf", "a") as f:
                f.write(f"\n[http]\nlisten = 127.0.0.1:{port}\n")
            node.set_status("db1", "master")
            node.set_status("db2", "slave")
            nodes.append(node.start())

        def cluster_metrics(port):
            m = scrape(port)
            leader = [dict(k[1])["leader"] for k in m if k[0] == "hadaemon_cluster_leader_info"]
            node = [dict(k[1])["node"] for k in m if k[0] == "hadaemon_cluster_node_info"]
            return node, leader, m[("hadaemon_cluster_is_leader", ())], m

        def agreed():
            views = [cluster_metrics(p) for p in ports if status_code(p, "/metrics") == 200]
            return len(views) == 2 and views[0][1] == views[1][1] != [] and views
        views = wait_for(agreed, 60, "both nodes serving, one leader seen by both")
        names = ("n1", "n2")
        assert [v[0] for v in views] == [["n1"], ["n2"]]
        leading = names.index(views[0][1][0])
        other = 1 - leading
        assert [v[2] for v in views] == [1 if i == leading else 0 for i in (0, 1)]
        assert 0 < views[leading][3][("hadaemon_cluster_lease_left_seconds", ())] <= 3
        for port in ports:
            wait_for(lambda: status_code(port, "/hosts/db1/master") == 200, 30,
                     "db1 master served by every node")
            assert status_code(port, "/hosts/db2/master") == 503
            # the cluster's history, read from etcd by each node's server: counted and shown
            wait_for(lambda: scrape(port).get(("hadaemon_transitions_total",
                                               (("result", "done"),))) == 2, 30,
                     "the two first transitions counted from the cluster's history")
            page = get(port, "/")
            assert page[0] == 200 and b'class="transition"' in page[1], page

        nodes[leading].kill9()
        wait_for(lambda: cluster_metrics(ports[other])[1:3] == ([names[other]], 1), 60,
                 "the survivor says it leads")
        assert status_code(ports[other], "/hosts/db1/master") == 200
    finally:
        for node in nodes:
            node.kill9()
        etcd.close()

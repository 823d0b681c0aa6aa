"""Real failover: a PostgreSQL primary killed hard, its replica promoted, the service address moved.

Everything is real: two network namespaces with a server each (the replica from pg_basebackup),
hadaemon in a third with the example's configs, the shipped check and actions, SIGKILL of the
postmaster. Skipped only where the machine cannot do it (not root, no namespaces, no PostgreSQL).
"""

import json
import os
import re
import runpy
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import pgnet
import procs
from hadaemon.home import SAFE_PATH
from conftest import ROOT, committed, wait_for

pytestmark = pytest.mark.slow
MINIMAL_ENV = {"PATH": SAFE_PATH, "LANG": "C.UTF-8"}  # what hadaemon gives checks and actions


@pytest.fixture
def cluster(request):
    reason = pgnet.unavailable()
    if reason:
        pytest.skip(reason)
    c = pgnet.Cluster()
    request.addfinalizer(c.down)  # also after a failed `up`: down cleans up half-made state
    return c.up()


def addresses(ns):
    out = subprocess.run(["ip", "-n", ns, "-j", "addr", "show", "dev", "eth0"],
                         capture_output=True, text=True, check=True).stdout
    return {a["local"] for link in json.loads(out) for a in link["addr_info"]}


def mac(ns):
    out = subprocess.run(["ip", "-n", ns, "-j", "link", "show", "dev", "eth0"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]["address"]


def neighbour(cluster, address):
    """The MAC address hademo (the clients' side) has for address."""
    out = subprocess.run(["ip", "-n", cluster.ns, "-j", "neigh", "show", address],
                         capture_output=True, text=True, check=True).stdout
    return " ".join(n.get("lladdr", "?") for n in json.loads(out))


def test_primary_killed_replica_promoted_address_follows(cluster, tmp_path, capsys):
    home = cluster.home(tmp_path / "home")
    cluster.start_daemon(home)
    db1, db2 = cluster.db1, cluster.db2
    wait_for(committed(home, db1, "master"), 30, "db1 master")
    wait_for(committed(home, db2, "slave"), 30, "db2 slave")
    wait_for(lambda: any(h["to"] == "master" and h["state"] == "done" for h in home.history()),
             30, "start-up vip_add done")
    assert pgnet.VIP in addresses(db1)

    measured = cluster.failover(home, rows=20)
    # hadaemon sees the new primary after the address has moved: wait for that sighting too.
    wait_for(lambda: len(home.history()) >= 4 and home.history()[3]["state"] == "done", 30,
             f"{db2} seen master")
    history = home.history()
    steps = pgnet.breakdown(history, measured["killed_wall"])
    with capsys.disabled():  # shown in every run, not only when the test fails
        print(f"\nfailover (kill -> first write acknowledged through {pgnet.VIP}): "
              f"{measured['seconds']:.2f}s with interval {cluster.setting(home, 'interval')}s, "
              f"confirm {cluster.setting(home, 'confirm')}; "
              + ", ".join(f"{k} at {v:.2f}s" for k, v in steps.items())
              + f"; {measured['acked']} writes acknowledged, lost (asynchronous replication): "
              f"{len(measured['lost'])}")

    # The replica is the primary now, and the service address answers from it.
    assert home.status()["hosts"][db1]["status"] == "down"
    assert home.status()["hosts"][db2]["status"] == "master"
    assert cluster.psql(db2, "SELECT pg_is_in_recovery()") == "f"
    assert pgnet.VIP in addresses(db2) and pgnet.VIP not in addresses(db1)
    assert cluster.psql(pgnet.VIP, "SHOW data_directory") == f"{cluster.dir}/{db2}"
    # The gratuitous ARP moved the clients' neighbour entry to db2 at once.
    assert neighbour(cluster, pgnet.VIP) == mac(db2)

    # Rows committed and replicated before the kill survived; writes go on through the VIP.
    assert cluster.psql(pgnet.VIP, "SELECT string_agg(n::text, ',' ORDER BY n) FROM rows"
                        " WHERE at = 'before'") == ",".join(str(n) for n in range(1, 21))
    cluster.psql(pgnet.VIP, "INSERT INTO rows VALUES (22, 'later')")

    # The history tells it in order, with each command's outcome: the address moved within the
    # failover's own sequence, after the old primary's was removed and the promotion confirmed.
    moves = [(h["host"], h["from"], h["to"]) for h in history]
    assert sorted(moves[:2]) == sorted([(db1, "unknown", "master"), (db2, "unknown", "slave")])
    assert moves[2:] == [(db1, "master", "down"), (db2, "slave", "master")]
    down, promoted = history[2], history[3]
    assert [(c["argv"], c["outcome"], c["exit"]) for c in down["commands"]] == [
        (["vip_del", "10.231.0.100/24", "eth0", db1], "ok", 0),
        (["pg_promote", "-F", "-r", "var/pg", "-t", "30", "--", "vip_add", "10.231.0.100/24", "eth0"],
         "ok", 0)]
    out = down["commands"][1]["output"]
    assert f"{db1} down, no primary: promoting {db2}" in out
    assert f"recorded timeline 2 in var/pg/{db2}" in out
    assert out.index("promoted to primary") < out.index("10.231.0.100/24 added to eth0"), out
    # the replica's first sighting ran the same guard, which found the primary up and moved nothing
    first_slave = next(h for h in history if (h["host"], h["to"]) == (db2, "slave"))
    assert [c["outcome"] for c in first_slave["commands"]] == ["ok"]
    assert "nothing to promote" in first_slave["commands"][0]["output"]
    assert "added" not in first_slave["commands"][0]["output"]
    # seen as master, the address is already there
    assert [(c["argv"], c["outcome"], c["exit"]) for c in promoted["commands"]] == [
        (["vip_add", "10.231.0.100/24", "eth0", db2], "ok", 0)]
    assert "already on eth0" in promoted["commands"][0]["output"]
    assert down["state"] == promoted["state"] == "done"
    text = home.cli("history", check=True).stdout
    assert text.index(f"{db1}: master -> down") < text.index(f"{db2}: slave -> master")

    # The walkthrough again, as a user repeats it: `demo down` (which also ends hadaemon in
    # hademo) then `demo up` starts from a clean home, not from a table where db2 is master.
    cluster.demo("down")
    assert not (home.root / "var").exists()
    cluster.demo("up")
    cluster.start_daemon(home)
    wait_for(lambda: any(h["to"] == "master" and h["state"] not in ("queued", "running")
                         for h in home.history()), 30, "start-up vip_add over")
    startup = next(h for h in home.history() if h["to"] == "master")
    assert (startup["host"], startup["from"], startup["state"]) == (db1, "unknown", "done"), startup
    assert pgnet.VIP in addresses(db1)


def run_action(cluster, name, *args, table=None):
    """An action as hadaemon runs it: from hademo, with the minimal environment (and the HA_*
    variables of `table`, {status: hosts}, as a transition would give)."""
    env = dict(MINIMAL_ENV, **{f"HA_{s.upper()}": " ".join(h) for s, h in (table or {}).items()})
    return subprocess.run(cluster.in_ns(str(ROOT / "actions" / name), *args), env=env,
                          capture_output=True, text=True, timeout=120)


def check_role(cluster, host, *args):
    p = subprocess.run(cluster.in_ns(str(ROOT / "checks/check_pg_role"), "-h", host, "-t", "2",
                                     *args),
                       env=MINIMAL_ENV, capture_output=True, text=True, timeout=30)
    return json.loads(p.stdout)["status"], p.returncode


def twice(cluster, name, *args):
    """Run an action twice: both exit 0; the second's output, to see it found the work done."""
    outputs = []
    for _ in range(2):
        p = run_action(cluster, name, *args)
        assert p.returncode == 0, f"{name} {' '.join(args)}: {p.stdout}{p.stderr}"
        outputs.append(p.stdout)
    return outputs[1]


def test_check_and_actions_are_idempotent_on_real_servers(cluster):
    db1, db2 = cluster.db1, cluster.db2
    assert check_role(cluster, db1) == ("master", 0)
    assert check_role(cluster, db2) == ("slave", 0)
    # Answering, but the role cannot be read: a configuration problem, not a dead server.
    assert check_role(cluster, db1, "-U", "nosuchuser") == ("unknown", 3)
    # A name this machine cannot resolve says nothing about the server either.
    assert check_role(cluster, "nosuchhost.invalid") == ("unknown", 3)

    # -F promotes only when a server is down and none is the primary.
    for table in ({"master": [db1], "slave": [db2], "down": ["db3"]},
                  {"unknown": [db1], "slave": [db2]},
                  {"unknown": [db1], "slave": [db2], "down": ["db3"]}):
        p = run_action(cluster, "pg_promote", "-F", table=table)
        assert p.returncode == 0 and "nothing to promote" in p.stdout, (table, p)
        assert check_role(cluster, db2) == ("slave", 0)
    p = run_action(cluster, "pg_promote", "-F", table={"down": [db1]})
    assert p.returncode == 1 and "no replica to promote" in p.stderr, p
    p = run_action(cluster, "pg_promote", "-F", table={"down": [db1], "slave": [db2]})
    assert p.returncode == 0 and f"{db2}:5432 promoted to primary" in p.stdout, p
    assert "already a primary" in twice(cluster, "pg_promote", "-h", db2)
    assert check_role(cluster, db2) == ("master", 0)
    # Two primaries now, db2 on the newer timeline: with db2's record, the check calls db1 an
    # old primary (never `master`), and pg_rejoin never rewinds the newer one.
    records = f"{cluster.dir}/records"
    subprocess.run(cluster.in_ns(str(ROOT / "checks/check_pg_role"), "-h", db2, "-r", records),
                   check=True, capture_output=True)
    assert check_role(cluster, db1, "-r", records) == ("old-master", 1)
    assert check_role(cluster, db2, "-r", records) == ("master", 0)
    refused = run_action(cluster, "pg_rejoin", "-h", db2, "-m", db1, "-D", f"{cluster.dir}/{db2}",
                         "--", "false")
    assert refused.returncode == 1 and "not behind" in refused.stderr, refused
    assert check_role(cluster, db2) == ("master", 0)
    assert "already a primary" in twice(cluster, "pg_promote", "-h", db1)

    vip = f"{pgnet.VIP}/24"
    assert "already on eth0" in twice(cluster, "vip_add", vip, "eth0", db1)
    assert "not on eth0" in twice(cluster, "vip_del", vip, "eth0", db1)
    assert pgnet.VIP not in addresses(db1)
    assert "already on eth0" in twice(cluster, "vip_add", vip, "eth0", db2)
    assert pgnet.VIP in addresses(db2)
    refused = run_action(cluster, "vip_add", vip, "eth0", db1, db2)
    assert refused.returncode == 2 and "refusing" in refused.stderr
    assert pgnet.VIP not in addresses(db1)
    # The address there twice, with two prefixes: the right one counts, and every copy goes.
    for prefix in (16, 24):
        subprocess.run(["ip", "-n", db1, "addr", "add", f"{pgnet.VIP}/{prefix}", "dev", "eth0"],
                       check=True)
    assert "already on eth0" in twice(cluster, "vip_add", vip, "eth0", db1)
    other = run_action(cluster, "vip_add", f"{pgnet.VIP}/28", "eth0", db1)
    assert other.returncode == 1 and "with /16, not /28" in other.stderr, other
    assert "removed from eth0 (2 times)" in run_action(cluster, "vip_del", vip, "eth0", db1).stdout
    assert pgnet.VIP not in addresses(db1)
    # a missing interface has no address: success
    assert "not on nosuchdev" in twice(cluster, "vip_del", vip, "nosuchdev", db1)

    # The announcement replaces a neighbour entry a client already has (here a bogus MAC), for
    # IPv4 (gratuitous ARP) and IPv6 (unsolicited neighbour advertisement) alike.
    subprocess.run(["ip", "-n", cluster.ns, "addr", "add", "fd00:231::1/64", "dev", "br0",
                    "nodad"], check=True)
    for address, prefix in ((pgnet.VIP, 24), ("fd00:231::100", 64)):
        subprocess.run(["ip", "-n", cluster.ns, "neigh", "replace", address, "lladdr",
                        "02:00:00:00:00:01", "dev", "br0", "nud", "stale"], check=True)
        assert "announced" in twice(cluster, "vip_add", f"{address}/{prefix}", "eth0", db1)
        wait_for(lambda: neighbour(cluster, address) == mac(db1), 5, f"{address} at db1's MAC")
        twice(cluster, "vip_del", f"{address}/{prefix}", "eth0", db1)

    # service with a configured command (no systemd in a namespace demo): pg_ctl for db1.
    assert "already stopped" in twice(cluster, "service", "stop", "pg-db1", *pg_ctl(cluster, db1))
    assert check_role(cluster, db1) == ("down", 2)
    assert "already running" in twice(cluster, "service", "start", "pg-db1",
                                      *pg_ctl(cluster, db1))
    assert check_role(cluster, db1) == ("master", 0)
    assert "started" in twice(cluster, "service", "restart", "pg-db1", *pg_ctl(cluster, db1))

    # A host that does not answer at all is down too, not a crash (nothing listens on .99).
    assert check_role(cluster, "10.231.0.99") == ("down", 2)


def test_pg_promote_records_a_timeline_while_the_check_records_the_same_host(cluster, tmp_path):
    """pg_promote -r DIR and check_pg_role -r DIR both replace DIR/HOST; in a failover they do
    it at the same moment (the check sees the new primary as the promotion records it). Neither
    may take the other's half-written file: pg_promote once failed "cannot write" there, and the
    sequence stopped before its vip_add."""
    record = runpy.run_path(str(ROOT / "checks/check_pg_role"))["record"]
    records = tmp_path / "records"
    records.mkdir()
    replication = {"lsn": "0/3000000", "sync_mode": False, "sync": [], "timeline": 1}
    stop = threading.Event()

    def checks_recording():
        # A record every millisecond: each lands in some pg_promote's own write-then-rename
        # (its mv alone takes about that), and between them the file is not there to take.
        while not stop.wait(0.001):
            record(str(records), cluster.db1, replication)
    recorder = threading.Thread(target=checks_recording)
    recorder.start()
    try:
        for _ in range(10):
            p = run_action(cluster, "pg_promote", "-h", cluster.db1, "-r", str(records))
            assert p.returncode == 0 and "recorded timeline 1" in p.stdout, p
    finally:
        stop.set()
        recorder.join()
    assert sorted(os.listdir(records)) == [cluster.db1]  # no temporary file left behind


def pg_ctl(cluster, host):
    """`-- COMMAND` for `service`: pg_ctl for host's server, as the demo starts it."""
    return ["--", "ip", "netns", "exec", host, "runuser", "-u", "postgres", "--",
            pgnet._bin("pg_ctl"), "-D", f"{cluster.dir}/{host}", "-l", f"{cluster.dir}/{host}.log",
            "-w", "-t", "60"]


def test_demo_start_right_after_a_crash_waits_for_the_dead_postmaster(cluster):
    """A killed postmaster is a zombie until its parent reaps it, and pg_ctl calls a zombie a
    running server: `demo start` then must wait for the reaping and start the server, not say
    "already running" and start nothing. (Init adopts the postmaster when pg_ctl exits; this
    machine's reaps every 2 s, and a restart that came sooner left the rejoin test's old primary
    down for good.) Here the parent is a process that reaps only when told."""
    c = cluster
    assert "stopped" in run_action(c, "service", "stop", "pg-db1", *pg_ctl(c, c.db1)).stdout
    demo = [str(pgnet.DEMO), "-s", c.suffix, "-d", c.dir]
    parent = subprocess.Popen([sys.executable, pgnet.__file__, "adopt", *demo, "start", "db1"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline() == "ran\n"
        postmaster = int(Path(f"{c.dir}/{c.db1}/postmaster.pid").read_text().split()[0])
        assert procs.parent(postmaster) == parent.pid
        c.demo("kill", "db1")
        wait_for(lambda: procs.state(postmaster) == "Z", 30, "the killed postmaster a zombie")
        start = subprocess.Popen([*demo, "start", "db1"], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
        first = start.stdout.readline()
        assert f"waiting for the dead postmaster of {c.db1} (pid {postmaster})" in first, \
            first + start.stdout.read()
        assert procs.state(postmaster) == "Z"  # the demo waits for it, whatever pg_ctl says
        parent.communicate("reap\n", timeout=30)  # and goes on once it is gone
        rest = start.communicate(timeout=120)[0]
        assert start.returncode == 0 and f"pg-{c.db1} started" in rest, first + rest
    finally:
        parent.kill()
        parent.wait()
    assert check_role(c, c.db1) == ("master", 0)


@pytest.fixture
def sync_cluster(request):
    reason = pgnet.unavailable()
    if reason:
        pytest.skip(reason)
    c = pgnet.Cluster(sync=True)
    request.addfinalizer(c.down)
    return c.up()


def record(home, host):
    """The last replication record check_pg_role -r var/pg kept of a primary: {key: value}."""
    try:
        text = (home.root / "var/pg" / host).read_text()
    except FileNotFoundError:
        return {}
    return dict(line.split("=", 1) for line in text.splitlines())


def started_sync(cluster, tmp_path):
    home = cluster.home(tmp_path / "home")
    cluster.start_daemon(home)
    wait_for(committed(home, cluster.db1, "master"), 30, "db1 master")
    wait_for(committed(home, cluster.db2, "slave"), 30, "db2 slave")
    wait_for(lambda: record(home, cluster.db1).get("sync") == cluster.db2, 30,
             "db1's record naming db2 its synchronous standby")
    return home


def assert_safe_sync_promotion(out, promoted, dead):
    """pg_promote -S said why promoting `promoted` loses no acknowledged write.

    Either safe path: a check can still read the dead primary in the milliseconds its backends
    outlive the killed postmaster, after its walsender is gone, and record no synchronous
    standby; then the promotion rests on the replica having replayed its last recorded position.
    """
    assert (f"{promoted} was the synchronous standby of {dead}" in out
            or re.search(rf"{promoted} has replayed {dead}'s last position [0-9A-F]+/[0-9A-F]+",
                         out)), out


def test_synchronous_failover_loses_no_acknowledged_write(sync_cluster, tmp_path, capsys):
    home = started_sync(sync_cluster, tmp_path)
    measured = sync_cluster.failover(home, rows=5)
    with capsys.disabled():
        print(f"\nsynchronous failover: {measured['seconds']:.2f}s to the first write acknowledged"
              f" by {sync_cluster.db2}; {measured['acked']} acknowledged, lost "
              f"{len(measured['lost'])}")
    assert measured["lost"] == []
    down = pgnet.failover_job(home.history())
    assert [c["outcome"] for c in down["commands"]] == ["ok", "ok"], down
    assert_safe_sync_promotion(down["commands"][1]["output"], sync_cluster.db2, sync_cluster.db1)
    # promoted without a standby, it no longer waits for one
    assert sync_cluster.psql(pgnet.VIP, "SHOW synchronous_standby_names") == ""


def test_synchronous_mode_refuses_to_promote_a_replica_that_lags(sync_cluster, tmp_path):
    c = sync_cluster
    home = started_sync(c, tmp_path)
    # Cut the replica off (its walreceiver stops): the primary's commits now wait, and the
    # primary's record says it has no synchronous standby.
    c.psql(c.db2, "ALTER SYSTEM SET primary_conninfo = ''")
    c.psql(c.db2, "SELECT pg_reload_conf()")
    wait_for(lambda: record(home, c.db1).get("sync") == "", 30, "db1 without a sync standby")
    # A write that is never acknowledged still takes the primary's WAL past the replica's.
    waiting = subprocess.Popen(c.in_ns(pgnet._bin("psql"), "-X", "-h", c.db1, "-U", "postgres",
                                       "-c", "CREATE TABLE never_acknowledged (n int)"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: c.poll(c.db2, "SELECT pg_last_wal_replay_lsn() < "
                                       f"'{record(home, c.db1)['lsn']}'::pg_lsn") == "t",
                 30, "db1's recorded position ahead of db2's")
        c.demo("kill", "db1")
        wait_for(lambda: any(h["from"] == "master" and h["to"] == "down"
                             and h["state"] not in ("queued", "running")
                             for h in home.history()), 60, "db1's failover sequence over")
    finally:
        waiting.kill()
        waiting.wait()
    down = pgnet.failover_job(home.history())
    promote = down["commands"][1]
    assert (promote["outcome"], promote["exit"]) == ("failed", 1), down
    assert f"refusing to promote {c.db2}" in promote["output"], promote["output"]
    assert "replayed less than" in promote["output"]
    assert c.psql(c.db2, "SELECT pg_is_in_recovery()") == "t"
    assert pgnet.VIP not in addresses(c.db2)


def finished(home, host, to):
    """The last finished sequence of host's transition to `to`, or None."""
    done = [h for h in home.history() if (h["host"], h["to"]) == (host, to)
            and h["state"] not in ("queued", "running")]
    return done[-1] if done else None


def statuses_since(home, host, job_id):
    return [h["to"] for h in home.history() if h["host"] == host and h["id"] > job_id]


def rejoin(cluster, home, old, new):
    """Restart the crashed old primary as an operator would; see it fenced, rewound and back as
    new's replica. Returns its rejoin sequence."""
    failover = pgnet.failover_job(home.history(), old)
    started = cluster.demo("start", old.removesuffix(cluster.suffix)).stdout
    try:
        wait_for(lambda: finished(home, old, "old-master"), 180, f"{old}'s rejoin sequence over")
    except AssertionError as e:  # say whether the server started at all, and how it ended
        raise AssertionError(f"{e}; `demo start` said:\n{started}the end of its log:\n"
                             + cluster.server_log(old)) from None
    job = finished(home, old, "old-master")
    assert [(c["argv"][0], c["outcome"]) for c in job["commands"]] == [
        ("vip_del", "ok"), ("pg_rejoin", "ok")], "\n".join(c["output"] for c in job["commands"])
    wait_for(committed(home, old, "slave"), 60, f"{old} seen as a replica")
    out = job["commands"][1]["output"]
    # The check saw a primary on the old timeline, never a second `master`: the address stayed.
    assert "master" not in statuses_since(home, old, failover["id"])
    assert f"{old}: a primary on timeline" in out and f"behind {new}" in out, out
    assert "servers diverged at WAL location" in out and "Done!" in out, out  # pg_rewind ran
    assert pgnet.VIP not in addresses(old) and pgnet.VIP in addresses(new)
    assert cluster.psql(old, "SELECT pg_is_in_recovery()") == "t"
    # own configuration kept through pg_rewind: it streams under its own name
    assert cluster.psql(old, "SHOW cluster_name") == old
    wait_for(lambda: cluster.poll(new, "SELECT string_agg(application_name, ' ') FROM"
                                       " pg_stat_replication WHERE state = 'streaming'") == old,
             30, f"{old} streaming from {new}")
    again = run_action(cluster, "pg_rejoin", "-h", old, "-m", new, "-D", f"{cluster.dir}/{old}",
                       "--", "ip", "netns", "exec", old, "runuser", "-u", "postgres", "--")
    assert again.returncode == 0 and "already a replica" in again.stdout, again
    return job


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "async"])
def test_old_primary_rejoins_as_replica_then_fails_back(sync, request, tmp_path, capsys):
    reason = pgnet.unavailable()
    if reason:
        pytest.skip(reason)
    c = pgnet.Cluster(sync=sync)
    request.addfinalizer(c.down)
    c.up()
    home = started_sync(c, tmp_path) if sync else c.home(tmp_path / "home")
    if not sync:
        c.start_daemon(home)
        wait_for(committed(home, c.db1, "master"), 30, "db1 master")
        wait_for(committed(home, c.db2, "slave"), 30, "db2 slave")
    db1, db2 = c.db1, c.db2
    with pgnet.Writer(c) as writer:
        first = writer.kill("db1")
        wait_for(committed(home, db2, "master"), 30, "db2 seen master")
        rejoin(c, home, db1, db2)
        if sync:  # pg_rejoin -S made db2's commits wait for db1 again
            wait_for(lambda: record(home, db2).get("sync") == db1, 30,
                     "db2's record naming db1 its synchronous standby")
        back = writer.kill("db2")
        wait_for(committed(home, db1, "master"), 30, "db1 seen master again")
        down = pgnet.failover_job(home.history(), db2)
        assert [cmd["outcome"] for cmd in down["commands"]] == ["ok", "ok"], down
        assert f"{db2} down, no primary: promoting {db1}" in down["commands"][1]["output"]
        if sync:
            assert_safe_sync_promotion(down["commands"][1]["output"], db1, db2)
        assert c.psql(pgnet.VIP, "SHOW data_directory") == f"{c.dir}/{db1}"
        rejoin(c, home, db2, db1)  # and back to two servers
    lost = writer.lost()
    with capsys.disabled():
        print(f"\n{'synchronous' if sync else 'asynchronous'}: failover {first['seconds']:.2f}s,"
              f" rejoin, fail back {back['seconds']:.2f}s, rejoin; {len(writer.acked)} writes"
              f" acknowledged throughout, lost {len(lost)}{' ' + str(lost[:20]) if lost else ''}")
    if sync:
        assert lost == []

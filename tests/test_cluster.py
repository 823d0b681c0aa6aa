"""Cluster mode for real: etcd members and hadaemon nodes as processes, killed and cut off."""

import json
import os
import re
import signal
import threading
import time

import pytest

import sshnet
from conftest import KEEP_GOING, Home, wait_for
from etcdkit import Etcd, Network, Node, netns_possible, read_log
from ports import free_ports
from hadaemon.cluster.agent import AGENT_RELOADED
from hadaemon.cluster.rules import combine, split_section, step_node
from hadaemon.cluster.settings import parse_endpoints
from hadaemon.store import open_store
from hadaemon.table import Table
from test_ssh import REPORT, masters

pytestmark = pytest.mark.slow
TTL = 3


@pytest.fixture
def server(request):
    """The etcd version a test runs against: the oldest here, or each one (3.4, 3.5) for a test
    marked every_etcd (conftest.pytest_generate_tests)."""
    if not request.param:
        pytest.skip("etcd binary missing: apt-get install etcd-server etcd-client")
    return request.param


@pytest.fixture
def etcd(request, tmp_path, server):
    """Three members where etcd's own behaviour is under test (every_etcd: a member's loss,
    failing over between endpoints, ...); one for a scenario of our own rules, which makes the
    same requests: a third of etcd's CPU, the largest share of an idle test cluster's."""
    (tmp_path / "etcd").mkdir()
    n = 3 if request.node.get_closest_marker("every_etcd") else 1
    e = Etcd(tmp_path / "etcd", n=n, server=server)
    try:
        e.start()
        yield e
    finally:
        e.close()


@pytest.fixture
def cluster(tmp_path, etcd):
    made = []

    def make(names=("n1", "n2", "n3"), actions="", **kw):
        log = tmp_path / "actions.log"
        for name in names:
            node = Node(tmp_path / name, name, etcd.endpoints, TTL, log=log, actions=actions, **kw)
            node.script("actions", "slow", SLOW.format(log=log))
            made.append(node)
        return made[-len(names):], log
    yield make
    for node in made:
        node.kill9()
        # pytest shows this only when the test failed: what each node did, for CI's log
        print(f"--- {node.name}: last lines of its daemon log")
        print("\n".join(line[:240] for line in node.daemon_log().splitlines()[-40:]
                        if " DEBUG " not in line))


SLOW = """#!/bin/sh
echo $$ > "$HA_HOME/var/slow.pid"
sleep 2
echo "$HA_NODE job=$HA_JOB $HA_HOST $HA_FROM->$HA_TO resumed=$HA_RESUMED slow" >> "{log}"
"""

ACTIONS = """
[slave_to_master]
record a %MASTER%
record b
"""


def leaders(nodes):
    return {n.cluster().get("leader") for n in nodes if n.alive()}


def one_leader(nodes):
    found = leaders(nodes)
    return found.pop() if len(found) == 1 and None not in found else None


def new_leader(nodes, old):
    """The one leader the nodes agree on, if it is not `old`."""
    found = one_leader(nodes)
    return found if found not in (None, old) else None


def everywhere(nodes, host, status):
    for n in nodes:
        n.set_status(host, status)


def committed(node, host, status):
    return lambda: node.status().get("hosts", {}).get(host, {}).get("status") == status


# -- pure rules ----------------------------------------------------------------------------------

def test_quorum_rule_needs_a_strict_majority_of_the_nodes_reporting_a_host():
    assert combine({"n1": {"db1": "down"}, "n2": {"db1": "up"}, "n3": {"db1": "up"}},
                   "db1") == "up"
    assert combine({"n1": {"db1": "down"}, "n2": {"db1": "up"}}, "db1") is None
    assert combine({"n1": {"db1": "down"}, "n2": {"db1": "down"}, "n3": {"db1": "up"}},
                   "db1") == "down"
    assert combine({"n1": {"db1": "down"}, "n2": {}, "n3": {}}, "db1") == "down"
    assert combine({"n1": {"db2": "up"}}, "db1") is None
    assert combine({"n1": {"h": "a"}, "n2": {"h": "b"}, "n3": {"h": "c"}}, "h") is None


def test_section_node_syntax():
    assert split_section("slave_to_master on %HOST%") == ("slave_to_master", "%HOST%")
    assert split_section("slave_to_master") == ("slave_to_master", "")
    assert step_node("slave_to_master on %HOST%", {"HOST": ["db2"]}) == "db2"
    assert step_node("slave_to_master on leader", {"HOST": ["db2"]}) == ""
    assert step_node("*_to_* on n3", {}) == "n3"
    assert step_node("*_to_*", {}) == ""


def test_check_config_validates_the_cluster_section(tmp_path):
    home = Home(tmp_path / "home")
    home.write("checks.conf", """\
        [cluster]
        etcd = ftp://x
        ttl = 1
        node = bad/name
        colour = blue
        fence = no-such-fencer
        [local]
        status_from_files db1
        """)
    home.write("actions.conf", "[slave_to_master on no/node]\nrecord x\n")
    r = home.cli("check-config")
    assert r.returncode == 1
    conf, acts = home.root / "etc/checks.conf", home.root / "etc/actions.conf"
    for expected in (f"{conf}:2: etcd: endpoint 'ftp://x'", f"{conf}:3: ttl: must be between",
                     f"{conf}:4: node: expected", f"{conf}:5: unknown setting 'colour'",
                     f"{conf}:6: fence: cannot run it ('no-such-fencer' is neither",
                     f"{acts}:1: section [slave_to_master on no/node]"):
        assert expected in r.stderr, (expected, r.stderr)
    home.write("checks.conf", "[cluster]\netcd = http://127.0.0.1:2379\n[local]\n"
                              "status_from_files db1\n")
    home.write("actions.conf", "[slave_to_master on %HOST%]\nrecord x\n")
    r = home.cli("check-config")
    assert r.returncode == 0, r.stderr
    # another node's scope loads, is counted, and is not run here
    home.write("checks.conf", "[cluster]\netcd = http://127.0.0.1:2379\nnode = n1\n"
                              "[node:n2]\nstatus_from_files db1\n")
    r = home.cli("check-config")
    assert r.returncode == 0 and "0 check(s) (not run here: 1 of other nodes'" in r.stdout, r
    r = home.cli("probe", "status_from_files")
    assert r.returncode == 2 and "check 'status_from_files' runs on node n2 only (" \
        f"{home.root}/etc/checks.conf:5, in [node:n2]): probe it there" in r.stderr, r


# -- real clusters -------------------------------------------------------------------------------

def test_one_leader_and_each_action_exactly_once(cluster):
    nodes, log = cluster(actions=ACTIONS)
    everywhere(nodes, "db1", "slave")
    everywhere(nodes, "db2", "slave")
    for n in nodes:
        n.start()
    t0 = time.monotonic()
    leader = wait_for(lambda: one_leader(nodes), 30, "one leader seen by all")
    print(f"first leader {leader} after {time.monotonic() - t0:.2f}s")
    wait_for(lambda: all(committed(n, "db2", "slave")() for n in nodes), 30, "table mirrored")
    everywhere(nodes, "db1", "master")
    wait_for(lambda: len(read_log(log)) >= 2, 30, "two commands")
    time.sleep(2)  # many check rounds on every node: nothing more may fire
    lines = read_log(log)
    assert lines == [f"{leader} job=3 db1 slave->master resumed=0 a db1",
                     f"{leader} job=3 db1 slave->master resumed=0 b"], lines
    status = nodes[0].status()
    c = status["cluster"]
    assert c["leader"] == leader and c["node"] == "n1"
    assert set(c["nodes"]) == {"n1", "n2", "n3"}
    assert c["results"]["n2"]["db1"] == "master"
    text = nodes[1].cli("status").stdout
    assert f"leader {leader}" in text and "node n3" in text, text
    assert "db1: slave -> master [done]" in nodes[2].cli("history").stdout


def test_one_node_alone_cannot_move_a_host(cluster):
    nodes, log = cluster(actions="[*_to_down]\nrecord down %HOST%\n")
    everywhere(nodes, "db1", "up")
    for n in nodes:
        n.start()
    wait_for(lambda: one_leader(nodes), 30, "a leader")
    wait_for(committed(nodes[0], "db1", "up"), 30, "db1 up")
    nodes[0].set_status("db1", "down")  # one node with a bad view
    time.sleep(2)  # nothing may move: time for many rounds of n1's lone vote
    assert all(n.status()["hosts"]["db1"]["status"] == "up" for n in nodes)
    assert read_log(log) == []
    nodes[1].set_status("db1", "down")  # now a majority
    wait_for(lambda: read_log(log), 30, "down fired")
    assert len(read_log(log)) == 1


def test_an_idle_runner_is_woken_when_a_job_opens(etcd, tmp_path):
    """While no job is open a runner does not read etcd every poll: its agent's look wakes it
    when one opens, and it looks by itself only every quarter of ttl (15 s at ttl 60). Each job
    below opens as soon as the last one ran, when the runner has just gone idle: without the
    wake-up each would wait most of those 15 s."""
    log = tmp_path / "actions.log"
    node = Node(tmp_path / "n1", "n1", etcd.endpoints, 60, log=log,
                actions="[slave_to_master]\nrecord up\n[master_to_slave]\nrecord down\n")
    try:
        node.set_status("db1", "slave")
        node.set_status("db2", "slave")
        node.start()
        wait_for(lambda: one_leader([node]), 30, "n1 leading")
        wait_for(committed(node, "db1", "slave"), 30, "db1 slave")
        took = []
        for n, status in enumerate(["master", "slave", "master"], 1):
            t0 = time.monotonic()
            node.set_status("db1", status)
            wait_for(lambda: len(read_log(log)) >= n, 30, f"job {n}")
            took.append(time.monotonic() - t0)
        print(f"check result -> command: {', '.join(f'{t:.2f}s' for t in took)}")
        assert max(took) < 7, took  # a job waiting for the runner's own look: about 15 s
        assert [line.split()[-1] for line in read_log(log)] == ["up", "down", "up"]
    finally:
        node.kill9()


def test_hold_down_outlives_the_leader_that_committed(cluster, etcd):
    # n1 leads and commits under hold_down = 16; the others hold a change of their own view for
    # 1 s only, so their "down" reaches the next leader well before the 16 s end: what holds it
    # back then is the hold-down key n1 left in etcd. (With 8 s everywhere their own hold-down
    # ended about when the key expired, and whether the leader still saw the key was a race;
    # with 8 s on n1, the others' start, n1's kill and a ttl to the next leader came to 8.7 s
    # once, in CI: the key was gone.)
    acts = "[*_to_*]\nrecord %HOST%\n"
    (first,), log = cluster(names=("n1",), actions=acts, extra="hold_down = 16")
    nodes = [first, *cluster(names=("n2", "n3"), actions=acts, extra="hold_down = 1")[0]]
    everywhere(nodes, "db1", "up")
    first.start()
    wait_for(lambda: first.cluster().get("leader") == "n1", 30, "n1 leading alone")
    leader = start_all(nodes[1:], db1="up")
    assert leader == "n1"
    fired(log, 1)
    t0 = time.monotonic()  # after the commit: the hold-down has at most 16 s left from here
    held = etcd.ctl("get", "--prefix", "--keys-only", "/hatest/live/hold/").stdout.split()
    assert held == ["/hatest/live/hold/db1"], held
    old = next(n for n in nodes if n.name == leader)
    old.kill9()
    rest = [n for n in nodes if n is not old]
    everywhere(rest, "db1", "down")
    new = wait_for(lambda: new_leader(rest, leader), 30,
                   "a new leader")
    wait_for(lambda: "hold-down: db1 stays up for now, not down" in
             next(n for n in rest if n.name == new).daemon_log(), 30, "held back, and said so")
    assert len(read_log(log)) == 1
    wait_for(lambda: len(read_log(log)) == 2, 30, "down fired once the hold-down ended")
    waited = time.monotonic() - t0
    print(f"down fired {waited:.1f}s after the first commit was seen (hold_down 16 s; leader "
          f"{leader} killed, {new} led on)")
    assert read_log(log)[-1] == f"{new} job=2 db1 up->down resumed=0 db1"
    # a lower bound only (the hold key's lease was granted just before the first commit)
    jobs = {j["id"]: j for j in json.loads(rest[0].cli("history", "--json").stdout)}
    assert jobs[2]["time"] - jobs[1]["time"] >= 15.5, jobs


def test_resume_fires_each_host_that_changed_once_however_many(cluster):
    # 35 hosts: more than one transaction's worth of jobs (etcd allows 128 writes in one).
    hosts = [f"h{i:02d}" for i in range(35)]
    nodes, log = cluster(actions="[*_to_*]\nrecord %HOST%\n",
                         checks=f"status_from_files {' '.join(hosts)}\n")
    start_all(nodes, **{h: "slave" for h in hosts})
    fired(log, 35)
    assert nodes[0].cli("pause").returncode == 0
    wait_for(lambda: all(n.cluster().get("paused") for n in nodes), 30, "paused everywhere")
    for h in hosts:
        everywhere(nodes, h, "master")
    wait_for(lambda: has_statuses(nodes[0], {h: "master" for h in hosts}), 30, "all master")
    assert len(read_log(log)) == 35
    assert nodes[1].cli("resume").returncode == 0
    wait_for(lambda: len(read_log(log)) >= 70, 30 + PER_JOB * 35, "every changed host fired")
    time.sleep(1)  # nothing more may fire: no host twice
    fired_on_resume = sorted(line.split()[-1] for line in read_log(log)[35:])
    assert fired_on_resume == hosts, read_log(log)[35:]
    assert all("slave->master" in line for line in read_log(log)[35:])
    assert not any(n.cluster().get("paused") for n in nodes)


def test_a_manual_transition_stands_while_its_sequence_runs(cluster):
    nodes, log = cluster(actions="[*_to_*]\nrecord %HOST%\n[slave_to_master]\nslow\n")
    leader = start_all(nodes, db2="slave")
    fired(log, 1)
    runner = next(n for n in nodes if n.name == leader)
    assert nodes[1].cli("transition", "db2", "master").returncode == 0
    # The checks say slave while the sequence runs: held, not taken back. They say master
    # once the leader has ruled on their slave, before the sequence ends (2 s): written
    # earlier, the majority may say master before the leader looks, and nothing is held.
    wait_for(lambda: (runner.root / "var/slow.pid").exists(), 30, "the sequence runs")
    held = "db2 stays master, not slave, while the sequence of its manual transition (job #2)"
    wait_for(lambda: held in runner.daemon_log(), 30, "the checks' slave held")
    everywhere(nodes, "db2", "master")
    wait_for(lambda: any(line.endswith(" slow") for line in read_log(log)), 30, "sequence done")
    time.sleep(1)  # nothing more may fire: the checks say master now, as committed
    assert read_log(log)[1:] == [f"{leader} job=2 db2 slave->master resumed=0 db2",
                                 f"{leader} job=2 db2 slave->master resumed=0 slow"], \
        read_log(log)
    moves = [(h["from"], h["to"], h["manual"]) for h in
             json.loads(runner.cli("history", "--json").stdout)]
    assert moves == [("unknown", "slave", False), ("slave", "master", True)], moves


@pytest.mark.every_etcd
def test_a_job_id_in_use_is_never_written_over(etcd):
    """A leader whose count of jobs fell behind (its commit landed, the answer was lost) is
    refused, and nothing of its transaction is written."""
    from hadaemon.cluster.keys import Keys
    from hadaemon.cluster.etcd import Etcd as Client
    from hadaemon.cluster.store import EtcdJournal, EtcdStore, EtcdTable, Refused
    store = EtcdStore(Client(parse_endpoints(etcd.endpoints)), Keys("/hatest/"))
    journal, table = EtcdJournal(store), EtcdTable(store)
    job = {"id": 1, "state": "queued", "host": "db1"}
    with table.transaction():
        journal.enqueue(job)
    with pytest.raises(Refused):
        with table.transaction():
            table.set("db1", {"status": "down"})
            journal.enqueue(dict(job, host="db2"))
    assert json.loads(etcd.ctl("get", "--print-value-only", "/hatest/job/000000000001")
                      .stdout)["host"] == "db1"
    assert table.get("db1") is None


@pytest.mark.every_etcd
def test_a_large_range_is_read_in_pages_at_one_revision(etcd, monkeypatch):
    """Ranges come PAGE keys per answer, all at the first page's revision, with the whole
    range's count: what sync.py needs to see new keys, changed keys and deletions."""
    from hadaemon.cluster import etcd as client
    monkeypatch.setattr(client, "PAGE", 7)
    c = client.Etcd(parse_endpoints(etcd.endpoints))
    for start in range(0, 50, 10):
        assert c.txn([], [client.put(f"/p/k{i:03d}", str(i)) for i in range(start, start + 10)])
    c.txn([], [client.put("/q", "outside")])
    asked, post = [], c._post
    monkeypatch.setattr(c, "_post",
                        lambda path, body, *wait: asked.append(body) or post(path, body, *wait))
    found, count, at = c.changes("/p/")
    assert sorted(found) == [f"/p/k{i:03d}" for i in range(50)] and count == 50
    assert len(asked) == 8 and all(b["limit"] == 7 for b in asked)
    assert [b.get("revision") for b in asked] == [None] + [at] * 7
    assert all(found[f"/p/k{i:03d}"][0] == str(i).encode() for i in range(50))
    assert c.txn([], [client.put("/p/k007", "new"), client.put("/p/k041", "new"),
                      client.put("/p/k050", "added")])
    assert c.txn([], [client.delete("/p/k000")])
    changed, count, now = c.changes("/p/", at)
    assert {k: v[0] for k, v in changed.items()} == {
        "/p/k007": b"new", "/p/k041": b"new", "/p/k050": b"added"}
    assert count == 50 and now > at  # one added, one deleted: sync.py reads it whole
    old = c.range("/p/", revision=at)  # every page at the revision asked for
    assert len(old) == 50 and old["/p/k007"][0] == b"7" and "/p/k050" not in old
    # a range waits range_timeout a page (etcd scans the whole range for min_mod_revision),
    # other requests the request timeout: shown with every member frozen for a moment
    hasty = client.Etcd(parse_endpoints(etcd.endpoints), 0.1, range_timeout=30)

    def members(sig):
        for proc in etcd.procs:
            os.kill(proc.pid, sig)
    members(signal.SIGSTOP)
    try:
        with pytest.raises(client.EtcdUnavailable):
            hasty.get("/p/k001")
        threading.Timer(0.5, members, (signal.SIGCONT,)).start()
        assert len(hasty.changes("/p/", at)[0]) == 3
    finally:
        members(signal.SIGCONT)


@pytest.mark.every_etcd
def test_the_client_keeps_one_connection_opens_another_when_it_is_lost_and_says_why(etcd):
    """cluster/etcd.py's own HTTP: one kept-alive connection per endpoint; one that etcd
    closed while idle (a restarted member) is opened again before a request is sent on it; an
    answer etcd refused is said in etcd's words, a compacted revision as such."""
    from hadaemon.cluster import etcd as client
    first = parse_endpoints(etcd.endpoints)[:1]  # one member: no other to move on to
    c = client.Etcd(first, timeout=2)
    assert c.txn([], [client.put("/c/k", "1")]) and c.get("/c/k") == b"1"
    conn = c._endpoints[0].conn
    for _ in range(20):
        c.get("/c/k")
    assert c._endpoints[0].conn is conn  # the same connection all along
    etcd.kill(0)
    etcd.start(0)
    assert c.get("/c/k") == b"1"  # not "unavailable": the dead connection was not used
    assert c._endpoints[0].conn is not conn
    with pytest.raises(client.EtcdRefused, match="lease not found"):
        c._post("/kv/lease/revoke", {"ID": 1234567})
    for i in range(3):
        c.txn([], [client.put("/c/k", str(i))])
    at = int(c._post("/kv/range", {"key": client._b64("/c/k")})["header"]["revision"])
    c._post("/kv/compaction", {"revision": at, "physical": True})
    with pytest.raises(client.EtcdCompacted):
        c.range("/c/", revision=at - 2)
    c._endpoints[0].close()
    c._endpoints[0].port = free_ports(1)[0]  # nothing listens there
    with pytest.raises(client.EtcdUnavailable, match="Connection refused"):
        c.get("/c/k")


def test_a_second_daemon_with_a_node_name_in_use_stays_out_until_it_is_free(cluster, etcd,
                                                                             tmp_path):
    acts = "[*_to_down]\nrecord down %HOST%\n"
    nodes, log = cluster(actions=acts)
    start_all(nodes, db1="up")
    dup = Node(tmp_path / "dup", "n1", etcd.endpoints, TTL, log=log, actions=acts)
    try:
        dup.set_status("db1", "down")
        nodes[1].set_status("db1", "down")  # counted as n1's vote, dup's would make a majority
        dup.start()
        wait_for(lambda: "node name 'n1' is held by pid" in dup.daemon_log(), 30, "refused")
        time.sleep(2)  # nothing may fire: dup's vote is not counted
        assert read_log(log) == []
        assert "NOT JOINED: node name 'n1' is held" in dup.cli("status").stdout
        r = dup.cli("forget", "--wait", "2", "db7")  # no leader hears a node that is out: the
        assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r  # CLI gives up
        assert "forget: no answer from the leader within 2s" in r.stderr, r
        assert nodes[2].cluster()["results"]["n1"] == {"db1": "up"}
        nodes[0].kill9()  # its key expires with its lease; then the name is free
        wait_for(lambda: "joined: its name is free again" in dup.daemon_log(), 30, "dup joins")
        wait_for(lambda: read_log(log), 30, "down fired, n1 (now dup) and n2 agreeing")
        time.sleep(1)  # nothing more may fire
        assert len(read_log(log)) == 1 and read_log(log)[0].endswith("up->down resumed=0 down db1")
    finally:
        dup.kill9()


def test_kill_9_of_the_leader_mid_sequence_resumes_on_the_next_one(cluster):
    nodes, log = cluster(actions="""
        [slave_to_master]
        record a
        slow
        record c
        """, cluster_extra="fence = record fence")
    everywhere(nodes, "db1", "slave")
    for n in nodes:
        n.start()
    leader = wait_for(lambda: one_leader(nodes), 30, "a leader")
    wait_for(lambda: all(committed(n, "db1", "slave")() for n in nodes), 30, "mirrored")
    everywhere(nodes, "db1", "master")
    old = next(n for n in nodes if n.name == leader)
    wait_for(lambda: (old.root / "var/slow.pid").exists(), 30, "slow command running")
    old.kill9()
    t0 = time.monotonic()
    rest = [n for n in nodes if n is not old]
    new = wait_for(lambda: new_leader(rest, leader), 30,
                   "a new leader")
    print(f"leader {leader} killed; {new} leads after {time.monotonic() - t0:.2f}s (ttl {TTL})")
    wait_for(lambda: any(" c" in line for line in read_log(log)), 30, "sequence finished")
    time.sleep(1)  # nothing more may fire: no command twice
    lines = read_log(log)
    assert lines == [f"{leader} job=2 db1 slave->master resumed=0 a",
                     f"{new} job=3  -> resumed=0 fence {leader}",
                     f"{new} job=2 db1 slave->master resumed=1 slow",
                     f"{new} job=2 db1 slave->master resumed=1 c"], lines
    job = [h for h in json.loads(rest[0].cli("history", "--json").stdout)
           if h["id"] == 2][0]
    assert job["state"] == "done" and job["resumed"]
    assert [c["outcome"] for c in job["commands"]] == ["ok", "ok", "ok"]


# The jobs of a cluster run one after the other, each over a few of the leader's looks at etcd:
# on 2 cores loaded by a parallel run (pytest -n) one took up to 1.5 s.
PER_JOB = 2


def fired(log, n):
    """Wait until the first n actions have run: a status is committed before its action runs,
    so a count taken right after start_all could still grow."""
    wait_for(lambda: len(read_log(log)) >= n, 30 + PER_JOB * n, f"{n} first action(s)")
    return len(read_log(log))


def start_all(nodes, **statuses):
    for host, status in statuses.items():
        everywhere(nodes, host, status)
    for n in nodes:
        n.start()
    leader = wait_for(lambda: one_leader(nodes), 30, "a leader")
    wait_for(lambda: all(has_statuses(n, statuses) for n in nodes), 30, f"{statuses} everywhere")
    return leader


def has_statuses(node, statuses):
    """node's table holds every host: status of `statuses` (one `status` call, however many)."""
    hosts = node.status().get("hosts", {})
    return all(hosts.get(h, {}).get("status") == s for h, s in statuses.items())


@pytest.mark.every_etcd
def test_etcd_member_loss_changes_nothing_and_an_outage_fires_nothing(cluster, etcd):
    nodes, log = cluster(actions="[*_to_*]\nrecord %HOST%\n")
    leader = start_all(nodes, db1="up")
    lines = fired(log, 1)
    etcd.kill(0)  # the first endpoint of every node
    time.sleep(2 * TTL)  # an absence: the leader keeps its lease through two TTLs
    assert one_leader(nodes) == leader
    assert len(read_log(log)) == lines
    everywhere(nodes, "db1", "down")
    wait_for(lambda: len(read_log(log)) == lines + 1, 30, "down fired with two members")
    wait_for(lambda: all(committed(n, "db1", "down")() for n in nodes), 30, "mirrored")
    for i in (1, 2):
        etcd.kill(i)
    t0 = time.monotonic()
    everywhere(nodes, "db1", "up")
    time.sleep(2 * TTL)
    assert len(read_log(log)) == lines + 1  # nothing fires without etcd
    answer = nodes[1].status()
    print(f"status without etcd answered: stale={answer['cluster']['stale']}")
    assert answer["cluster"]["stale"] and answer["hosts"]["db1"]["status"] == "down"
    assert "STALE" in nodes[1].cli("status").stdout
    etcd.start()
    wait_for(lambda: len(read_log(log)) == lines + 2, 60, "up fired once etcd is back")
    print(f"etcd down for {time.monotonic() - t0:.1f}s; leader after: {one_leader(nodes)}")
    time.sleep(1)  # nothing more may fire
    assert len(read_log(log)) == lines + 2
    assert read_log(log)[-1].endswith("down->up resumed=0 db1")


@pytest.mark.every_etcd
def test_a_command_that_ends_while_etcd_is_away_is_recorded_and_not_run_again(cluster, etcd):
    nodes, log = cluster(actions="[slave_to_master]\nslow\nrecord c\n")
    leader = start_all(nodes, db1="slave")
    runner = next(n for n in nodes if n.name == leader)
    everywhere(nodes, "db1", "master")
    wait_for(lambda: (runner.root / "var/slow.pid").exists(), 30, "slow command running")
    for i in range(etcd.n):
        etcd.kill(i)
    wait_for(lambda: any("slow" in line for line in read_log(log)), 30, "slow command ended")
    time.sleep(1)  # its end cannot be recorded now; the next command must not start
    assert len(read_log(log)) == 1
    etcd.start()
    wait_for(lambda: any(" c" in line for line in read_log(log)), 60, "sequence finished")
    time.sleep(1)  # nothing more may fire
    assert read_log(log) == [f"{leader} job=2 db1 slave->master resumed=0 slow",
                             f"{leader} job=2 db1 slave->master resumed=0 c"], read_log(log)
    assert "cannot record the end of 'slow'" in runner.daemon_log()
    job = [h for h in json.loads(runner.cli("history", "--json").stdout)
           if h["id"] == 2][0]
    assert job["state"] == "done" and not job["resumed"]


@pytest.mark.every_etcd
def test_a_blip_shorter_than_ttl_changes_nothing(cluster, etcd):
    nodes, log = cluster(actions="[*_to_*]\nrecord %HOST%\n")
    leader = start_all(nodes, db1="up")
    fired(log, 1)
    lines = read_log(log)
    for p in etcd.procs:
        p.send_signal(signal.SIGSTOP)
    time.sleep(TTL / 3)  # the blip itself: etcd frozen for a third of the TTL
    for p in etcd.procs:
        p.send_signal(signal.SIGCONT)
    time.sleep(2 * TTL)  # an absence: no new leader, nothing fired, through two TTLs
    assert one_leader(nodes) == leader
    assert read_log(log) == lines
    assert all("is the leader now" not in n.daemon_log() for n in nodes if n.name != leader)


def test_pause_resume_manual_transition_and_handover(cluster):
    nodes, log = cluster(actions="[*_to_*]\nrecord %HOST%\n")
    leader = start_all(nodes, db1="slave", db2="slave")
    base = fired(log, 2)
    assert nodes[2].cli("pause").returncode == 0
    wait_for(lambda: all(n.cluster().get("paused") for n in nodes), 30, "paused everywhere")
    assert "PAUSED" in nodes[0].cli("status").stdout
    everywhere(nodes, "db1", "master")
    wait_for(lambda: all(committed(n, "db1", "master")() for n in nodes), 30, "table goes on")
    time.sleep(1)  # nothing may fire while paused
    assert len(read_log(log)) == base  # no action while paused
    assert nodes[0].cli("resume").returncode == 0
    wait_for(lambda: len(read_log(log)) == base + 1, 30, "last transition fired on resume")
    assert read_log(log)[-1].endswith("db1 slave->master resumed=0 db1")
    # a manual switchover: committed by hand, fired as an observed change would be
    r = nodes[1].cli("transition", "db2", "master")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: any("db2 slave->master" in line for line in read_log(log)), 30,
             "manual transition fired")
    everywhere(nodes, "db2", "master")  # what the switchover made the checks see
    wait_for(lambda: all(committed(n, "db2", "master")() for n in nodes), 30, "db2 master")
    history = json.loads(nodes[0].cli("history", "--json").stdout)
    manual = [h for h in history if h["host"] == "db2" and h["manual"]]
    assert [(h["from"], h["to"]) for h in manual] == [("slave", "master")]
    assert "(manual)" in nodes[0].cli("history").stdout
    count = len(read_log(log))
    # handover to a named node, then to anyone
    other = next(n.name for n in nodes if n.name != leader)
    t0 = time.monotonic()
    assert nodes[0].cli("handover", other).returncode == 0
    wait_for(lambda: one_leader(nodes) == other, 30, f"{other} leads")
    print(f"handover {leader} -> {other} took {time.monotonic() - t0:.2f}s")
    assert nodes[0].cli("handover").returncode == 0
    wait_for(lambda: one_leader(nodes) not in (None, other), 30, "someone else leads")
    time.sleep(1)  # nothing may fire when leadership moves
    assert len(read_log(log)) == count  # leadership moved, nothing fired
    # a host no node's checks report takes --new (issue 11); one they report is not forgotten
    r = nodes[1].cli("transition", "db9", "master")
    assert r.returncode == 1 and "db9: no node's checks report this host" in r.stderr, r
    r = nodes[0].cli("forget", "db2")
    assert r.returncode == 1 and "db2 is still reported by node n1, n2, n3" in r.stderr, r
    assert nodes[1].cli("transition", "--new", "db9", "down").returncode == 0
    wait_for(lambda: any("db9 unknown->down" in line for line in read_log(log)), 30,
             "a new host's transition fired")


def test_a_section_can_name_the_node_that_runs_it(cluster):
    nodes, log = cluster(names=("db1", "db2", "db3"), actions="""
        [slave_to_master]
        record on-leader
        [slave_to_master on %HOST%]
        record plumb
        [slave_to_master on db3]
        record on-db3
        """)
    leader = start_all(nodes, db1="slave", db2="slave")
    everywhere(nodes, "db2", "master")
    wait_for(lambda: len(read_log(log)) == 3, 30, "three commands")
    time.sleep(1)  # nothing more may fire
    assert [(line.split()[0], line.split()[-1]) for line in read_log(log)] == [
        (leader, "on-leader"), ("db2", "plumb"), ("db3", "on-db3")]


COUNTED = """#!/bin/sh
echo {name} >> {runs}
exec "$HA_HOME/checks/status_from_files" h1
"""


def test_a_node_scope_runs_on_its_node_alone_and_its_hosts_follow_it(cluster, tmp_path):
    """h1 is checked from [node:n2] alone: only n2 runs the check, its opinion alone commits
    h1 (n1 and n3 would say down); a reload moves the check to n3, whose opinion alone then
    counts; when n3 is gone h1 keeps its status, unobserved."""
    runs = tmp_path / "runs"
    nodes, _ = cluster(checks="status_from_files db1\n[node:n2]\ncounted\n")
    for n in nodes:
        n.script("checks", "counted", COUNTED.format(name=n.name, runs=runs))
        n.set_status("h1", "down" if n.name == "n1" else "up")
    n1, n2, n3 = nodes
    start_all(nodes, db1="up")
    wait_for(lambda: all(committed(n, "h1", "up")() for n in nodes), 30, "h1 up, from n2")
    wait_for(lambda: len(read_log(runs)) >= 3, 30, "three runs")
    assert set(read_log(runs)) == {"n2"}
    assert [(n.status()["daemon"]["checks"], n.status()["daemon"]["elsewhere"])
            for n in nodes] == [(1, 1), (2, 0), (1, 1)]
    assert "1 check(s) (not run here: 1 of other nodes' [node:NAME] scopes)" in \
        n1.cli("status").stdout
    assert not n1.cluster()["unobserved"]

    # a reload moves the check to n3: n2's opinion of h1 is withdrawn, n3's alone counts
    n3.set_status("h1", "down")
    for n in nodes:
        conf = n.root / "etc/checks.conf"
        conf.write_text(conf.read_text().replace("[node:n2]", "[node:n3]"))
        n.cli("reload", check=True)
    wait_for(lambda: "h1" not in n1.cluster()["results"].get("n2", {}), 30, "n2 withdrew h1")
    wait_for(committed(n1, "h1", "down"), 30, "h1 down, from n3")
    assert set(read_log(runs)) == {"n2", "n3"}
    assert [n.status()["daemon"]["elsewhere"] for n in nodes] == [1, 1, 0]

    n3.daemon.stop()  # its only observer gone: no vote for h1, which keeps its status
    # Each node finds it out at its own look at etcd: n2 may be a look behind n1.
    wait_for(lambda: n1.cluster().get("unobserved") == ["h1"]
             and n2.status()["hosts"]["h1"].get("unobserved"), 30, "h1 unobserved on n1, n2")
    h1 = n2.status()["hosts"]["h1"]
    assert (h1["status"], h1["unobserved"], h1["stale"]) == ("down", True, True), h1
    assert not n2.status()["hosts"]["db1"].get("unobserved")
    r = n2.cli("status")
    assert r.returncode == 4 and "UNOBSERVED: no live node reports h1" in r.stdout, r
    assert "down (unobserved)" in r.stdout, r.stdout
    assert "h1: unobserved: no live node reports it" in n1.daemon_log()


DB9 = "third\n[check:third]\nscript = status_from_files\nargs = db9\n"


def test_forget_takes_a_host_no_live_node_reports_out_of_the_cluster(cluster):
    """A reload removes db9's check on every node: db9 stays, unobserved, and `status` exits 4
    for ever, until `forget`, which the leader refuses while a node still reports db9."""
    nodes, log = cluster(actions="[*_to_*]\nrecord %HOST%\n",
                         checks="status_from_files db1\n" + DB9)
    n1, n2, n3 = nodes
    start_all(nodes, db1="up", db9="master")
    fired(log, 2)

    def drop_db9(node):
        conf = node.root / "etc/checks.conf"
        conf.write_text(conf.read_text().replace(DB9, ""))
        node.cli("reload", check=True)

    for n in (n1, n2):
        drop_db9(n)
    wait_for(lambda: set(n1.cluster().get("results", {}).get("n3", {})) == {"db1", "db9"} and
             all("db9" not in n1.cluster()["results"].get(n, {}) for n in ("n1", "n2")),
             30, "n1 and n2 withdrew db9")
    r = n1.cli("forget", "db9")
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r
    assert "db9 is still reported by node n3 (the latest results of its checks name it)" \
        in r.stderr, r.stderr
    r = n1.cli("forget", "db7")
    assert r.returncode == 1 and "db7: no such host in the table" in r.stderr, r

    drop_db9(n3)
    wait_for(lambda: all(n.cluster().get("unobserved") == ["db9"] for n in nodes), 30,
             "db9 unobserved everywhere")
    assert [n.cli("status").returncode for n in nodes] == [4, 4, 4]
    assert n3.daemon.stop() == 0  # its mirror holds db9 while the cluster forgets it
    wait_for(lambda: set(n1.cluster().get("nodes", ())) == {"n1", "n2"}, 30, "n3 gone")
    r = n2.cli("forget", "db9")
    leader = one_leader(nodes[:2])
    assert r.returncode == 0 and r.stdout.strip() == f"db9 forgotten (leader: {leader})", r
    assert "forgot host db9 (was master" in next(n for n in nodes
                                                  if n.name == leader).daemon_log()
    n3.start()
    for n in nodes:
        wait_for(lambda: "db9" not in n.status().get("hosts", {"db9": 1}), 30,
                 f"db9 gone on {n.name}")
        r = n.cli("status")
        assert r.returncode == 0 and "db9" not in r.stdout and not n.cluster()["unobserved"], \
            r.stdout
    r = n3.cli("forget", "db9")
    assert r.returncode == 1 and "db9: no such host in the table" in r.stderr, r

    # reported again: a new host, from unknown
    for n in nodes:
        n.set_status("db9", "slave")
        conf = n.root / "etc/checks.conf"
        conf.write_text(conf.read_text() + DB9)  # [local] is the last section
        n.cli("reload", check=True)
    wait_for(lambda: any(line.endswith("db9 unknown->slave resumed=0 db9")
                         for line in read_log(log)), 30, "db9 new, from unknown")
    wait_for(lambda: all(committed(n, "db9", "slave")() for n in nodes), 30,
             "db9 slave everywhere")


def test_hosts_the_cluster_forgot_while_a_node_was_away_all_leave_its_mirror(cluster):
    """n3 comes back with a mirror of 2 000 hosts the cluster no longer has (forgotten while it
    was away): every one leaves its mirror. The mirror is more than one datagram; handed to
    the agent as messages, the parts after the first came after its first look at etcd and
    were never compared (CI at ca81464: a forgotten db9 stayed on n3)."""
    nodes, _ = cluster()
    gone = {f"gone{i:04d}" for i in range(2000)}
    store, _ = open_store(nodes[2].root / "var/state.db")
    with store.transaction():
        for host in sorted(gone):
            Table(store).set(host, {"status": "master", "since": time.time(), "manual": False})
    store.close()
    start_all(nodes, db1="up")
    wait_for(lambda: not gone & set(nodes[2].status().get("hosts", {})), 30,
             "the forgotten hosts out of n3's mirror")
    assert has_statuses(nodes[2], {"db1": "up"})


@pytest.mark.skipif(bool(sshnet.unavailable()), reason=str(sshnet.unavailable()))
def test_each_node_runs_an_ssh_scope_through_its_own_master(cluster, tmp_path):
    remote = sshnet.RemoteHost(tmp_path / "sshd").up()
    try:
        nodes, _ = cluster(checks=f"status_from_files db1\n{remote.settings()}"
                           f"connect_timeout = 1\n[ssh:db3]\naddress = {remote.address}\n"
                           f"report\n")
        for n in nodes:
            n.script("checks", "report", REPORT)
        start_all(nodes, db1="up")
        wait_for(lambda: all(committed(n, "db3", "up")() for n in nodes), 30, "db3 up")
        wait_for(lambda: all(n.cluster()["results"].get(m.name, {}).get("db3") == "up"
                             for n in nodes for m in nodes), 30, "every node's opinion: up")
        wait_for(lambda: [len(masters(n)) for n in nodes] == [1, 1, 1], 30, "a master each")
        wait_for(lambda: len(remote.connections()) == 3, 30, "three connections")
        remote.demo("stop")  # every node sees it: unknown by a majority, not down
        wait_for(lambda: committed(nodes[0], "db3", "unknown")(), 30, "db3 unknown")
        for n in nodes:
            n.daemon.stop()
        assert [masters(n) for n in nodes] == [[], [], []]
    finally:
        remote.down()


def test_a_node_runs_what_its_own_config_resolved_and_nothing_looked_up_later(cluster):
    """A step planned by the leader runs on another node as that node's config resolved it at
    its last reload: an actions/echo created since does not shadow the echo on PATH, and a
    program that node's actions.conf does not name is not looked up at all."""
    nodes, log = cluster(names=("db1", "db2", "db3"),
                         actions="[slave_to_master on %HOST%]\necho %HOST%\n-printf x\n")
    leader = start_all(nodes, db1="slave", db2="slave")
    node = next(n for n in nodes if n.name in ("db1", "db2") and n.name != leader)
    node.write("actions.conf", "[slave_to_master on %HOST%]\necho %HOST%\n")
    assert node.cli("reload").returncode == 0
    node.script("actions", "echo", "#!/bin/sh\necho shadow \"$@\"\n")
    node.script("actions", "printf", "#!/bin/sh\necho shadow\n")
    everywhere(nodes, node.name, "master")

    def finished():
        jobs = [h for h in json.loads(node.cli("history", "--json").stdout)
                if h["host"] == node.name and h["to"] == "master"]
        return jobs and jobs[-1]["state"] in ("done", "failed") and jobs[-1]
    job = wait_for(finished, 30, "the job done")
    assert [(c["node"], c["output"]) for c in job["commands"]] == [
        (node.name, f"{node.name}\n"), (node.name, "")]
    assert job["commands"][1]["error"] == (
        f"'printf' is not a program of {node.name}'s config as loaded (each node runs what its "
        f"own actions.conf resolved)")


@pytest.fixture
def netcluster(tmp_path, server):
    why = netns_possible()
    if why:
        pytest.skip(why)
    names = ("n1", "n2", "n3")
    net = Network(f"ha{os.getpid() % 100000}", names)
    made = []
    try:
        (tmp_path / "etcd").mkdir()
        e = Etcd(tmp_path / "etcd", host="10.77.0.1", netns=net.hub, server=server)
        made.append(e)

        def make(actions):
            e.start()
            log = tmp_path / "actions.log"
            nodes = []
            for name in names:
                node = Node(tmp_path / name, name, e.endpoints, TTL, netns=net.ns[name],
                            log=log, actions=actions)
                node.script("actions", "slow", SLOW.format(log=log))
                nodes.append(node)
                made.append(node)
            return net, nodes, log
        yield make
    finally:
        for thing in reversed(made):
            thing.kill9() if isinstance(thing, Node) else thing.close()
        net.close()


def test_a_partitioned_leader_stops_starting_commands_and_the_majority_leads_on(netcluster):
    net, nodes, log = netcluster("""
        [slave_to_master]
        record a
        slow
        record c
        record d
        """)
    leader = start_all(nodes, db1="slave")
    old = next(n for n in nodes if n.name == leader)
    rest = [n for n in nodes if n is not old]
    everywhere(nodes, "db1", "master")
    wait_for(lambda: (old.root / "var/slow.pid").exists(), 30, "slow command running")
    net.cut(leader)
    t0 = time.monotonic()
    new = wait_for(lambda: new_leader(rest, leader), 30,
                   "a leader on the majority side")
    print(f"partitioned leader {leader}; {new} leads after {time.monotonic() - t0:.2f}s")
    wait_for(lambda: any(line.endswith(" d") for line in read_log(log)), 30, "sequence done")
    net.heal(leader)
    wait_for(lambda: old.cluster().get("leader") == new and not old.cluster().get("stale"), 30,
             "the old leader follows after healing")
    time.sleep(2)  # nothing more may run on either side after healing
    lines = read_log(log)
    print("\n".join(lines))
    assert [line for line in lines if line.split()[-1] in ("a", "c", "d")] == [
        f"{leader} job=2 db1 slave->master resumed=0 a",
        f"{new} job=2 db1 slave->master resumed=1 c",
        f"{new} job=2 db1 slave->master resumed=1 d"]
    # The documented limit: the command running when the partition began finished there, and
    # the new holder ran it again, flagged HA_RESUMED=1.
    assert sorted(line for line in lines if line.endswith("slow")) == sorted([
        f"{leader} job=2 db1 slave->master resumed=0 slow",
        f"{new} job=2 db1 slave->master resumed=1 slow"])
    assert "etcd unreachable" in old.daemon_log()


def test_a_failing_command_stops_the_sequence_unless_marked(cluster):
    nodes, log = cluster(actions=KEEP_GOING)
    start_all(nodes, db1="down")
    history = wait_for(lambda: [h for h in json.loads(
        nodes[0].cli("history", "--json").stdout) if h["state"] == "failed"], 30, "job failed")
    assert [line.split()[-1] for line in read_log(log)] == ["one", "two"]
    assert [c["outcome"] for c in history[0]["commands"]] == [
        "ok", "failed", "ok", "failed", "not run"]
    assert "stopped at command 4" in history[0]["note"]


def test_old_job_records_are_pruned_from_etcd(cluster):
    nodes, log = cluster(names=("solo",), actions="[*_to_*]\nrecord %HOST%\n",
                         cluster_extra="keep_jobs = 2")
    start_all(nodes, db1="up")
    for i, status in enumerate(("down", "up", "down", "up"), start=2):
        nodes[0].set_status("db1", status)
        wait_for(lambda: len(read_log(log)) == i, 30, f"transition {i}")
    ids = wait_for(lambda: (lambda h: h if len(h) == 2 else None)(
        [j["id"] for j in json.loads(nodes[0].cli("history", "--json").stdout)]),
        30, "two jobs left")
    assert ids == [4, 5]


def reload_agent(node):
    """`hadaemon reload`, and wait until the node's agent took the new config (it says so)."""
    seen = node.daemon_log().count(AGENT_RELOADED)
    r = node.cli("reload")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: node.daemon_log().count(AGENT_RELOADED) > seen, 30,
             f"the agent of {node.name} took the reload")


def test_reload_reaches_the_leader_and_handover_needs_a_cluster(cluster, tmp_path):
    nodes, log = cluster(names=("solo",))
    start_all(nodes, db1="up")
    (nodes[0].root / "etc/actions.conf").write_text("[up_to_down]\nrecord reloaded %HOST%\n")
    reload_agent(nodes[0])
    nodes[0].set_status("db1", "down")
    wait_for(lambda: read_log(log), 30, "the reloaded section fired")
    assert read_log(log)[0].endswith("up->down resumed=0 reloaded db1")
    # the agent's etcd session cannot follow a changed [cluster]: kept until the next restart
    conf = nodes[0].root / "etc/checks.conf"
    conf.write_text(conf.read_text().replace(f"ttl = {TTL}", "ttl = 7"))
    r = nodes[0].cli("reload")
    assert r.returncode == 0 and "[cluster] changed: it takes effect at the next restart" \
        in r.stderr, r.stderr
    assert "reload: [cluster] changed" in nodes[0].daemon_log()
    single = Home(tmp_path / "single")
    single.write("checks.conf", "[daemon]\ninterval = 0.1\n[local]\nstatus_from_files db1\n")
    from conftest import Daemon
    d = Daemon(single).start()
    try:
        r = single.cli("handover")
        assert r.returncode == 1 and "handover needs cluster mode" in r.stderr
        # nor does single-node mode turn into a cluster node on reload
        single.write("checks.conf", f"[cluster]\netcd = {nodes[0].cluster_endpoints}\n"
                                    "[local]\nstatus_from_files db1\n")
        r = single.cli("reload")
        assert r.returncode == 0 and "[cluster] changed" in r.stderr, r.stderr
        assert "cluster" not in single.status()
    finally:
        d.stop()


@pytest.mark.every_etcd
def test_a_deposed_leaders_commit_fails_instead_of_landing(etcd):
    from hadaemon.cluster.keys import Keys
    from hadaemon.cluster.etcd import Etcd as Client, absent, created_at, put, value_is
    from hadaemon.cluster.store import EtcdJournal, EtcdStore, EtcdTable, Refused
    client = Client(parse_endpoints(etcd.endpoints))
    keys = Keys("/deposed/")
    store = EtcdStore(client, keys)
    table, journal = EtcdTable(store), EtcdJournal(store)

    def elect(name):
        lease = client.grant(5)
        ok, answer = client.txn_full([absent(keys.leader)], [put(keys.leader, name, lease)])
        assert ok
        rev = int(answer["header"]["revision"])
        return lease, [value_is(keys.leader, name), created_at(keys.leader, rev)]

    lease_a, guard_a = elect("a")
    with table.transaction(guard_a):
        table.set("db1", {"status": "up"})
    client.revoke(lease_a)  # a's lease ends (expiry or a cut-off look the same to etcd)
    lease_b, _ = elect("b")
    with pytest.raises(Refused):
        with table.transaction(guard_a):
            table.set("db1", {"status": "down"})
            journal.enqueue({"id": 1, "state": "queued"})
    assert table.status("db1") == "up" and journal.last_id()[1] == 0
    # the same name elected again is another leader key: the old guard still fails
    client.revoke(lease_b)
    elect("a")
    with pytest.raises(Refused):
        with table.transaction(guard_a):
            table.set("db1", {"status": "down"})
    assert table.status("db1") == "up"


def test_a_dead_holders_job_is_superseded_when_the_host_moved_on(cluster):
    nodes, log = cluster()
    leader = start_all(nodes, db1="slave")
    holder = next(n for n in nodes if n.name != leader)
    for n in nodes:
        (n.root / "etc/actions.conf").write_text(
            f"[slave_to_master on {holder.name}]\nslow\nrecord after\n")
        reload_agent(n)  # every agent has the new sections
    everywhere(nodes, "db1", "master")
    wait_for(lambda: (holder.root / "var/slow.pid").exists(), 30, "slow running on its node")
    holder.kill9()
    rest = [n for n in nodes if n is not holder]
    everywhere(rest, "db1", "slave")  # the host moves on while the job's claim still stands
    wait_for(lambda: all(committed(n, "db1", "slave")() for n in rest), 30, "db1 slave")
    job = wait_for(lambda: [h for h in json.loads(
        rest[0].cli("history", "--json").stdout) if h["id"] == 2 and h["state"] == "superseded"],
        30, "job superseded")[0]
    assert "db1 is slave now, not master" in job["note"]
    assert read_log(log) == []  # the killed slow never logged; "after" never ran


# -- an etcd that lost its data, or went back in time -------------------------------------------

REFUSES = "etcd does not hold this cluster's data: "


def refusing(nodes):
    return all(n.cluster().get("refused") for n in nodes)


@pytest.mark.every_etcd
def test_a_wiped_etcd_is_refused_until_cluster_init_and_nothing_fires_again(cluster, etcd):
    nodes, log = cluster(actions="[*_to_*]\nrecord %HOST%\n")
    start_all(nodes, db1="master", db2="slave")
    fired(log, 2)  # jobs 1 and 2: unknown -> master, unknown -> slave
    etcd.wipe()
    wait_for(lambda: refusing(nodes), 60, "every node refuses the empty etcd")
    everywhere(nodes, "db2", "master")  # a real change meanwhile: it waits for cluster-init
    time.sleep(2 * TTL)
    assert len(read_log(log)) == 2, read_log(log)  # no `unknown -> master` again, nothing
    detected = REFUSES + "the cluster's marker is missing from etcd"
    for n in nodes:
        assert n.daemon_log().count(detected) == 1, n.name
        assert n.status()["hosts"]["db1"]["status"] == "master"  # the mirror, kept
    text = nodes[0].cli("status").stdout
    assert "REFUSING: etcd does not hold this cluster's data" in text, text
    r = nodes[1].cli("transition", "db1", "slave")
    assert r.returncode == 1 and "hadaemon cluster-init" in r.stderr, r.stderr
    assert etcd.ctl("get", "--prefix", "/hatest/table/").stdout == ""
    # without --yes it says what it would do and writes nothing
    r = nodes[0].cli("cluster-init")
    print(r.stdout)
    assert r.returncode == 1 and "--yes" in r.stderr, r.stderr
    assert "the cluster's marker: MISSING" in r.stdout
    assert "set the job counter to #2: job ids go on from #3" in r.stdout
    assert "db1=master, db2=slave" in r.stdout
    for name in ("n1", "n2", "n3"):
        assert f"  {name}: marker " in r.stdout
    assert etcd.ctl("get", "/hatest/live/marker").stdout == ""
    r = nodes[0].cli("cluster-init", "--yes")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: not any(n.cluster().get("refused") for n in nodes) and one_leader(nodes),
             30, "every node acts again")
    wait_for(lambda: len(read_log(log)) == 3, 30, "db2's change committed, once")
    time.sleep(2)  # nothing more may fire
    lines = read_log(log)
    assert len(lines) == 3 and lines[2].endswith("job=3 db2 slave->master resumed=0 db2"), lines
    assert all("re-initialised" in n.daemon_log() for n in nodes)
    assert nodes[2].cli("cluster-init").returncode == 1  # nothing to re-initialise now


@pytest.mark.every_etcd
def test_an_etcd_restored_from_an_older_snapshot_is_refused_until_cluster_init(cluster, etcd,
                                                                              tmp_path):
    nodes, log = cluster(actions="[*_to_*]\nrecord %HOST%\n")
    start_all(nodes, db1="master", db2="slave")
    wait_for(lambda: [j["state"] for j in json.loads(nodes[0].cli("history", "--json").stdout)]
             == ["done", "done"], 30, "jobs 1 and 2 done")
    snap = etcd.snapshot(tmp_path / "early.db")
    everywhere(nodes, "db1", "slave")
    fired(log, 3)
    everywhere(nodes, "db2", "master")
    fired(log, 4)
    wait_for(lambda: all(has_statuses(n, {"db1": "slave", "db2": "master"}) for n in nodes), 30,
             "jobs 3 and 4 mirrored everywhere")
    etcd.restore(snap)
    wait_for(lambda: refusing(nodes), 60, "every node refuses the snapshot")
    time.sleep(2 * TTL)
    # etcd says db1 master, db2 slave again, and holds the nodes' old opinions too: trusted
    # (as on 53def2d), every mirror silently went back to that and job ids 3, 4 came next again
    assert len(read_log(log)) == 4, read_log(log)
    for n in nodes:
        reason = n.cluster()["refused"]
        assert "restored from an older snapshot" in reason or "refuses this etcd" in reason, \
            reason
        assert n.daemon_log().count(REFUSES) == 1, n.name
    r = nodes[1].cli("cluster-init", "--yes")
    print(r.stdout)
    assert r.returncode == 0, r.stderr
    assert "set the job counter to #4" in r.stdout and "db1=slave, db2=master" in r.stdout
    wait_for(lambda: not any(n.cluster().get("refused") for n in nodes) and one_leader(nodes),
             30, "every node acts again")
    time.sleep(2)  # nothing may fire again after cluster-init
    assert len(read_log(log)) == 4
    assert all(has_statuses(n, {"db1": "slave", "db2": "master"}) for n in nodes)
    everywhere(nodes, "db1", "master")
    wait_for(lambda: len(read_log(log)) == 5, 30, "the next transition")
    assert read_log(log)[4].endswith("job=5 db1 slave->master resumed=0 db1"), read_log(log)


@pytest.mark.every_etcd
def test_cluster_init_writes_statuses_counter_marker_and_closes_open_jobs(etcd):
    """What `cluster-init --yes` writes over an older snapshot's state, and that a second
    write from the same (now stale) survey is refused whole."""
    from hadaemon.cluster import reinit
    from hadaemon.cluster.keys import Keys
    from hadaemon.cluster.etcd import Etcd as Client, jput, put
    client, keys = Client(parse_endpoints(etcd.endpoints)), Keys("/hatest/")
    assert client.txn([], [
        jput(keys.marker, {"id": "abc", "generation": 1}), put(keys.seq, "3"),
        jput(keys.job(3), {"id": 3, "state": "running", "holder": "n1/1/1"}),
        put(keys.open_job(3), ""), put(keys.claim(3), "n1/1/1"),
        jput(keys.table + "db1", {"status": "master"}), jput(keys.table + "db9", {"status": "up"})])
    seen = reinit.survey(client, keys)
    sources = {"n1": {"node": "n1", "reason": "etcd is at revision 2", "marker": "abc",
                      "generation": 1, "refused_generation": 1, "seq": 5, "revision": 40,
                      "table": {"db1": {"status": "slave", "since": 1.0, "manual": False}},
                      "paused": None}}
    plan = reinit.plan(seen, sources)
    reinit.write(client, keys, seen, plan)
    assert json.loads(client.get(keys.marker))["generation"] == 2
    assert client.get(keys.seq) == b"5"
    assert json.loads(client.get(keys.job(3)))["state"] == "abandoned"
    assert client.get(keys.open_job(3)) is None and client.get(keys.claim(3)) is None
    assert sorted(client.range(keys.table)) == [keys.table + "db1"]
    assert json.loads(client.get(keys.table + "db1"))["status"] == "slave"
    with pytest.raises(reinit.NotDone, match="etcd changed while cluster-init wrote"):
        reinit.write(client, keys, seen, plan)
    assert json.loads(client.get(keys.marker))["generation"] == 2


MANY = r"""#!/bin/sh
# many START COUNT: hosts hSTART... (JSON) up, or as $HA_HOME/var/many-START says
s=up; [ -f "$HA_HOME/var/many-$1" ] && s=$(cat "$HA_HOME/var/many-$1")
awk -v a="$1" -v n="$2" -v s="$s" 'BEGIN { printf "["; for (i = a; i < a + n; i++) printf "%s{\"host\": \"h%05d\", \"status\": \"%s\"}", (i > a ? "," : ""), i, s; print "]" }'
"""


def many(start):
    """A check of the 1000 hosts from hSTART (a check reports 1000 at most)."""
    return f"[check:many{start}]\nscript = many\nargs = {start} 1000\ninterval = 2\n"


@pytest.mark.every_etcd
def test_thousands_of_hosts_commit_and_a_look_at_rest_reads_live_alone(cluster, etcd):
    """3 nodes, 3000 hosts each: all committed; at rest every look reads live/ alone (no
    opinion, no table entry); a check removed by a reload and a node killed take their votes
    away (one node alone then moves the hosts it alone reports); a forget."""
    starts = (0, 1000, 2000)
    nodes, _ = cluster(checks="".join(f"many{a}\n" for a in starts)
                       + "".join(many(a) for a in starts))
    n1, n2, n3 = nodes
    for n in nodes:
        n.script("checks", "many", MANY)
        n.start()
    everyone = {f"h{i:05d}" for i in range(3000)}
    last = {f"h{i:05d}" for i in range(2000, 3000)}

    def statuses(node, hosts):
        table = node.status().get("hosts", {})
        return {table.get(h, {}).get("status") for h in hosts}

    wait_for(lambda: all(statuses(n, everyone) == {"up"} for n in nodes), 180,
             "3000 hosts up on every node")
    # every node's votes of every host (a node whose lease ran out on a loaded machine joins
    # again and publishes them again)
    wait_for(lambda: all(set(n1.cluster().get("results", {}).get(n, {})) == everyone
                         for n in ("n1", "n2", "n3")), 60, "every node's votes")

    def read(node):
        return node.cluster().get("read") or {}

    def at_rest(node):
        r = read(node)
        return r.get("opinions") == 0 and r.get("table") == 0 and 0 < r.get("live", 0) < 30

    wait_for(lambda: all(at_rest(n) for n in nodes), 60, "looks at rest")
    for _ in range(10):  # every look meanwhile, whatever the tick: live/ alone
        assert all(at_rest(n) for n in nodes), [read(n) for n in nodes]
        time.sleep(0.3)

    # paused, the 3000 statuses at the pause are outside live/: a look at rest reads it alone
    n2.cli("pause", check=True)
    wait_for(lambda: all(n.cluster().get("paused") for n in nodes), 30, "paused everywhere")
    wait_for(lambda: all(at_rest(n) and read(n).get("pause") == 0 for n in nodes), 30,
             "looks at rest while paused")
    assert len(etcd.ctl("get", "--print-value-only", "/hatest/live/paused").stdout) < 200
    assert etcd.ctl("get", "--prefix", "--keys-only", "/hatest/pause/").stdout.split() == \
        ["/hatest/pause/000000", "/hatest/pause/000001"]  # 2000 statuses a part
    n3.cli("resume", check=True)
    wait_for(lambda: not any(n.cluster().get("paused") for n in nodes), 30, "resumed")
    assert etcd.ctl("get", "--prefix", "--keys-only", "/hatest/pause/").stdout.strip() == ""

    # n3's reload removes its check of the last thousand: its votes for them go
    conf = n3.root / "etc/checks.conf"
    conf.write_text(conf.read_text().replace("many2000\n", "").replace(many(2000), ""))
    n3.cli("reload", check=True)
    wait_for(lambda: not last & set(n1.cluster()["results"].get("n3", {})), 30,
             "n3 withdrew the last thousand")
    assert set(n1.cluster()["results"]["n3"]) == everyone - last
    # n2 killed: its lease expires and its votes go with it
    n2.kill9()
    wait_for(lambda: "n2" not in n1.cluster().get("results", {"n2": 1}), 30, "n2's votes gone")
    # n1 alone reports the last thousand now: its word alone moves them (against n2's up, it
    # could not: no majority)
    (n1.root / "var/many-2000").write_text("down\n")
    wait_for(lambda: statuses(n1, last) == {"down"} and statuses(n3, last) == {"down"}, 60,
             "the last thousand down, from n1 alone")
    assert statuses(n1, everyone - last) == {"up"}

    conf = n1.root / "etc/checks.conf"
    conf.write_text(conf.read_text().replace("many2000\n", "").replace(many(2000), ""))
    n1.cli("reload", check=True)
    wait_for(lambda: set(n1.cluster().get("unobserved", ())) == last, 30,
             "the last thousand unobserved")
    # said in a line or a few, not in a thousand
    said = re.findall(r"(\d+) hosts unobserved \(h0\d+, h0\d+ \.\.\. h0\d+\): no live node "
                      r"reports them; they keep their committed status down", n1.daemon_log())
    assert sum(map(int, said)) == 1000 and len(said) <= 10, said
    r = n3.cli("forget", "h02000")
    assert r.returncode == 0 and "h02000 forgotten" in r.stdout, r
    for n in (n1, n3):
        wait_for(lambda: "h02000" not in n.status().get("hosts", {"h02000": 1}), 30,
                 f"h02000 gone on {n.name}")
    assert set(n1.cluster()["unobserved"]) == last - {"h02000"}

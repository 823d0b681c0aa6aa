"""The leader's rule (cluster/leader.py) over the real etcd store code, on an in-memory etcd.

FakeEtcd stands in for the etcd client (cluster/etcd.py's Etcd: the same methods, the same v3
JSON transactions, compares and revisions) so that the leader, EtcdStore, EtcdTable and
EtcdJournal run unchanged and no process starts. etcd itself: tests/test_cluster.py.
"""

import base64
import json
import logging
from dataclasses import replace

from hadaemon.cluster import clusterid
from hadaemon.cluster.agent import publication
from hadaemon.cluster.etcd import delete, jput, put
from hadaemon.cluster import leader, parts
from hadaemon.cluster.jobs import AT_COMMIT, environment, fence_job, transition_job
from hadaemon.cluster.keys import Keys, split_live
from hadaemon.cluster.leader import Leader, View, forget_refusal
from hadaemon.cluster.settings import ClusterSettings
from hadaemon.cluster.store import EtcdJournal, EtcdStore, EtcdTable
from hadaemon.cluster.sync import Ranges
from hadaemon.config import ActionSection, CheckSpec, Command, Config, DaemonSettings
from hadaemon.job import Job


def _key(text):
    return base64.b64decode(text).decode() if text else ""


class FakeEtcd:
    """An in-memory etcd: keys with value, lease, create and mod revision; one revision per
    write."""

    def __init__(self):
        self.kv, self.revision, self.leases = {}, 1, set()

    def get(self, key):
        return self.kv[key][0] if key in self.kv else None

    def range(self, prefix):
        return {k: v for k, v in sorted(self.kv.items()) if k.startswith(prefix)}

    def changes(self, prefix, since=None):
        """etcd's range with min_mod_revision: count is the whole range's."""
        found = self.range(prefix)
        return ({k: v for k, v in found.items() if since is None or v[3] > since}, len(found),
                self.revision)

    def read(self, prefixes=(), keys=()):
        return ([self.range(p) for p in prefixes],
                [{k: self.kv[k]} if k in self.kv else {} for k in keys],
                {"cluster_id": "1", "revision": self.revision})

    def txn(self, compare, success, failure=()):
        return self.txn_full(compare, success, failure)[0]

    def txn_full(self, compare, success, failure=()):
        ok = all(self._holds(c) for c in compare)
        branch = success if ok else failure
        if any("request_put" in op or "request_delete_range" in op for op in branch):
            self.revision += 1
        responses = [self._apply(op) for op in branch]
        return ok, {"succeeded": ok, "header": {"revision": self.revision},
                    "responses": responses}

    def _holds(self, c):
        key = _key(c["key"])
        if c["target"] == "VALUE":
            return self.get(key) == base64.b64decode(c["value"])
        return (self.kv[key][2] if key in self.kv else 0) == c["create_revision"]

    def _apply(self, op):
        if "request_put" in op:
            p = op["request_put"]
            key = _key(p["key"])
            created = self.kv[key][2] if key in self.kv else self.revision
            self.kv[key] = (base64.b64decode(p["value"]), p.get("lease", 0), created,
                            self.revision)
        elif "request_delete_range" in op:
            d = op["request_delete_range"]
            start, end = _key(d["key"]), _key(d.get("range_end"))
            for k in [k for k in self.kv if k == start or (end and start <= k < end)]:
                del self.kv[k]
        return {}

    def grant(self, ttl):
        lease = len(self.leases) + 100
        self.leases.add(lease)
        return lease

    def revoke(self, lease):
        """Also what etcd does when a lease expires: its keys go."""
        self.leases.discard(lease)
        for k in [k for k, (_, lease_of, *_) in self.kv.items() if lease_of == lease]:
            del self.kv[k]
        self.revision += 1


def config(hold_down=0.0, on_resume="last"):
    """One section for every transition: each job has a command to run."""
    record = Command("record %HOST%", ("record", "%HOST%"), "/bin/true", False, "actions.conf:2")
    return Config(DaemonSettings(hold_down=hold_down, on_resume=on_resume), (),
                  (ActionSection("*_to_*", "*", "*", (record,)),),
                  ClusterSettings(etcd="http://127.0.0.1:2379", node="a"))


class Cluster:
    """Node a leads nodes a, b, c; their opinions are written as their agents publish them."""

    def __init__(self, cfg):
        self.config, self.etcd, self.keys = cfg, FakeEtcd(), Keys("/t/")
        self.store = EtcdStore(self.etcd, self.keys)
        self.view, self.lease = View(), self.etcd.grant(10)
        self.leader = Leader("a", cfg, self.etcd, self.store, self.view, lambda: self.lease,
                             lambda: 10.0)
        for node in "abc":
            self.etcd.txn([], [jput(self.keys.node(node), {"pid": 1}, self.lease),
                               put(self.keys.stamp(node), "0", self.lease)])
        self.requests = 0
        self.ranges = Ranges(self.keys)
        self.published = {}  # node -> its opinions as published

    def see(self, **opinions):
        """opinions: node -> {host: status}, published as its agent does (the changes)."""
        for node, hosts in opinions.items():
            before = self.published.get(node, {})
            changed = {h for h in set(before) | set(hosts) if before.get(h) != hosts.get(h)}
            for _, ops in publication(self.keys, node, self.lease, hosts, changed):
                self.etcd.txn([], ops)
            self.published[node] = dict(hosts)

    def request(self, **request):
        self.requests += 1
        self.etcd.txn([], [jput(f"{self.keys.requests}b-1-{self.requests:09d}",
                                dict(request, node="b"))])

    def look(self):
        """The agent's look at etcd, taken in by the view."""
        live, _ = clusterid.look(self.etcd, self.keys)
        split = split_live(self.keys, live)
        opinions, table = self.ranges.refresh(self.etcd, split.stamps, split.table_stamp,
                                              split.paused_stamp)
        return self.view.read(self.keys, live, opinions, {
            h: json.loads(v) if v is not None else None for h, v in table.items()},
            self.ranges.pause.known)

    def tick(self):
        self.leader.step(self.config, self.look())

    def status(self, host):
        return EtcdTable(self.store).status(host)

    def jobs(self):
        return [json.loads(v) for v, *_ in self.etcd.range(self.keys.jobs).values()]

    def close(self, job_id):
        """A runner finished the job."""
        self.etcd.txn([], [delete(self.keys.open_job(job_id))])


def test_a_strict_majority_commits_with_one_job():
    c = Cluster(config())
    c.see(a={"db1": "up"}, b={"db1": "up"}, c={"db1": "down"})
    c.tick()
    assert c.leader.leading()
    assert c.status("db1") == "up"
    (job,) = c.jobs()
    assert (job["id"], job["host"], job["source"], job["target"], job["state"]) == \
        (1, "db1", "unknown", "up", "queued")
    assert job["plan"][0]["argv"] == ["record", "db1"]
    c.tick()
    assert len(c.jobs()) == 1  # committed once


def test_no_majority_commits_nothing():
    c = Cluster(config())
    c.see(a={"db1": "up"}, b={"db1": "down"}, c={"db2": "up"})
    c.tick()
    assert c.status("db1") == "unknown"
    assert [j["host"] for j in c.jobs()] == ["db2"]  # one node reporting db2 is its majority


def test_hold_down_holds_until_its_key_expires(caplog):
    c = Cluster(config(hold_down=5))
    c.see(a={"db1": "up"}, b={"db1": "up"})
    c.tick()
    ((_, (_, hold_lease, *_)),) = c.etcd.range(c.keys.hold).items()
    c.see(a={"db1": "down"}, b={"db1": "down"})
    with caplog.at_level(logging.INFO, "hadaemon.agent"):
        c.tick()
        c.tick()
    assert c.status("db1") == "up"
    assert sum("hold-down: db1 stays up for now, not down" in m for m in caplog.messages) == 1
    c.etcd.revoke(hold_lease)  # hold_down seconds later, on etcd's clock
    c.tick()
    assert c.status("db1") == "down"
    assert [j["target"] for j in c.jobs()] == ["up", "down"]


def test_the_hold_down_of_another_nodes_check_holds_too():
    """A [node:b] check with hold_down = 5 is not run on the leader a, but holds its hosts."""
    check = CheckSpec("disk", ("/bin/true",), "b", 1.0, 1.0, 1, 5.0, "checks.conf:9", node="b")
    c = Cluster(replace(config(), elsewhere=(check,)))
    c.see(b={"b": "up"})
    c.tick()
    assert list(c.etcd.range(c.keys.hold)) == [c.keys.hold + "b"]
    c.see(b={"b": "down"})
    c.tick()
    assert c.status("b") == "up"


def test_a_manual_job_holds_its_host_until_it_is_closed():
    c = Cluster(config())
    c.see(a={"db1": "up"}, b={"db1": "up"})
    c.tick()
    c.request(cmd="transition", host="db1", status="maintenance")
    c.tick()
    assert c.status("db1") == "maintenance"
    manual = c.jobs()[-1]
    assert manual["manual"] and manual["state"] == "queued"
    assert not c.etcd.range(c.keys.requests)  # served, so deleted
    c.tick()
    assert c.status("db1") == "maintenance"  # the majority's up waits for the sequence
    c.close(manual["id"])
    c.tick()
    assert c.status("db1") == "up"
    assert [j["target"] for j in c.jobs()] == ["up", "maintenance", "up"]


def test_resume_fires_each_net_change_once():
    c = Cluster(config())
    c.see(a={"db1": "up", "db2": "up", "db3": "up"}, b={"db1": "up", "db2": "up", "db3": "up"})
    c.tick()
    c.request(cmd="pause")
    c.tick()
    # db1 changes and changes back, db2 twice, db3 once: all recorded, none run
    c.see(a={"db1": "down", "db2": "down", "db3": "down"},
          b={"db1": "down", "db2": "down", "db3": "down"})
    c.tick()
    c.see(a={"db1": "up", "db2": "standby", "db3": "down"},
          b={"db1": "up", "db2": "standby", "db3": "down"})
    c.tick()
    paused = c.jobs()[3:]
    assert {j["state"] for j in paused} == {"skipped"} and len(paused) == 5
    c.request(cmd="resume")
    c.request(cmd="resume")  # a second resume finds nothing paused
    c.tick()
    c.tick()
    fired = [(j["host"], j["source"], j["target"]) for j in c.jobs()[8:]]
    assert fired == [("db2", "up", "standby"), ("db3", "up", "down")]
    assert {j["note"] for j in c.jobs()[8:]} == {"fired on resume"}
    assert c.etcd.get(c.keys.paused) is None


def test_a_pause_of_many_hosts_keeps_live_small_and_a_resume_cut_short_fires_none_twice(
        monkeypatch):
    """The statuses at the pause go in parts outside live/ (etcd takes 1.5 MiB a request; at
    100 000 hosts they are more); a resume refused half-way marks what it fired in one more
    part, so serving it again fires the rest only; its end deletes every part."""
    monkeypatch.setattr(leader, "COMMIT_BATCH", 4)
    monkeypatch.setattr(parts, "PART_HOSTS", 3)
    c = Cluster(config())
    hosts = {f"db{i:02d}": "up" for i in range(10)}
    c.see(a=hosts, b=hosts)
    c.tick()
    c.request(cmd="pause")
    c.tick()
    assert len(c.etcd.get(c.keys.paused)) < 100
    assert sorted(c.etcd.range(c.keys.pause)) == [c.keys.pause_part(n) for n in range(4)]
    down = dict.fromkeys(hosts, "down")
    c.see(a=down, b=down)
    c.tick()
    assert c.view.paused["statuses"] == hosts  # read back from the parts
    refuse = {"n": 0}
    commit_all = c.leader.commit_all

    def deposed_at_the_third(*args, **kw):
        refuse["n"] += 1
        return refuse["n"] != 3 and commit_all(*args, **kw)
    monkeypatch.setattr(c.leader, "commit_all", deposed_at_the_third)
    c.request(cmd="resume")
    c.tick()
    assert c.etcd.get(c.keys.paused) is not None  # not served to its end
    c.tick()  # the request is still there: served again
    fired = [j["host"] for j in c.jobs() if j["note"] == "fired on resume"]
    assert sorted(fired) == sorted(hosts)  # each once
    assert c.etcd.get(c.keys.paused) is None and not c.etcd.range(c.keys.pause)


def test_a_deposed_leader_commits_nothing():
    c = Cluster(config())
    c.see(a={"db1": "up"}, b={"db1": "up"})
    c.tick()
    c.etcd.txn([], [delete(c.keys.leader)])
    c.etcd.txn([], [jput(c.keys.leader, "b")])  # b won an election meanwhile
    c.see(a={"db1": "down"}, b={"db1": "down"})
    c.look()
    assert c.leader.leading()  # a has not looked at the leader key since
    c.leader.lead({}, [])  # its guard fails
    assert c.status("db1") == "up" and len(c.jobs()) == 1
    assert not c.leader.leading()


def test_a_new_leader_queues_the_fence_of_a_dead_previous_one_first():
    cfg = config()
    c = Cluster(Config(cfg.daemon, (), cfg.sections,
                       ClusterSettings(etcd="http://127.0.0.1:2379", node="a", fence="fence-it")))
    c.etcd.txn([], [put(c.keys.last_leader, "z")])  # z led, and is gone
    c.see(a={"db1": "up"}, b={"db1": "up"})
    c.tick()
    fence, job = c.jobs()
    assert (fence["id"], fence["kind"], fence["host"]) == (1, "fence", "z")
    assert fence["plan"][0]["argv"] == ["fence-it", "z"]
    assert (job["id"], job["host"]) == (2, "db1")


def test_transition_and_fence_jobs_have_one_shape():
    t = transition_job(config(), 3, {"db1": "up"}, "db1", "up", "down", "a")
    f = fence_job("fence-it -f", 60.0, 4, "b", "a")
    assert set(t) == set(f)
    assert Job.from_dict(t).to_dict() == t and Job.from_dict(f).to_dict() == f  # as runners read
    assert f["plan"][0]["argv"] == ["fence-it", "-f", "b"] and f["plan"][0]["node"] == "a"
    assert (f["kind"], f["host"], f["state"], f["holder"]) == ("fence", "b", "queued", "")
    # Its variables are not in it: the runner reads the table its commit left, in etcd.
    assert (t["kind"], t["state"], t["env"]) == ("transition", "queued", AT_COMMIT)
    env = environment(Job.from_dict(t), {"db1": "down", "db2": "down", "db3": "up"})
    assert (env["HA_HOST"], env["HA_DOWN"], env["HA_UP"]) == ("db1", "db1 db2", "db3")


# -- forget ----------------------------------------------------------------------------------

def test_forget_is_refused_while_a_node_reports_the_host_or_its_sequence_is_open():
    table = {"db9": {"status": "master"}}
    assert forget_refusal("db9", table, {"a": {"db1": "up"}, "b": {}}, []) is None
    assert forget_refusal("db8", table, {}, []) == "db8: no such host in the table"
    assert forget_refusal("db9;x", table, {}, []) == "invalid host: 'db9;x'"
    assert forget_refusal(["db9"], table, {"a": {"db9": "up"}}, []) == "invalid host: ['db9']"
    why = forget_refusal("db9", table, {"c": {"db9": "down"}, "a": {"db9": "up"}},
                         [{"id": 4, "host": "db9"}])
    assert why.startswith("db9 is still reported by node a, c (the latest results of its "
                          "checks name it)"), why
    assert forget_refusal("db9", table, {"a": {}}, [{"id": 3, "host": "db1"}, {
        "id": 4, "host": "db9"}]) == ("db9: its sequence (job #4) has not ended yet: forget "
                                      "it once it has")


def answer_to(c, request_id):
    raw = c.etcd.get(c.keys.answers + request_id)
    return json.loads(raw) if raw else None


def test_forget_removes_the_host_once_no_node_reports_it_and_answers_the_asker(caplog):
    c = Cluster(config(hold_down=60))
    c.see(a={"db1": "up", "db9": "master"}, b={"db1": "up"})
    c.tick()
    c.close(2)
    c.request(cmd="forget", host="db9", id="b-1")
    c.tick()
    assert answer_to(c, "b-1") == {
        "ok": False, "node": "b", "leader": "a",
        "error": "db9 is still reported by node a (the latest results of its checks name it): "
                 "take it out of those checks first (a reload of that node withdraws its "
                 "opinion)"}
    assert c.status("db9") == "master" and not c.etcd.range(c.keys.requests)
    c.see(a={"db1": "up"})  # a's reload removed its check of db9
    c.request(cmd="forget", host="db9", id="b-2")
    with caplog.at_level(logging.INFO, "hadaemon.agent"):
        c.tick()
    assert answer_to(c, "b-2") == {"ok": True, "was": "master", "node": "b", "leader": "a"}
    assert c.etcd.get(c.keys.table + "db9") is None
    assert c.etcd.get(c.keys.hold + "db9") is None  # a new host is not held down
    assert c.etcd.get(c.keys.hold + "db1") is not None
    assert any(m.startswith("forgot host db9 (was master") for m in caplog.messages)
    # Answers live on a lease of their own, for the asker to read.
    assert c.etcd.kv[c.keys.answers + "b-2"][1] in c.etcd.leases
    c.request(cmd="forget", host="db9", id="b-3")
    c.tick()
    assert answer_to(c, "b-3")["error"] == "db9: no such host in the table"
    # Reported again: a new host, from unknown, in nobody's %STATUS% meanwhile.
    c.see(a={"db1": "up", "db9": "slave"})
    c.tick()
    job = c.jobs()[-1]
    assert (job["host"], job["source"], job["target"]) == ("db9", "unknown", "slave")


def test_forget_waits_for_the_hosts_sequence_and_a_deposed_leader_forgets_nothing():
    c = Cluster(config())
    c.see(a={"db9": "master"})
    c.tick()
    c.see(a={})
    c.request(cmd="forget", host="db9", id="b-1")
    c.tick()
    assert "job #1) has not ended yet" in answer_to(c, "b-1")["error"]
    c.close(1)
    c.request(cmd="forget", host="db9", id="b-2")
    look = c.look()
    c.etcd.txn([], [delete(c.keys.leader)])
    c.etcd.txn([], [jput(c.keys.leader, "b")])  # b won an election meanwhile
    c.leader.lead(look.requests, look.open_ids)  # a's guard fails
    assert c.status("db9") == "master" and answer_to(c, "b-2") is None
    assert c.etcd.range(c.keys.requests)  # the request waits for the next leader


def test_open_jobs_are_read_a_batch_at_a_time_fence_jobs_first():
    class Counting(FakeEtcd):
        requests = 0

        def get(self, key):
            Counting.requests += 1
            return super().get(key)

        def read(self, prefixes=(), keys=()):
            Counting.requests += 1
            assert len(prefixes) + len(keys) <= 128  # etcd's --max-txn-ops
            return super().read(prefixes, keys)

    etcd, keys = Counting(), Keys("/t/")
    store = EtcdStore(etcd, keys)
    journal = EtcdJournal(store)
    jobs = [transition_job(config(), i, {}, f"h{i}", "up", "down", "a") for i in range(1, 250)]
    jobs.insert(199, fence_job("fence-it", 60.0, 250, "z", "a"))
    for i in range(0, len(jobs), 40):
        with store.transaction():
            journal.enqueue(*jobs[i:i + 40])
    Counting.requests = 0
    found = journal.open_jobs(list(range(1, 251)))
    # A burst of n jobs used to cost n requests per look (n² in all): now one per 100.
    assert Counting.requests == 3
    assert [j["id"] for _, j in found] == [250] + list(range(1, 250))


def writes(c):
    """Write transactions so far (FakeEtcd: one revision each)."""
    return c.etcd.revision


def test_the_rule_commits_many_hosts_in_few_transactions_and_the_same_jobs(monkeypatch):
    c = Cluster(config())
    c.tick()  # a leads
    hosts = {f"h{i:03d}": "up" for i in range(70)}
    c.see(a=hosts, b=hosts)
    before = writes(c)
    c.tick()
    jobs = c.jobs()
    assert [(j["id"], j["host"], j["source"], j["target"]) for j in jobs] == [
        (i + 1, h, "unknown", "up") for i, h in enumerate(sorted(hosts))]
    assert writes(c) - before == 3  # 30 + 30 + 10
    assert {h: c.status(h) for h in hosts} == hosts
    # Jobs too big for one request to etcd go in more transactions, the same jobs.
    monkeypatch.setattr(leader, "TXN_BYTES", 3000)
    c.see(a=dict.fromkeys(hosts, "down"), b=dict.fromkeys(hosts, "down"))
    before = writes(c)
    c.tick()
    assert [(j["id"], j["host"], j["target"]) for j in c.jobs()[70:]] == [
        (71 + i, h, "down") for i, h in enumerate(sorted(hosts))]
    assert writes(c) - before > 3


def test_a_handover_request_goes_with_the_handover_so_no_next_leader_serves_it_again():
    c = Cluster(config())
    c.tick()  # a leads
    c.request(cmd="handover", to="b")
    (key, request), = c.look().requests.items()
    # Served, and nothing after it: the leader key and the request went in one transaction,
    # before the old leader could delete the request on its own (the next leader, b, campaigns
    # at once and would hand over again).
    assert c.leader.requests.serve(key, request)
    assert c.etcd.get(key) is None and c.etcd.get(c.keys.leader) is None
    assert json.loads(c.etcd.get(c.keys.handover)) == {"from": "a", "to": "b"}

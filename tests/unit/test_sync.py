"""Cluster mode at scale, the pure parts: what a node publishes, how a look reads only what
changed (cluster/sync.py), the wire messages cut to size, the hosts the leader's rule looks at.
etcd itself: tests/test_cluster.py (test_thousands_of_hosts_...)."""

import socket

import pytest

from hadaemon import wire
from hadaemon.cluster.agent import publication
from hadaemon.cluster.etcd import EtcdUnavailable, delete, jput, put
from hadaemon.cluster.keys import Keys, split_live
from hadaemon.cluster.leader import Leader, View, to_look_at
from hadaemon.cluster.store import EtcdStore
from hadaemon.cluster.sync import Ranges, apply_changes, replace_all
from unit.test_leader import Cluster, FakeEtcd, config

KEYS = Keys("/t/")


def test_changes_are_taken_in_unless_the_count_shows_a_deletion():
    known = {"a": b"up", "b": b"up"}
    assert apply_changes(known, {"b": b"down", "c": b"up"}, 3) == {"b": b"down", "c": b"up"}
    assert known == {"a": b"up", "b": b"down", "c": b"up"}
    # a deleted and d written: the range holds 3, not the 4 that known plus d would make
    assert apply_changes(known, {"d": b"up"}, 3) is None
    assert known == {"a": b"up", "b": b"down", "c": b"up"}  # untouched: read whole
    assert apply_changes(known, {"a": b"up"}, 3) == {}  # written again, the same


def test_a_range_read_whole_says_what_went():
    known = {"a": b"up", "b": b"up"}
    assert replace_all(known, {"b": b"down", "c": b"up"}) == {"a": None, "b": b"down",
                                                               "c": b"up"}
    assert known == {"b": b"down", "c": b"up"}


def publish(etcd, node, lease, opinions, hosts):
    for _, ops in publication(KEYS, node, lease, opinions, hosts):
        etcd.txn([], ops)


def look(etcd, ranges):
    split = split_live(KEYS, etcd.range(KEYS.live))
    return ranges.refresh(etcd, split.stamps, split.table_stamp)


def test_a_node_publishes_what_changed_in_batches_each_with_its_stamp():
    opinions = {f"h{i:03d}": "up" for i in range(250)}
    batches = list(publication(KEYS, "n1", 7, opinions, set(opinions) | {"gone"}))
    assert [len(hosts) for hosts, _ in batches] == [100, 100, 51]
    for hosts, ops in batches:
        assert len(ops) == len(hosts) + 1 and ops[-1] == put(KEYS.stamp("n1"), "250", 7)
    assert delete(KEYS.opinions("n1") + "gone") in batches[0][1]  # in host order
    assert put(KEYS.opinions("n1") + "h000", "up", 7) in batches[0][1]


def test_a_look_reads_a_range_only_when_its_stamp_moved_and_then_only_what_changed():
    etcd, ranges = FakeEtcd(), Ranges(KEYS)
    etcd.txn([], [put(KEYS.stamp("n1"), "0", 5)])
    opinions = {f"h{i:03d}": "up" for i in range(300)}
    publish(etcd, "n1", 5, opinions, set(opinions))
    assert look(etcd, ranges) == ({"n1": opinions}, {})
    assert ranges.read == 300
    assert look(etcd, ranges) == ({}, {}) and ranges.read == 0  # at rest: live/ alone
    opinions["h007"] = "down"
    publish(etcd, "n1", 5, opinions, {"h007"})
    assert look(etcd, ranges) == ({"n1": {"h007": "down"}}, {}) and ranges.read == 1
    del opinions["h008"]
    publish(etcd, "n1", 5, opinions, {"h008"})
    # the count shows one key fewer: the range is read whole, once
    assert look(etcd, ranges) == ({"n1": {"h008": None}}, {}) and ranges.read == 299
    assert look(etcd, ranges) == ({}, {}) and ranges.read == 0


def test_a_node_gone_takes_its_opinions_and_one_that_joins_again_is_read_whole():
    etcd, ranges = FakeEtcd(), Ranges(KEYS)
    lease = etcd.grant(10)
    etcd.txn([], [put(KEYS.stamp("n2"), "0", lease)])
    publish(etcd, "n2", lease, {"a": "up", "b": "up"}, {"a", "b"})
    look(etcd, ranges)
    etcd.revoke(lease)  # its lease expired: stamp and opinions go together
    assert look(etcd, ranges) == ({"n2": {"a": None, "b": None}}, {})
    lease = etcd.grant(10)
    etcd.txn([], [put(KEYS.stamp("n2"), "0", lease)])
    publish(etcd, "n2", lease, {"b": "down"}, {"b"})
    assert look(etcd, ranges) == ({"n2": {"b": "down"}}, {})


def test_the_table_is_read_through_its_stamp_and_a_reset_compares_it_whole():
    etcd, ranges = FakeEtcd(), Ranges(KEYS)
    etcd.txn([], [jput(KEYS.table + "a", {"status": "up"})])  # a table written before stamps
    assert look(etcd, ranges) == ({}, {"a": b'{"status": "up"}'})
    etcd.txn([], [jput(KEYS.table + "b", {"status": "up"}), put(KEYS.table_stamp, "")])
    assert look(etcd, ranges) == ({}, {"b": b'{"status": "up"}'}) and ranges.read == 2
    etcd.txn([], [jput(KEYS.table + "c", {"status": "up"}), put(KEYS.table_stamp, "")])
    assert look(etcd, ranges) == ({}, {"c": b'{"status": "up"}'}) and ranges.read == 1
    etcd.txn([], [delete(KEYS.table + "a")])  # without the stamp: not seen...
    assert look(etcd, ranges) == ({}, {})
    ranges.reset()  # ...until the next read whole
    assert look(etcd, ranges) == ({}, {"a": None})


def test_a_message_with_many_hosts_is_split_into_datagrams_a_socket_takes():
    statuses = {f"host{i:06d}.example.com": "up" for i in range(100000)}
    whole = wire.Opinions(statuses)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with a, b:
        with pytest.raises(OSError):
            a.send(wire.encode(whole))  # what the supervisor did before: dropped
        parts = wire.split(whole, "statuses")
        taken = {}
        for part in parts:
            data = wire.encode(part)
            assert len(data) <= wire.DATAGRAM
            a.send(data)
            taken.update(wire.decode(b.recv(1 << 20)).statuses)
        assert taken == statuses and len(parts) > 1
    state = {"leader": "n1"}
    report = wire.split(wire.Report(state, {"h1": None}, {"x": {"ok": True}}, {
        f"h{i}": {"n1": "up"} for i in range(20000)}), "table", "votes", limit=4096)
    assert [r.more for r in report] == [True] * (len(report) - 1) + [False]
    assert all(r.cluster == state and r.answers == {"x": {"ok": True}} for r in report)
    assert report[0].table == {"h1": None} and sum(len(r.votes) for r in report) == 20000


def test_the_rule_looks_at_every_host_once_per_leadership_then_at_what_changed():
    opinions = {"n1": {"a": "up", "b": "up"}, "n2": {"c": "down"}}
    assert to_look_at(opinions, {"b"}, True) == ["a", "b", "c"]
    assert to_look_at(opinions, {"b"}, False) == ["b"]
    assert to_look_at(opinions, set(), False) == []


def test_a_new_leader_rules_on_every_host_though_nothing_changed_since_it_looked():
    """b follows while a leads and never commits (dies first): b's looks saw every opinion
    come in; when b leads, nothing has changed since, and it must commit all the same."""
    c = Cluster(config())
    c.etcd.txn([], [put(c.keys.leader, "a", c.lease)])  # a leads
    view = View()
    b = Leader("b", c.config, c.etcd, EtcdStore(c.etcd, c.keys), view, lambda: c.lease,
               lambda: 10.0)
    c.view, c.leader = view, b
    c.see(a={"db1": "up"}, b={"db1": "up"})
    c.tick()
    c.tick()
    assert b.node == "a" and c.status("db1") == "unknown"
    c.etcd.txn([], [delete(c.keys.leader)])
    c.tick()  # b campaigns and leads
    assert b.leading() and c.status("db1") == "up"


class Cut(FakeEtcd):
    """etcd that stops answering after `answers` more reads of a range."""

    answers = None

    def changes(self, prefix, since=None):
        if self.answers is not None:
            if self.answers == 0:
                raise EtcdUnavailable("cut")
            self.answers -= 1
        return super().changes(prefix, since)


def test_what_a_look_cut_short_by_etcd_read_is_handed_on_by_the_next():
    etcd, ranges = Cut(), Ranges(KEYS)
    for node in ("n1", "n2"):
        etcd.txn([], [put(KEYS.stamp(node), "0", 5)])
        publish(etcd, node, 5, {"a": "up"}, {"a"})
    look(etcd, ranges)
    publish(etcd, "n1", 5, {"a": "down"}, {"a"})
    publish(etcd, "n2", 5, {"a": "down"}, {"a"})
    etcd.answers = 1  # n1's changes read, then etcd is gone
    with pytest.raises(EtcdUnavailable):
        look(etcd, ranges)
    etcd.answers = None
    assert look(etcd, ranges) == ({"n1": {"a": "down"}, "n2": {"a": "down"}}, {})


def test_what_a_look_read_is_counted_by_range_and_a_pause_ended_reads_none():
    etcd, ranges = FakeEtcd(), Ranges(KEYS)
    etcd.txn([], [put(KEYS.pause_part(0), '{"h1": "up"}'), put(KEYS.paused, '{"parts": 1}')])
    (live,), _, _ = etcd.read([KEYS.live])
    split = split_live(KEYS, live)
    ranges.refresh(etcd, {}, None, split.paused_stamp)
    assert ranges.read_by == {"opinions": 0, "table": 0, "pause": 1} and ranges.read == 1
    etcd.txn([], [delete(KEYS.paused)])  # resumed
    ranges.refresh(etcd, {}, None, None)
    assert ranges.read_by == {"opinions": 0, "table": 0, "pause": 0} and not ranges.pause.known

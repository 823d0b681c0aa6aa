"""The stale rule (hadaemon/stale.py): a check with no result for two intervals plus its timeout
is stale, and so are the hosts it reports."""

import logging
from types import SimpleNamespace

from hadaemon import stale


def check(cid, interval=1.0, timeout=2.0, host=""):
    return SimpleNamespace(id=cid, interval=interval, timeout=timeout, host=host)


def test_a_check_is_stale_past_two_intervals_plus_its_timeout():
    c = check("c", interval=1.0, timeout=2.0)
    assert stale.limit(c) == 4.0
    assert stale.stale_checks([c], {"c": 10.0}, 14.0) == {}
    assert stale.stale_checks([c], {"c": 10.0}, 14.5) == {"c": 4.5}
    assert stale.stale_checks([c], {}, 100.0) == {}  # not watched yet: not stale


def test_the_hosts_of_stale_checks_are_stale():
    assert stale.stale_hosts({"a": 5.0}, {"a": {"h2", "h1"}, "b": {"h3"}}) == ["h1", "h2"]
    assert stale.stale_hosts({"c": 5.0}, {"a": {"h1"}}) == []


def test_freshness_follows_results_and_logs_each_change_once(caplog):
    caplog.set_level(logging.INFO, logger="hadaemon")
    a, b = check("a", host="h9"), check("b", interval=10.0)
    f = stale.Freshness()
    # Before its first result a check counts from when it began to be watched; the table says
    # which hosts it reported before a restart.
    f.update([a, b], {"h1": {"check": "a"}, "h2": {"check": "x"}}, now=0.0)
    assert f.hosts["a"] == {"h1", "h9"} and f.stale == []
    f.result("a", ["h1"], 1.0)
    f.result("b", [], 1.0)
    assert not f.update([a, b], {}, 4.9)
    assert f.update([a, b], {}, 5.1) and f.stale == ["h1"] and list(f.checks) == ["a"]
    f.update([a, b], {}, 6.0)
    f.result("a", [], 6.5)  # a failure names no host: a still reports h1
    assert f.hosts["a"] == {"h1"}
    assert not f.update([a, b], {}, 7.0) and f.stale == []
    f.update([a, b], {}, 30.0)  # a again; b never named a host: the check itself is stale
    assert f.stale == ["h1"] and set(f.checks) == {"a", "b"}
    f.update([a, b], {}, 31.0)
    assert not f.update([], {}, 32.0) and f.last == {}  # a reload removed both
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        "h1: stale: check a has had no result for 4.1s", "h1: no longer stale",
        "h1: stale: check a has had no result for 23.5s",
        "check b: stale: no result for 29.0s", "h1: no longer stale"]



def test_freshness_says_which_checks_report_a_host():
    f = stale.Freshness()
    a, b = (SimpleNamespace(id=cid, interval=1.0, timeout=1.0, host="") for cid in "ab")
    f.update([a, b], {"h1": {"check": "b"}}, 0.0)  # before their first result: the table's
    assert f.reporting("h1") == ["b"] and f.reporting("h2") == []
    f.result("a", ["h1", "h2"], 1.0)
    assert f.reporting("h1") == ["a", "b"] and f.reporting("h2") == ["a"]
    f.result("a", [], 2.0)  # a failure naming no host: still the hosts of its last result
    assert f.reporting("h2") == ["a"]
    f.result("a", ["h1"], 3.0)
    f.update([b], {}, 3.0)  # a reload removed a
    assert f.reporting("h1") == ["b"] and f.reporting("h2") == []



def test_many_hosts_stale_at_once_are_one_line_per_check(caplog):
    """A stuck pool at 100 000 hosts must not log a line per host each way."""
    a, b = (SimpleNamespace(id=cid, interval=1.0, timeout=1.0, host="") for cid in "ab")
    f = stale.Freshness()
    f.update([a, b], {}, 0.0)
    f.result("a", [f"h{i:03d}" for i in range(100)], 1.0)
    f.result("b", [f"h{i:03d}" for i in range(90, 130)], 1.0)
    with caplog.at_level(logging.INFO, "hadaemon"):
        assert f.update([a, b], {}, 5.1) and len(f.stale) == 130
        f.result("a", [], 6.0)
        f.result("b", [], 6.0)
        f.update([a, b], {}, 6.5)
    assert [r.getMessage().split(": check")[0] for r in caplog.records] == [
        "100 hosts stale (h000, h001 ... h099)", "30 hosts stale (h100, h101 ... h129)",
        "130 hosts no longer stale (h000, h001 ... h129)"]

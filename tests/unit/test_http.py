"""The HTTP endpoint's pure parts: request heads, listen addresses, the answers and the
/metrics exposition over a snapshot dict shaped as the control socket's `snapshot` gives it."""

import json
import socket

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hadaemon import endpoints, httprequest, listen, metrics, page
from hadaemon.checkstats import Stats
from hadaemon.httpserver import encode

NOW = 1_000_000.0


def job(i, state, *outcomes):
    return {"id": i, "host": "db1", "from": "slave", "to": "master", "state": state,
            "commands": [{"outcome": o} for o in outcomes]}


def snapshot(history=(), cluster=None):
    stats = Stats()
    stats.record("check_a", 0.02, 0.001, failed=False)
    stats.record("check_a", 7.0, 0.3, failed=True)
    for turn in (0.0001, 0.0003, 0.004, 0.03):
        stats.turns.add(turn)
    status = {"ok": True, "hosts": {
        "db1": {"status": "master", "since": NOW - 100, "last_seen": NOW - 1, "stale": False,
                "check": "check_a", "details": {}, "observed": "master", "conflict": False},
        "db2": {"status": "down", "since": NOW - 5, "stale": True}},
        "daemon": {"workers": 2, "paused": False,
                   "stale": {"hosts": ["db2"], "checks": {"check_b": 12.5}}},
        "queue": [{"id": 3}]}
    if cluster:
        status["cluster"] = cluster
    return {"ok": True, "time": NOW, "status": status, "checks": stats.snapshot({"check_a"}),
            "turns": stats.turns.snapshot(),
            "statuses": ["down", "master", "slave", "unknown", "up", "warning"],
            "history": list(history)}


def samples(text):
    """{(name, sorted label items): value} of an exposition."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


# -- request heads -----------------------------------------------------------------------------

def test_a_request_line_gives_method_and_decoded_path_without_query():
    r = httprequest.parse(b"GET /hosts/db%2D1/master?x=1 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (r.method, r.path) == ("GET", "/hosts/db-1/master")
    assert httprequest.parse(b"HEAD /metrics HTTP/1.0\r\n\r\n").method == "HEAD"


@pytest.mark.parametrize("head", [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # a TLS hello
    b"GET /metrics\r\n\r\n",  # HTTP/0.9
    b"GET metrics HTTP/1.1\r\n\r\n",
    b"GET /metrics HTTP/2.0\r\n\r\n",
    b"GET /a b HTTP/1.1\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
    b"GET /m\xc3\xa9trics HTTP/1.1\r\n\r\n",
])
def test_garbage_is_a_bad_request(head):
    with pytest.raises(httprequest.BadRequest) as e:
        httprequest.parse(head)
    assert e.value.status == 400


def test_an_oversized_head_is_431():
    with pytest.raises(httprequest.BadRequest) as e:
        httprequest.parse(b"GET / HTTP/1.1\r\nX: " + b"a" * httprequest.MAX_HEAD + b"\r\n\r\n")
    assert e.value.status == 431


# -- listen = ----------------------------------------------------------------------------------

def test_listen_addresses(tmp_path):
    assert listen.parse("127.0.0.1:9105", tmp_path) == listen.Address(socket.AF_INET,
                                                                      "127.0.0.1", 9105)
    assert listen.parse("[::1]:9105", tmp_path) == listen.Address(socket.AF_INET6, "::1", 9105)
    assert listen.parse("localhost:80", tmp_path).host == "localhost"
    a = listen.parse("var/http.sock", tmp_path)  # var/ need not exist yet: start makes it
    assert a.family == socket.AF_UNIX and str(a) == str(tmp_path / "var/http.sock")
    assert listen.parse("/run/x.sock", tmp_path).path == "/run/x.sock"


@pytest.mark.parametrize("value, why", [
    ("9105", "expected HOST:PORT"), (":9105", "expected HOST:PORT"),
    ("127.0.0.1:0", "port must be 1 to 65535"), ("127.0.0.1:http", "port must be"),
    ("[zz]:80", "not an IPv6 address"), ("::1:80", "in brackets"),
    ("no/such/folder/http.sock", "does not exist"), ("a b:80", "not a host name")])
def test_bad_listen_values_say_why(tmp_path, value, why):
    with pytest.raises(ValueError, match=why):
        listen.parse(value, tmp_path)


# -- answers -----------------------------------------------------------------------------------

def get(path, snap=None, method="GET"):
    snap = snapshot() if snap is None else snap
    return endpoints.answer(httprequest.Request(method, path), snap,
                            lambda: metrics.render(snap, metrics.Tally()),
                            lambda: page.render(snap["status"], snap["history"], 1e9).encode())


def test_a_host_as_json_and_unknown_hosts_404():
    r = get("/hosts/db1")
    assert r.status == 200 and r.content_type == "application/json"
    assert json.loads(r.body) == dict(snapshot()["status"]["hosts"]["db1"], host="db1")
    assert get("/hosts/db3").status == 404
    assert get("/hosts/..").status == 404


def test_health_answers_200_only_for_the_hosts_status():
    assert get("/hosts/db1/master").status == 200
    assert get("/hosts/db1/slave").status == 503
    assert get("/hosts/db2/down").status == 200
    assert get("/hosts/db1/mastre").status == 404  # undeclared: never true, say so
    assert get("/hosts/db9/master").status == 404


def test_read_only_no_data_and_unknown_paths():
    assert get("/hosts/db1/master", method="POST").status == 405
    assert get("/hosts").status == 404 and get("/index.html").status == 404
    for path in ("/hosts/db1/master", "/metrics", "/"):
        assert endpoints.answer(httprequest.Request("GET", path), None, None, None).status == 503


def test_the_root_is_the_status_page():
    r = get("/")
    assert r.status == 200 and r.content_type == "text/html; charset=utf-8"
    assert r.body.startswith(b"<!DOCTYPE html>") and b"db1" in r.body


def test_head_answers_without_body():
    r = get("/hosts/db1/master", method="HEAD")
    assert encode(r, head_only=True).endswith(b"\r\n\r\n")
    assert b"Content-Length: 14\r\n" in encode(r, head_only=True)


# -- /metrics ----------------------------------------------------------------------------------

def test_metrics_over_a_snapshot():
    snap = snapshot()
    s = samples(get("/metrics", snap).body.decode())
    assert s[("hadaemon_host_status", (("host", "db1"), ("status", "master")))] == 1
    assert s[("hadaemon_host_status", (("host", "db1"), ("status", "slave")))] == 0
    assert s[("hadaemon_host_status", (("host", "db2"), ("status", "down")))] == 1
    assert len([k for k in s if k[0] == "hadaemon_host_status"]) == 2 * 6
    assert s[("hadaemon_host_last_result_age_seconds", (("host", "db1"),))] == 1
    assert ("hadaemon_host_last_result_age_seconds", (("host", "db2"),)) not in s
    assert s[("hadaemon_host_last_change_age_seconds", (("host", "db1"),))] == 100
    assert s[("hadaemon_host_stale", (("host", "db2"),))] == 1
    assert s[("hadaemon_check_runs_total", (("check", "check_a"),))] == 2
    assert s[("hadaemon_check_failures_total", (("check", "check_a"),))] == 1
    d = "hadaemon_check_duration_seconds"
    assert s[(d + "_bucket", (("check", "check_a"), ("le", "0.025")))] == 1
    assert s[(d + "_bucket", (("check", "check_a"), ("le", "5.0")))] == 1
    assert s[(d + "_bucket", (("check", "check_a"), ("le", "10.0")))] == 2
    assert s[(d + "_bucket", (("check", "check_a"), ("le", "+Inf")))] == 2
    assert s[(d + "_sum", (("check", "check_a"),))] == pytest.approx(7.02)
    assert s[("hadaemon_check_lateness_seconds_bucket",
              (("check", "check_a"), ("le", "0.25")))] == 1
    t = "hadaemon_loop_turn_seconds"
    assert [s[(t + "_bucket", (("le", le),))] for le in ("0.0005", "0.005", "0.025", "0.05",
                                                          "+Inf")] == [2, 3, 3, 4, 4]
    assert s[(t + "_sum", ())] == pytest.approx(0.0344)
    assert s[("hadaemon_queue_length", ())] == 1
    assert s[("hadaemon_workers", ())] == 2
    assert s[("hadaemon_stale_checks", ())] == 1
    assert s[("hadaemon_paused", ())] == 0
    assert not [k for k in s if k[0].startswith("hadaemon_cluster")]


def test_transitions_and_commands_are_counted_once_when_ended():
    tally = metrics.Tally()
    tally.add([job(1, "done", "ok", "ok"), job(2, "running", "ok", "running")])
    assert tally.transitions == {"done": 1} and tally.commands == {"ok": 2}
    tally.add([job(1, "done", "ok", "ok"), job(2, "failed", "ok", "failed", "not run"),
               job(3, "skipped")])
    assert tally.transitions == {"done": 1, "failed": 1, "skipped": 1}
    assert tally.commands == {"ok": 3, "failed": 1, "not run": 1}
    snap = snapshot()
    s = samples(metrics.render(snap, tally).decode())
    assert s[("hadaemon_transitions_total", (("result", "failed"),))] == 1
    assert s[("hadaemon_commands_total", (("result", "not run"),))] == 1


def test_cluster_mode_names_the_node_the_leader_and_the_lease():
    cluster = {"name": "hadaemon", "node": "n1", "leader": "n2", "lease_left": 7.5,
               "stale": False, "paused": True}
    s = samples(metrics.render(snapshot(cluster=cluster), metrics.Tally()).decode())
    assert s[("hadaemon_cluster_node_info", (("cluster", "hadaemon"), ("node", "n1")))] == 1
    assert s[("hadaemon_cluster_leader_info", (("leader", "n2"),))] == 1
    assert s[("hadaemon_cluster_is_leader", ())] == 0
    assert s[("hadaemon_cluster_lease_left_seconds", ())] == 7.5
    assert s[("hadaemon_paused", ())] == 1

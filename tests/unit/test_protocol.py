"""What a check says and how the supervisor and its workers talk (hadaemon/protocol.py): the
JSON a check prints or its Nagios exit code, every way a result is rejected, the job message,
the results of a check that produced none, and the size of one message."""

import json
from types import SimpleNamespace

import pytest

from hadaemon import protocol
from hadaemon.protocol import Rejected, parse_output


def test_one_object_or_an_array_of_them_details_kept_status_lowered():
    assert parse_output(b'  {"host": "db1", "status": "UP", "lag": 3}\n', 0) == [
        {"host": "db1", "status": "up", "details": {"lag": 3}}]
    out = b'[{"host": "a", "status": "up"}, {"host": "b", "status": "master", "x": [1]}]'
    assert parse_output(out, 1, host="ignored") == [
        {"host": "a", "status": "up", "details": {}},
        {"host": "b", "status": "master", "details": {"x": [1]}}]  # JSON: exit code unused


@pytest.mark.parametrize("rc, status", [(0, "up"), (1, "warning"), (2, "down"), (3, "unknown"),
                                        (127, "unknown"), (-9, "unknown")])
def test_without_json_the_exit_code_is_read_the_nagios_way(rc, status):
    out = b"PING OK - 0.1 ms|rta=0.1ms\nsecond line\n"
    assert parse_output(out, rc, host="db1") == [
        {"host": "db1", "status": status,
         "details": {"exit": rc, "output": "PING OK - 0.1 ms|rta=0.1ms"}}]


def test_the_nagios_output_kept_is_the_first_line_cut_at_200_characters():
    [r] = parse_output(b"x" * 500, 0, host="h")
    assert r["details"]["output"] == "x" * 200
    assert parse_output(b"", 2, host="h")[0]["details"] == {"exit": 2, "output": ""}


@pytest.mark.parametrize("out, reason", [
    (b"\xff\xfe", "output is not UTF-8 (byte 0)"),
    (b"{oops", "invalid JSON: "),
    (b'{"host": "h", "status": "up", "x": Infinity}', "invalid JSON: Infinity is not a JSON"),
    (b"[]", "empty JSON array"),
    (b'"text"', "no JSON on stdout and no host= setting to apply exit code 0 to"),
    (b'[{"host": "h", "status": "up"}, {"host": "h", "status": "down"}]',
     "host 'h' reported more than once in one output"),
    (b'{"host": "h"}', "missing or non-string 'status'"),
    (b'[{"host": "h", "status": "up"}, {"status": "up"}]', "result 1: missing or non-string "
                                                           "'host'"),
    (b'{"host": "-rf", "status": "up"}', "unsafe host name '-rf'"),
    (b'{"host": "h", "status": "2up"}', "unsafe status '2up' (letters, digits and '-', "),
    (b"[7]", "result 0: expected a JSON object, got int"),
])
def test_a_result_that_cannot_be_used_is_rejected_with_its_reason(out, reason):
    with pytest.raises(Rejected) as e:
        parse_output(out, 0)
    assert str(e.value).startswith(reason), str(e.value)


def test_results_and_nesting_are_capped():
    at_most = [{"host": f"h{i}", "status": "up"} for i in range(protocol.MAX_RESULTS)]
    assert len(parse_output(json.dumps(at_most).encode(), 0)) == protocol.MAX_RESULTS
    over = at_most + [{"host": "one-more", "status": "up"}]
    with pytest.raises(Rejected, match=f"^{protocol.MAX_RESULTS + 1} results in one output"):
        parse_output(json.dumps(over).encode(), 0)
    deep = {"host": "h", "status": "up", "d": 0}
    for _ in range(protocol.MAX_DEPTH - 1):
        deep["d"] = [deep["d"]]
    assert parse_output(json.dumps(deep).encode(), 0)[0]["host"] == "h"  # at the limit
    deep["d"] = [deep["d"]]
    with pytest.raises(Rejected, match="nested deeper than 32 levels"):
        parse_output(json.dumps(deep).encode(), 0)


def test_the_job_message_carries_what_a_worker_needs_and_survives_the_wire():
    spec = SimpleNamespace(id="pg", argv=("check_pgsql", "-H", "db1"), timeout=5.0, host="db1",
                           remote=None)
    daemon = SimpleNamespace(output_limit=65536, user="nagios",
                             known_statuses=frozenset({"up", "down", "master"}))
    job = protocol.check_job(spec, daemon, 7)
    assert job == {"job": 7, "check": "pg", "argv": ["check_pgsql", "-H", "db1"], "timeout": 5.0,
                   "limit": 65536, "host": "db1", "user": "nagios",
                   "statuses": ["down", "master", "up"]}
    assert protocol.decode(protocol.encode(job)) == job


def test_a_job_message_is_encoded_once_per_check_and_config_and_numbered_each_time():
    spec = SimpleNamespace(id="pg", argv=("check_pgsql", "-H", "db1"), timeout=5.0, host="db1",
                           remote=None)
    daemon = SimpleNamespace(output_limit=65536, user="", known_statuses=frozenset({"up"}))
    jobs = protocol.Jobs()
    for number in (1, 12345):
        job, data = jobs.job(spec, daemon, number)
        assert protocol.decode(data) == protocol.check_job(spec, daemon, number)
        assert job["timeout"] == 5.0 and "job" not in job
    # A reload makes new specs: the message follows them, not the first one's.
    moved = SimpleNamespace(**dict(vars(spec), argv=("check_pgsql", "-H", "db2")))
    assert protocol.decode(jobs.job(moved, daemon, 3)[1])["argv"] == ["check_pgsql", "-H", "db2"]
    jobs.forget({"other"})
    assert jobs.job(moved, daemon, 4)[0]["argv"] == ["check_pgsql", "-H", "db2"]


def test_a_result_carries_its_results_as_bytes_of_their_own():
    results = [{"host": "db1", "status": "up", "details": {"out": "a\nb"}}]
    result = {"job": 1, "check": "pg", "results": results, "error": "", "read_at": 2.5}
    data = protocol.encode_result(result)
    head, raw = protocol.split_result(data)
    assert head == {"job": 1, "check": "pg", "error": "", "read_at": 2.5}
    assert protocol.decode_list(raw) == results
    # The same results make the same bytes whatever else changed in the run.
    again = protocol.encode_result(dict(result, job=2, read_at=3.0))
    assert protocol.split_result(again)[1] == raw
    with pytest.raises(ValueError):
        protocol.split_result(protocol.encode(result))  # no results part: garbled
    with pytest.raises(ValueError, match="not a JSON array"):
        protocol.decode_list(b'{"host": "db1"}')
    with pytest.raises(ValueError, match="exceeds"):
        protocol.encode_result(dict(result, results=[{"x": "a" * protocol.MAX_MESSAGE}]))


def test_one_message_is_capped_and_must_be_an_object():
    big = {"x": "a" * protocol.MAX_MESSAGE}
    with pytest.raises(ValueError, match=f"exceeds {protocol.MAX_MESSAGE}"):
        protocol.encode(big)
    assert len(protocol.encode({"x": "a" * (protocol.MAX_MESSAGE - 8)})) == protocol.MAX_MESSAGE
    with pytest.raises(ValueError, match="not a JSON object"):
        protocol.decode(b"[1]")
    with pytest.raises(ValueError):
        protocol.decode(b"\xff")


def test_a_check_that_produced_nothing_makes_its_host_unknown_if_it_names_one():
    assert protocol.failed("db1", "timed out after 5s") == [
        {"host": "db1", "status": "unknown", "details": {"error": "timed out after 5s"}}]
    assert protocol.failed("", "timed out after 5s") == []

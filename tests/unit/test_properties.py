"""Property-based tests: thousands of generated inputs against the pure parts.

None may raise anything but the documented error, and every rejection is one clear line.
"""

import json
import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hadaemon import actions, config, protocol
from hadaemon.commit import Committer, Transition
from hadaemon.config import CheckSpec
from hadaemon.home import Home
from hadaemon.inifile import ConfigError
from hadaemon.names import valid_host, valid_status

MANY = settings(max_examples=2000, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)
names = st.sampled_from(["db1", "db-2.example", "10.0.0.1", "::1", "db1; reboot", "$(id)", "",
                         "a" * 300, "MASTER", "master", "up", "x y", "\u00e9t\u00e9", "-x"])
result_objects = st.fixed_dictionaries(
    {}, optional={"host": names | json_values, "status": names | json_values,
                  "extra": json_values})


def _check_outcome(stdout, code, host):
    try:
        results = protocol.parse_output(stdout, code, host)
    except protocol.Rejected as e:
        message = str(e)
        assert message and "\n" not in message
        return
    assert results
    for r in results:
        assert valid_host(r["host"]) and valid_status(r["status"])
        assert isinstance(r["details"], dict)
        json.dumps(r["details"])  # must travel as JSON to the supervisor


@MANY
@given(st.binary(max_size=300), st.integers(-300, 300), st.sampled_from(["", "db1"]))
def test_parser_survives_any_bytes(stdout, code, host):
    _check_outcome(stdout, code, host)


@settings(MANY, max_examples=500)  # each example is a whole nested document: slow to make
@given(st.one_of(result_objects, st.lists(result_objects, max_size=5), json_values),
       st.integers(0, 3), st.sampled_from(["", "db1"]))
def test_parser_survives_any_json(data, code, host):
    _check_outcome(json.dumps(data).encode(), code, host)


LINE_PARTS = ["[daemon]", "[local]", "[check:c1]", "[remote]", "[", "]", "[slave_to_master]",
              "[*_to_*]", "[a_to_b_to_c]", "interval = 2", "interval = -1", "interval = 1e9",
              "workers = 0", "workers = x", "confirm = 3", "host = db1", "host = db 1",
              "timeout = 500ms", "c1", "c1 -H 127.0.0.1", "c1 'unterminated", "script = c1",
              "args = -v", "record %MASTER%", "record 'x", "-record a=b:c", "%MASTER%", "nope",
              "log = stderr", "strict = maybe", "on_failure = continue", "key value", "= v",
              "# comment", "; comment", "", "   ", "\x00", "\u00e9"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(LINE_PARTS) | st.text(max_size=15), max_size=12),
       st.lists(st.sampled_from(LINE_PARTS) | st.text(max_size=15), max_size=12))
def test_config_reader_survives_any_text(checks_lines, actions_lines):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for d in ("etc", "checks", "actions"):
            (root / d).mkdir()
        for kind, name in (("checks", "c1"), ("actions", "record")):
            (root / kind / name).write_text("#!/bin/sh\n")
            (root / kind / name).chmod(0o755)
        checks_conf = root / "etc/checks.conf"
        actions_conf = root / "etc/actions.conf"
        checks_conf.write_text("\n".join(checks_lines))
        actions_conf.write_text("\n".join(actions_lines))
        try:
            cfg = config.load(Home(root))
        except ConfigError as e:
            assert e.problems
            for p in e.problems:
                assert "\n" not in p and "Traceback" not in p
                assert re.match(rf"({re.escape(str(checks_conf))}|{re.escape(str(actions_conf))})"
                                r"(:\d+)?: \S", p), p
            return
        for c in cfg.checks:
            assert c.interval > 0 and c.timeout > 0 and c.confirm >= 1
        for s in cfg.sections:
            for cmd in s.commands:
                assert cmd.text.strip() and cmd.words


def spec(cid, confirm=1, hold_down=0.0):
    return CheckSpec(id=cid, argv=("x",), host="", interval=1.0, timeout=1.0, confirm=confirm,
                     hold_down=hold_down, where="t")


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["up", "down"]),
                          st.sampled_from([0.1, 0.1, 2.0])), max_size=60), st.integers(1, 4))
def test_commit_rule_matches_its_model(feed, confirm):
    """A transition exactly when the fresh results agree on a new status `confirm` times in a
    row; a result is fresh for 2 x interval + timeout (3 s here)."""
    checks = {"a": spec("a", confirm), "b": spec("b", confirm)}
    c = Committer({})
    latest, committed, streak, now = {}, "unknown", (None, 0), 0.0
    for cid, status, gap in feed:
        now += gap
        latest[cid] = (status, now + 3.0)
        fresh = {s for s, until in latest.values() if until >= now}
        if len(fresh) != 1:
            streak = (None, 0)
        else:
            seen = fresh.pop()
            streak = (None, 0) if seen == committed else (
                seen, streak[1] + 1 if streak[0] == seen else 1)
        proposals, _ = c.observe(checks[cid], [{"host": "h", "status": status, "details": {}}],
                                 now)
        expect = streak[1] >= confirm
        assert bool(proposals) == expect, (feed, confirm)
        for t in proposals:
            assert (t.source, t.target) == (committed, streak[0])
            c.apply(t, now)
            committed, streak = t.target, (None, 0)


EXACT = {"%MASTER%": "MASTER", "%SLAVE%": "SLAVE", "%DOWN%": "DOWN", "%HOST%": "HOST",
         "%FROM%": "FROM", "%TO%": "TO"}


@MANY
@given(st.dictionaries(st.sampled_from(["db1", "db2", "db3", "h-4"]),
                       st.sampled_from(["master", "slave", "down"]), min_size=1),
       st.lists(st.sampled_from(list(EXACT) + ["x%MASTER%y", "%%", "100%%", "%nope%", "plain",
                                               "%", "a=b:c"]), min_size=1, max_size=6))
def test_expansion_is_complete_and_only_yields_known_names(snapshot, words):
    host = sorted(snapshot)[0]
    t = Transition(host, "unknown", snapshot[host], snapshot)
    vals = actions.values(t)
    try:
        argv = actions.expand(words, vals)
    except KeyError as e:
        assert e.args[0].upper() not in vals or not vals[e.args[0].upper()]
        return
    expected_len = sum(len(vals[EXACT[w]]) if w in EXACT else 1 for w in words)
    assert len(argv) == expected_len
    pos = 0
    for w in words:
        if w in EXACT:
            for arg in argv[pos:pos + len(vals[EXACT[w]])]:
                assert valid_host(arg) or valid_status(arg)
            pos += len(vals[EXACT[w]])
        else:
            assert "%MASTER%" not in argv[pos] and "%%" not in argv[pos]
            pos += 1

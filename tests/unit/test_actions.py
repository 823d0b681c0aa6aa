"""Planning a transition's sequence (hadaemon/actions.py): sections matched in file order,
%VAR% expanded from the table right after the transition, a sequence refused whole, host lists
too long for the environment handed over as files."""

import pytest

from conftest import FAILOVER, host_name
from hadaemon import actions, journal
from hadaemon.commit import Transition
from hadaemon.config import ActionSection, Command
from hadaemon.names import valid_host

HOSTS = 1000
NAMES = [host_name(i) for i in range(HOSTS)]


def commands(lines):
    """actions.conf lines as config.py reads them: the first at line 2, under its header."""
    return tuple(Command(text=t, words=tuple(t.split()), program=t.split()[0],
                         keep_going=t.startswith("-"), where=f"actions.conf:{i + 2}")
                 for i, t in enumerate(lines))


def plan_of(lines, snapshot, host, target, source="up"):
    section = ActionSection(f"{source}_to_{target}", source, target, commands(lines))
    t = Transition(host, source, target, snapshot)
    return actions.plan([section], t, 60.0, "stop")


def test_a_word_over_one_argument_s_limit_refuses_the_whole_sequence():
    snapshot = {n: "up" for n in NAMES}
    snapshot[NAMES[0]] = "down"
    steps = plan_of(["/bin/true", "-record --hosts=%UP%", "record %UP%"], snapshot,
                    NAMES[0], "down")
    assert all(s["refused"] and s["argv"] is None for s in steps)
    assert "actions.conf:3" in steps[0]["error"]
    state, note = journal.initial_state(steps, paused=False)
    assert state == "failed" and note.startswith("not run: sequence refused: actions.conf:3")
    # the same hosts one per argument are fine: 999 words of 253 bytes
    steps = plan_of(["/bin/true", "record %UP%"], snapshot, NAMES[0], "down")
    assert not any(s.get("refused") or s["error"] for s in steps)
    assert journal.initial_state(steps, paused=False)[0] == "queued"
    assert len(steps[1]["argv"]) == HOSTS


def test_expansion_limits():
    vals = {"UP": [f"h{i}" for i in range(10)]}
    assert actions.expand(["x", "--h=%UP%"], vals) == ["x", "--h=" + ",".join(vals["UP"])]
    # one word: at the limit it passes, one byte over it is refused
    fill = actions.WORD_LIMIT - len("h0,h1")
    vals = {"UP": ["h0", "h1"], "PAD": ["a" * fill]}
    assert len(actions.expand(["%PAD%%UP%"], vals)[0]) == actions.WORD_LIMIT
    with pytest.raises(actions.TooLong, match="%PAD% %UP%"):
        actions.expand(["%PAD%-%UP%"], vals)
    # all words together: each counts its bytes, its NUL and its pointer
    per_host = 253 + 9
    many = {"UP": [host_name(i)[:253] for i in range(actions.ARGV_LIMIT // per_host)]}
    assert len(actions.expand(["%UP%"], many)) == len(many["UP"])
    many["UP"].append(host_name(9999))
    with pytest.raises(actions.TooLong, match="over the limit"):
        actions.expand(["%UP%"], many)
    assert all(valid_host(h) for h in many["UP"])


def test_spill_moves_long_lists_to_files_smallest_kept_inline():
    small = {"HA_HOST": "db1", "HA_MANUAL": "0", "HA_MASTER": "db1"}
    assert actions.spill(small) == (small, {})
    big = " ".join(NAMES[:100])  # 25 400 bytes: over one variable's limit
    inline, files = actions.spill(dict(small, HA_UP=big))
    assert inline == small and files == {"HA_UP": "".join(f"{n}\n" for n in NAMES[:100])}
    # under the limit each, over it together: the smallest stay inline, the rest are files
    lists = {f"HA_S{i}": " ".join(NAMES[:50 + i]) for i in range(6)}  # ~13-14 KB each
    inline, files = actions.spill(lists)
    assert sorted(inline) == ["HA_S0", "HA_S1", "HA_S2", "HA_S3"]
    assert sorted(files) == ["HA_S4", "HA_S5"]
    assert sum(len(k) + len(v) + 2 for k, v in inline.items()) <= actions.ENV_LISTS_LIMIT
    assert actions.spill(lists) == (inline, files)  # a resumed command gets the same split


def test_a_command_that_cannot_be_expanded_refuses_its_whole_sequence():
    # the snapshot is the table right after the transition: here no host is master (a
    # transition that names a status without hosts; a resume from an older plan)
    steps = plan_of(FAILOVER.splitlines()[1:], {"db1": "down", "db2": "slave"}, "db2",
                    "master", source="slave")
    assert [s["argv"] for s in steps] == [None] * 4 and all(s["refused"] for s in steps)
    state, note = journal.initial_state(steps, paused=False)
    assert state == "failed"
    assert note == ("not run: sequence refused: actions.conf:4: 'record plumb %MASTER%': "
                    "%MASTER% has no value (no host is master right after the transition)")
    steps = plan_of(FAILOVER.splitlines()[1:], {"db1": "down", "db2": "master"}, "db2",
                    "master", source="slave")
    assert [s["argv"] for s in steps][2] == ["record", "plumb", "db2"]
    assert journal.initial_state(steps, paused=False)[0] == "queued"


# -- sections, expansion, environment -----------------------------------------------------------

def test_matching_sections_run_in_file_order_wildcards_included():
    sections = [ActionSection("up_to_down", "up", "down", commands(["a"])),
                ActionSection("*_to_up", "*", "up", commands(["b"])),
                ActionSection("*_to_*", "*", "*", commands(["c"])),
                ActionSection("down_to_*", "down", "*", commands(["d"]))]
    t = Transition("h1", "up", "down", {"h1": "down"})
    assert [s.name for s in actions.matching(sections, t)] == ["up_to_down", "*_to_*"]
    steps = actions.plan(sections, Transition("h1", "down", "up", {"h1": "up"}), 5.0, "stop")
    assert [(s["section"], s["argv"]) for s in steps] == [("*_to_up", ["b"]), ("*_to_*", ["c"]),
                                                          ("down_to_*", ["d"])]
    assert all(s["timeout"] == 5.0 and s["error"] is None for s in steps)


def test_a_variable_alone_is_one_argument_per_host_inside_a_word_a_comma_list():
    t = Transition("db2", "slave", "master", {"db1": "slave", "db3": "slave", "db2": "master"})
    vals = actions.values(t)
    assert vals == {"SLAVE": ["db1", "db3"], "MASTER": ["db2"], "HOST": ["db2"],
                    "FROM": ["slave"], "TO": ["master"]}
    assert actions.expand(["cmd", "%SLAVE%", "--to=%TO%", "x%slave%y", "100%%", "%%HOST%%"],
                          vals) == ["cmd", "db1", "db3", "--to=master", "xdb1,db3y", "100%",
                                    "%HOST%"]
    with pytest.raises(KeyError, match="DOWN"):
        actions.expand(["cmd", "%DOWN%"], vals)


def test_the_environment_names_every_status_and_never_a_reserved_variable():
    t = Transition("h1", "up", "check", {"h1": "check", "h2": "home", "h3": "some-thing"},
                   manual=True)
    env = actions.environment(t)
    # statuses `check` and `home` would pass for the daemon's own HA_CHECK and HA_HOME
    assert env == {"HA_SOME_THING": "h3", "HA_HOST": "h1", "HA_FROM": "up", "HA_TO": "check",
                   "HA_MANUAL": "1"}


def test_on_failure_continue_makes_every_step_keep_going():
    t = Transition("h1", "up", "down", {"h1": "down"})
    section = [ActionSection("up_to_down", "up", "down", commands(["a", "-b"]))]
    assert [s["keep_going"] for s in actions.plan(section, t, 1.0, "stop")] == [False, True]
    assert [s["keep_going"] for s in actions.plan(section, t, 1.0, "continue")] == [True,
                                                                                       True]

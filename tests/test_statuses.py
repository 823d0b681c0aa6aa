"""Statuses are a known set: the default ones plus `statuses =` in [daemon]. A typo in
actions.conf (`%MASTR%`, `%master%`, `[slave_to_mastre]`) is refused with its file and line
before it can break a failover; a check reporting an undeclared status is rejected; a sequence
is planned whole before its first command runs."""

import pytest

from conftest import FAST, committed, status_of, wait_for
from hadaemon import actions, config, control, journal, protocol, statuses
from hadaemon.commit import Transition
from hadaemon.config import ActionSection, Command
from hadaemon.home import Home
from hadaemon.inifile import ConfigError

# Daemon tests run against `hadaemon run` and against a detached `hadaemon start`.
DAEMON_MODES = ("run", "start")

FAILOVER = """\
[slave_to_master]
record stopservice1
record unplumb
record plumb %MASTER%
record startservice1
"""


def problems(home):
    with pytest.raises(ConfigError) as e:
        config.load(Home(home.root))
    return e.value.problems


# -- the known set ------------------------------------------------------------------------------

def test_the_default_set_is_extended_never_replaced():
    assert statuses.declared("") == {"up", "warning", "down", "unknown", "master", "slave"}
    assert statuses.declared("standby, maintenance") == statuses.declared("") | {
        "standby", "maintenance"}
    assert statuses.declared("standby maintenance,,up") == statuses.declared(
        "standby, maintenance")
    with pytest.raises(ValueError, match="'Standby' is not a status name"):
        statuses.vet("Standby")
    with pytest.raises(ValueError, match="'a_b' is not a status name"):
        statuses.vet("ok, a_b")


def test_config_refuses_each_typo_with_its_file_and_line(home):
    home.write("checks.conf", "[daemon]\nstatuses = standby, Bad_One\n[local]\n"
               "status_from_files db1\n")
    home.write("actions.conf", """\
        [slave_to_master]
        record %MASTR%
        record %master%
        record %STANDBY% %HOST% %FROM% %TO% 100%% x%SLAVE%y
        [slave_to_mastre]
        record x
        [standby_to_*]
        record %UP%
        [*_to_standy]
        record x
        [slave_to_master on %MASTR%]
        record x
        [slave_to_master on %MASTER%]
        record x
        """)
    checks, acts = home.root / "etc/checks.conf", home.root / "etc/actions.conf"
    found = problems(home)
    expected = [
        f"{checks}:2: statuses: 'Bad_One' is not a status name",
        f"{acts}:2: %MASTR% can never have a value (did you mean %MASTER%?): variables are "
        "%HOST%, %FROM%, %TO% and one per declared status (%DOWN%, %MASTER%, %SLAVE%, "
        "%STANDBY%, %UNKNOWN%, %UP%, %WARNING%;",
        f"{acts}:3: %master% is not a variable: variables are upper case (did you mean "
        "%MASTER%?)",
        f"{acts}:5: section [slave_to_mastre] would never run: status 'mastre' is not declared "
        "(did you mean 'master'?); declared: down, master, slave, standby, unknown, up, warning",
        f"{acts}:9: section [*_to_standy] would never run: status 'standy' is not declared "
        "(did you mean 'standby'?)",
        f"{acts}:11: %MASTR% can never have a value (did you mean %MASTER%?)"]
    assert len(found) == len(expected), found
    for line, start in zip(found, expected):
        assert line.startswith(start), (line, start)


def test_a_missing_actions_conf_is_a_warning_naming_the_file(home):
    home.write("checks.conf", "[local]\nstatus_from_files db1\n")
    loaded = config.load(Home(home.root))
    assert loaded.sections == ()
    assert loaded.warnings == (f"{home.root / 'etc/actions.conf'}: does not exist: no action "
                               "will run on any transition",)
    home.write("actions.conf", FAILOVER)
    assert config.load(Home(home.root)).warnings == ()


# -- a sequence is planned whole --------------------------------------------------------------

def failover_plan(snapshot):
    lines = FAILOVER.splitlines()[1:]
    commands = tuple(Command(text=t, words=tuple(t.split()), program=t.split()[0],
                             keep_going=False, where=f"actions.conf:{i + 2}")
                     for i, t in enumerate(lines))
    t = Transition("db2", "slave", "master", snapshot)
    return actions.plan([ActionSection("slave_to_master", "slave", "master", commands)], t,
                        60.0, "stop")


def test_a_command_that_cannot_be_expanded_refuses_its_whole_sequence():
    # the snapshot is the table right after the transition: here no host is master (a
    # transition that names a status without hosts; a resume from an older plan)
    steps, _ = failover_plan({"db1": "down", "db2": "slave"})
    assert [s["argv"] for s in steps] == [None] * 4 and all(s["refused"] for s in steps)
    state, note = journal.initial_state(steps, paused=False)
    assert state == "failed"
    assert note == ("not run: sequence refused: actions.conf:4: 'record plumb %MASTER%': "
                    "%MASTER% has no value (no host is master right after the transition)")
    steps, _ = failover_plan({"db1": "down", "db2": "master"})
    assert [s["argv"] for s in steps][2] == ["record", "plumb", "db2"]
    assert journal.initial_state(steps, paused=False)[0] == "queued"


# -- results --------------------------------------------------------------------------------------

def test_an_undeclared_status_in_a_result_is_rejected_naming_it():
    known = statuses.declared("standby")
    out = b'[{"host": "db1", "status": "master"}, {"host": "db2", "status": "Mastr"}]'
    with pytest.raises(protocol.Rejected, match=r"result 1: status 'mastr' is not declared "
                       r"\(did you mean 'master'\?\)"):
        protocol.parse_output(out, 0, statuses=sorted(known))
    assert protocol.parse_output(out, 0)[1]["status"] == "mastr"  # no set: any safe name
    assert protocol.parse_output(b'{"host": "db1", "status": "standby"}', 0,
                                 statuses=known)[0]["status"] == "standby"
    # the Nagios reading gives only default statuses
    assert protocol.parse_output(b"CRITICAL", 2, "db1", statuses=statuses.DEFAULT)[0][
        "status"] == "down"


# -- the real daemon ------------------------------------------------------------------------

REPORT = """\
#!/bin/sh
echo run >> "$HA_HOME/var/runs"
cat "$HA_HOME/var/out"
"""


def runs(home):
    path = home.root / "var/runs"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_check_reporting_an_undeclared_status_is_rejected_with_one_log_line(home, daemons):
    home.write("checks.conf", FAST + "[local]\nreport\n")
    home.write("actions.conf", "[*_to_*]\nrecord %HOST% %TO%\n")
    home.script("checks", "report", REPORT)
    out = home.root / "var/out"
    out.write_text('{"host": "db1", "status": "master"}\n')
    d = daemons(home)
    wait_for(committed(home, "db1", "master"), 20, "db1 master")
    out.write_text('{"host": "db1", "status": "mastr"}\n')
    line = ("check report: status 'mastr' is not declared (did you mean 'master'?); declared: "
            "down, master, slave, unknown, up, warning")
    wait_for(lambda: line in home.log(), 20, "the rejection logged")
    seen = runs(home)
    wait_for(lambda: runs(home) >= seen + 20, 30, "20 more rejected results")
    assert home.log().count("'mastr' is not declared") == 1  # rate-limited: once a minute
    assert status_of(home, "db1") == "master"
    assert [(h["from"], h["to"]) for h in home.history()] == [("unknown", "master")]
    assert d.alive()
    # declared by a reload, the same result counts
    home.write("checks.conf", FAST + "statuses = mastr\n[local]\nreport\n")
    home.cli("reload", check=True)
    wait_for(committed(home, "db1", "mastr"), 20, "db1 mastr once declared")


def test_the_supervisor_rejects_an_undeclared_status_a_worker_let_through(home, daemons):
    """The supervisor trusts no worker: a check that started while `standby` was declared and
    answers after a reload removed it has its result rejected all the same."""
    home.script("checks", "report", """\
        #!/bin/sh
        echo started > "$HA_HOME/var/started"
        while [ ! -e "$HA_HOME/var/go" ]; do sleep 0.02; done
        cat "$HA_HOME/var/out"
        """)
    home.write("checks.conf", FAST + "statuses = standby\n[local]\nreport\n")
    home.write("actions.conf", "[*_to_*]\nrecord %HOST% %TO%\n")
    (home.root / "var/out").write_text('{"host": "db1", "status": "standby"}\n')
    daemons(home)
    wait_for(lambda: (home.root / "var/started").exists(), 20, "the check running")
    home.write("checks.conf", FAST + "[local]\nreport\n")
    home.cli("reload", check=True)
    (home.root / "var/go").touch()
    wait_for(lambda: "check report: status 'standby' is not declared" in home.log(), 20,
             "the rejection logged")
    assert status_of(home, "db1") is None and home.history() == []
    assert home.actions_log() == []


def test_a_typo_in_actions_conf_is_refused_by_check_config_and_reload(home, daemons):
    """The 3 a.m. failover of the issue: `plumb %MASTR%` passed and stopped the sequence half
    way. Now check-config and reload refuse it; the running config stays and fails over."""
    home.write("checks.conf", FAST + "[local]\nstatus_from_files db1 db2\n")
    home.write("actions.conf", FAILOVER)
    home.set_status("db1", "master")
    home.set_status("db2", "slave")
    d = daemons(home)
    wait_for(committed(home, "db2", "slave"), 20, "db2 slave")
    home.write("actions.conf", FAILOVER.replace("%MASTER%", "%MASTR%"))
    where = f"{home.root / 'etc/actions.conf'}:4"
    r = home.cli("check-config")
    assert r.returncode == 1
    assert r.stderr.startswith(f"error: {where}: %MASTR% can never have a value (did you mean "
                               "%MASTER%?)"), r.stderr
    assert len(r.stderr.splitlines()) == 1
    r = home.cli("reload")
    assert r.returncode == 1 and f"error: {where}: %MASTR%" in r.stderr, r.stderr
    home.write("actions.conf", FAILOVER.replace("slave_to_master", "slave_to_mastre"))
    r = home.cli("reload")
    assert r.returncode == 1 and "section [slave_to_mastre] would never run" in r.stderr
    home.set_status("db1", "down")
    wait_for(committed(home, "db1", "down"), 20, "db1 down")
    home.set_status("db2", "master")
    wait_for(lambda: len(home.actions_log()) == 4, 20, "the whole failover")
    assert [line.split(" | ")[0] for line in home.actions_log()] == [
        "record stopservice1", "record unplumb", "record plumb db2", "record startservice1"]
    assert d.alive()


def test_a_missing_actions_conf_is_named_by_check_config_and_at_start(home, daemons):
    home.write("checks.conf", FAST + "[local]\nstatus_from_files db1\n")
    warning = f"{home.root / 'etc/actions.conf'}: does not exist: no action will run"
    r = home.cli("check-config")
    assert r.returncode == 0 and r.stderr.startswith(f"warning: {warning}"), r.stderr
    assert "OK: 1 check(s), 0 action section(s), 1 warning(s)" in r.stdout
    daemons(home)
    wait_for(lambda: warning in home.log(), 20, "the warning logged at start")


def test_transition_to_an_undeclared_status_is_refused_by_the_cli_and_the_daemon(home, daemons):
    home.write("checks.conf", FAST + "[local]\nstatus_from_files db1\n")
    home.write("actions.conf", "[*_to_*]\nrecord %HOST% %TO%\n")
    home.set_status("db1", "up")
    daemons(home)
    wait_for(committed(home, "db1", "up"), 20, "db1 up")
    r = home.cli("transition", "db1", "mastr")
    assert r.returncode == 2
    assert r.stderr.startswith("hadaemon transition: Invalid value for 'STATUS': status 'mastr' "
                               "is not declared (did you mean 'master'?)"), r.stderr
    # declared in the file but not reloaded: the CLI lets it through, the daemon refuses it
    home.write("checks.conf", FAST + "statuses = standby\n[local]\nstatus_from_files db1\n")
    r = home.cli("transition", "db1", "standby")
    assert r.returncode == 1
    assert r.stderr.startswith("hadaemon: status 'standby' is not declared"), r.stderr
    answer = control.request(home.root / "var/control.sock",
                             {"cmd": "transition", "host": "db1", "status": "mastr"})
    assert not answer["ok"] and "'mastr' is not declared" in answer["error"]
    home.cli("reload", check=True)
    assert home.cli("transition", "db1", "standby").returncode == 0
    wait_for(lambda: "record db1 standby" in [x.split(" | ")[0] for x in home.actions_log()], 20,
             "the manual transition fired")

"""Statuses are a known set: the default ones plus `statuses =` in [daemon]. A typo in
actions.conf (`%MASTR%`, `%master%`, `[slave_to_mastre]`) is refused with its file and line
before it can break a failover; a check reporting an undeclared status is rejected; a sequence
is planned whole before its first command runs."""

from conftest import FAILOVER, FAST, committed, status_of, wait_for
from hadaemon import control

# Daemon tests run against `hadaemon run` and against a detached `hadaemon start`.
DAEMON_MODES = ("run", "start")


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

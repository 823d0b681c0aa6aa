"""The whole loop, for real: a daemon process on a temporary home, checks, transitions, actions."""

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from conftest import FAST, KEEP_GOING, ROOT, Home, committed, new_results, wait_for


def seed_home(home, extra_actions=""):
    home.write("checks.conf", FAST + """
        [local]
        status_from_files db1 db2
        """)
    home.write("actions.conf", """
        [slave_to_master]
        record stopservice1
        record unplumb
        record plumb %MASTER%
        record startservice1
        """ + extra_actions)


def test_seed_example_fires_in_order_with_master_expanded(home, daemons):
    seed_home(home)
    home.set_status("db1", "master")
    home.set_status("db2", "slave")
    daemons(home)
    wait_for(committed(home, "db2", "slave"), 20, "db2 slave")
    home.set_status("db1", "down")
    wait_for(committed(home, "db1", "down"), 20, "db1 down")
    home.set_status("db2", "master")
    wait_for(lambda: len(home.actions_log()) == 4, 20, "four commands")
    log = home.actions_log()
    assert [line.split(" | ")[0] for line in log] == [
        "record stopservice1", "record unplumb", "record plumb db2", "record startservice1"]
    assert all("host=db2 from=slave to=master resumed=0" in line for line in log)
    # the fourth line is written before that command's end is recorded
    wait_for(lambda: home.history()[-1]["state"] == "done", 20, "the job recorded done")
    jobs = [h for h in home.history() if h["commands"]]
    assert len(jobs) == 1
    assert [c["command"] for c in jobs[0]["commands"]] == [
        "record stopservice1", "record unplumb", "record plumb %MASTER%", "record startservice1"]
    assert [c["argv"] for c in jobs[0]["commands"]][2] == ["record", "plumb", "db2"]
    assert all(c["outcome"] == "ok" and c["exit"] == 0 for c in jobs[0]["commands"])


def test_several_hosts_in_a_status_become_several_arguments(home, daemons):
    home.write("checks.conf", FAST + "[local]\nstatus_from_files db3 db1 db2\n")
    home.write("actions.conf", "[*_to_master]\nrecord all %MASTER% in=x%MASTER%y\n")
    home.set_status("db2", "master")
    home.set_status("db1", "master")
    home.set_status("db3", "slave")
    daemons(home)
    wait_for(committed(home, "db3", "slave"), 20, "db3 committed")
    home.set_status("db3", "master")
    wait_for(lambda: any("host=db3" in line for line in home.actions_log()), 20, "db3 action")
    line = [line for line in home.actions_log() if "host=db3" in line][0]
    assert line.startswith("record all db1 db2 db3 in=xdb1,db2,db3y |")


def test_wildcard_sections_run_in_file_order_as_one_sequence(home, daemons):
    home.write("checks.conf", FAST + "[local]\nstatus_from_files db1\n")
    home.write("actions.conf", """
        [*_to_master]
        record any-to-master
        [slave_to_master]
        record exact
        [slave_to_*]
        record slave-to-any
        [master_to_slave]
        record not-me
        """)
    home.set_status("db1", "slave")
    daemons(home)
    wait_for(committed(home, "db1", "slave"), 20, "db1 slave")
    home.set_status("db1", "master")
    wait_for(lambda: len([h for h in home.history() if h["to"] == "master"]) == 1
             and home.history()[-1]["state"] == "done", 20, "sequence done")
    names = [line.split(" | ")[0] for line in home.actions_log()]
    # The first transition (unknown -> slave) matches none of these sections.
    assert names == ["record any-to-master", "record exact", "record slave-to-any"]


def test_commands_are_kept_verbatim(home, daemons):
    home.write("checks.conf", FAST + "[local]\nstatus_from_files db1\n")
    home.write("actions.conf", """
        [unknown_to_up]
        record Key=Value a:b CamelCase
        record Key=Value a:b CamelCase
        record 'two words' "x = y" ; not-a-comment
        record 100%% %TO%:%FROM%
        """)
    home.set_status("db1", "up")
    daemons(home)
    wait_for(lambda: len(home.actions_log()) == 4, 20, "four commands")
    args = [line.split(" | ")[0] for line in home.actions_log()]
    assert args == ["record Key=Value a:b CamelCase", "record Key=Value a:b CamelCase",
                    "record two words x = y ; not-a-comment", "record 100% up:unknown"]


def test_a_variable_with_no_value_refuses_the_whole_sequence_before_its_first_command(
        home, daemons):
    """Never half a failover: `plumb %MASTER%` with no master anywhere must not leave the
    service stopped and its address gone; nothing runs, and history says why."""
    home.write("checks.conf", FAST + "[local]\nstatus_from_files db1\n")
    home.write("actions.conf", """
        [unknown_to_down]
        record stopservice1
        -record unplumb
        record plumb %MASTER%
        record startservice1
        """)
    home.set_status("db1", "down")
    daemons(home)
    wait_for(lambda: home.history() and home.history()[-1]["state"] == "failed", 20, "failed")
    job = home.history()[-1]
    assert [c["outcome"] for c in job["commands"]] == ["not run"] * 4
    where = f"{home.root / 'etc/actions.conf'}:5"
    assert job["note"] == (f"not run: sequence refused: {where}: 'record plumb %MASTER%': "
                           "%MASTER% has no value (no host is master right after the transition)")
    assert home.actions_log() == []
    assert f"{where}: 'record plumb %MASTER%': %MASTER% has no value" in home.log()


def test_failing_command_stops_unless_marked_to_keep_going(home, daemons):
    home.write("checks.conf", FAST + "[local]\nstatus_from_files db1\n")
    home.write("actions.conf", KEEP_GOING)
    home.set_status("db1", "down")
    daemons(home)
    wait_for(lambda: home.history() and home.history()[-1]["state"] == "failed", 20, "failed")
    assert [line.split(" | ")[0] for line in home.actions_log()] == ["record one", "record two"]
    assert [c["outcome"] for c in home.history()[-1]["commands"]] == [
        "ok", "failed", "ok", "failed", "not run"]


def test_restart_keeps_the_table_and_fires_nothing_again(home, daemons):
    seed_home(home)
    home.set_status("db1", "slave")
    home.set_status("db2", "slave")
    d = daemons(home)
    wait_for(committed(home, "db2", "slave"), 20, "db2 slave")
    home.set_status("db2", "master")
    wait_for(lambda: len(home.actions_log()) == 4, 20, "actions")
    # The runner closes the job after its last command: the history is final only then.
    wait_for(lambda: home.history()[-1]["state"] == "done", 20, "the job closed")
    before = home.history()
    assert d.stop() == 0
    assert not (home.root / "var/hadaemon.pid").exists()
    assert not (home.root / "var/control.sock").exists()
    offline = home.cli("status", "--json")
    assert offline.returncode == 3
    assert json.loads(offline.stdout)["hosts"]["db2"]["status"] == "master"
    daemons(home)
    runs = new_results(home, "db2")
    wait_for(lambda: runs() >= 10, 20, "ten check runs with unchanged results")
    assert home.status()["hosts"]["db2"]["status"] == "master"
    assert home.history() == before
    assert len(home.actions_log()) == 4


def test_never_seen_host_is_unknown_and_first_status_is_a_transition(home, daemons):
    home.write("checks.conf", FAST + "[local]\nstatus_from_files db9\n")
    home.write("actions.conf", "[unknown_to_*]\nrecord first %TO%\n")
    home.set_status("db9", "slave")
    daemons(home)
    wait_for(lambda: home.actions_log(), 20, "first action")
    assert home.actions_log()[0].startswith("record first slave | host=db9 from=unknown")


def test_nagios_exit_codes_and_broken_checks(home, daemons):
    home.write("checks.conf", FAST + """
        [local]
        nagios_ok
        nagios_warn
        nagios_crit
        nagios_other
        broken_json
        sleeper
        [check:nagios_ok]
        host = h0
        [check:nagios_warn]
        host = h1
        [check:nagios_crit]
        host = h2
        [check:nagios_other]
        host = h3
        [check:broken_json]
        host = h4
        [check:sleeper]
        host = h5
        timeout = 0.3
        """)
    for name, code in (("nagios_ok", 0), ("nagios_warn", 1), ("nagios_crit", 2),
                       ("nagios_other", 3)):
        home.script("checks", name, f"#!/bin/sh\necho 'PLUGIN STATE - text'\nexit {code}\n")
    home.script("checks", "broken_json", "#!/bin/sh\necho '{\"host\": '\n")
    home.script("checks", "sleeper", "#!/bin/sh\nsleep 30\n")
    daemons(home)
    want = {"h0": "up", "h1": "warning", "h2": "down", "h3": "unknown", "h4": "unknown",
            "h5": "unknown"}
    wait_for(lambda: {h: e["status"] for h, e in home.status()["hosts"].items()} == want, 20,
             "statuses")
    hosts = home.status()["hosts"]
    assert hosts["h0"]["details"] == {"exit": 0, "output": "PLUGIN STATE - text"}
    assert "invalid JSON" in hosts["h4"]["details"]["error"]
    assert "timed out after 0.3s" in hosts["h5"]["details"]["error"]
    log = home.log()
    assert "check broken_json: invalid JSON" in log
    assert "check sleeper: timed out after 0.3s" in log


def test_disagreeing_checks_hold_the_status_without_flip_flop(home, daemons):
    home.write("checks.conf", FAST + """
        [local]
        says_master
        says_down
        [check:says_master]
        host = db1
        [check:says_down]
        host = db1
        """)
    home.script("checks", "says_master", """\
        #!/bin/sh
        cat "$HA_HOME/var/status/a" 2>/dev/null || echo '{"host": "db1", "status": "master"}'
        """)
    home.script("checks", "says_down", """\
        #!/bin/sh
        cat "$HA_HOME/var/status/b" 2>/dev/null || echo '{"host": "db1", "status": "master"}'
        """)
    home.write("actions.conf", "[*_to_*]\nrecord %FROM% %TO%\n")
    daemons(home)
    wait_for(committed(home, "db1", "master"), 20, "db1 master")
    wait_for(home.actions_log, 20, "its action")
    (home.root / "var/status/b").write_text('{"host": "db1", "status": "down"}\n')
    runs = new_results(home, "db1")
    wait_for(lambda: runs() >= 20, 20, "20 results, the two checks disagreeing")
    assert home.status()["hosts"]["db1"]["status"] == "master"
    assert home.status()["hosts"]["db1"]["conflict"] is True
    assert [line.split(" | ")[0] for line in home.actions_log()] == ["record unknown master"]
    assert "checks disagree" in home.log()
    assert home.log().count("checks disagree") == 1  # logged once, not per result
    (home.root / "var/status/a").write_text('{"host": "db1", "status": "down"}\n')
    wait_for(committed(home, "db1", "down"), 20, "db1 down once both agree")
    wait_for(lambda: len(home.actions_log()) == 2, 20, "second action")


def test_check_config_names_file_and_line(home):
    home.write("checks.conf", """\
        [daemon]
        interval = soon
        workers = 0
        bogus = 1
        [local]
        status_from_files db1
        no_such_check
        [remote]
        x
        """)
    home.write("actions.conf", """\
        [slave_to_master]
        record ok
        not_a_program_anywhere
        [sideways]
        record x
        """)
    r = home.cli("check-config")
    assert r.returncode == 1
    checks, actions = str(home.root / "etc/checks.conf"), str(home.root / "etc/actions.conf")
    for expected in (f"{checks}:2: interval", f"{checks}:3: workers",
                     f"{checks}:4: unknown setting",
                     f"{checks}:7: check 'no_such_check'", f"{checks}:8: unknown scope [remote]",
                     f"{actions}:3: 'not_a_program_anywhere'", f"{actions}:4: section [sideways]"):
        assert expected in r.stderr, (expected, r.stderr)
    assert r.stderr.count("\n") == 7


def test_check_config_refuses_what_could_only_fail_later(home):
    long_name = "x" * 300
    home.write("checks.conf", f"""\
        [daemon]
        interval = 2
        interval = 30
        timeout = {"9" * 400}
        confirm = 99999999
        log =
        [local]
        {long_name}
        """)
    home.write("actions.conf", """\
        [slave_to_master]
        record %NOSUCH_X%
        /tmp
        "" x
        record down_at_%%H_%%M
        """)
    r = home.cli("check-config")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    checks, actions = str(home.root / "etc/checks.conf"), str(home.root / "etc/actions.conf")
    for expected in (f"{checks}:3: interval set twice in [daemon] (first at line 2)",
                     f"{checks}:4: timeout: must be at most 86400.0",
                     f"{checks}:5: confirm: must be at most 1000",
                     f"{checks}:6: log: empty",
                     f"{checks}:8: check 'xxxxx", "File name too long",
                     f"{actions}:2: %NOSUCH_X% can never have a value",
                     f"{actions}:3: /tmp is a folder, not a program",
                     f"{actions}:4: '' is not a program name"):
        assert expected in r.stderr, (expected, r.stderr)
    assert len(r.stderr.splitlines()) == 8, r.stderr  # %% is a literal %: line 5 is fine
    home.write("checks.conf", f"[local]\nstatus_from_files {'a' * 9000}\n")
    r = home.cli("check-config")
    assert r.stderr.splitlines()[0] == f"error: {checks}:2: line of 9018 characters (at most " \
        "8192)", r.stderr


def test_probe_runs_checks_once_as_a_worker_would_and_records_nothing(home):
    home.script("checks", "exit2", "#!/bin/sh\necho 'CRITICAL - db3 unreachable'\nexit 2\n")
    home.script("checks", "garbage", "#!/bin/sh\necho '{oops'\n")
    home.write("checks.conf", """\
        [local]
        status_from_files db1 db2
        exit2
        garbage
        [check:exit2]
        host = db3
        """)
    home.write("actions.conf", "[*_to_*]\nrecord %HOST%\n")
    home.set_status("db1", "master")
    home.set_status("db2", "slave")
    r = home.cli("probe")
    assert r.returncode == 1, r.stderr  # one check's output is unusable
    lines = r.stdout.splitlines()
    assert lines[0].startswith("status_from_files (") and lines[0].endswith("db1 master; db2 slave")
    assert any(line.startswith("exit2 (") and line.endswith("db3 down") for line in lines)
    assert '  db3: {"exit": 2, "output": "CRITICAL - db3 unreachable"}' in lines
    assert "  rejected: invalid JSON" in r.stdout
    one = json.loads(home.cli("probe", "exit2", "--json").stdout)
    assert [(a["check"], a["results"][0]["status"], a["error"]) for a in one] == [
        ("exit2", "down", "")]
    assert home.cli("probe", "exit2").returncode == 0
    r = home.cli("probe", "nope")
    assert r.returncode == 2 and "no check 'nope'" in r.stderr
    assert not (home.root / "var/state.db").exists() and home.actions_log() == []


def test_check_config_ok_and_the_repository_is_a_valid_home():
    r = subprocess.run([sys.executable, "-m", "hadaemon", "--home", str(ROOT), "check-config"],
                       capture_output=True, text=True)
    above = [line for line in r.stderr.splitlines()
             if "strict mode:" in line and not line.split("strict mode: ")[1].startswith(str(ROOT))]
    if r.returncode and above and len(above) == len(r.stderr.splitlines()):
        pytest.skip(f"this clone lies below a directory others may write, which strict mode "
                    f"rightly refuses: {above[0]}")
    assert r.returncode == 0, r.stderr
    assert "2 check(s), 1 action section(s)" in r.stdout


def test_shipped_example_from_a_copy_of_the_repository(tmp_path, daemons):
    root = tmp_path / "copy"
    for d in ("etc", "checks", "actions"):
        shutil.copytree(ROOT / d, root / d)
    home = Home.__new__(Home)
    home.root = root
    daemons(home)
    wait_for(committed(home, "db2", "slave"), 30, "db2 slave")
    assert home.status()["hosts"]["db1"]["status"] == "master"
    (root / "var/role/db1").write_text("slave\n")
    wait_for(committed(home, "db1", "slave"), 30, "db1 slave")
    (root / "var/role/db2").write_text("master\n")
    # service1 is written by the first command and again by the last: wait for the last.
    service1 = root / "var/example/service1"
    wait_for(lambda: service1.exists() and service1.read_text().startswith("running"), 30,
             "actions ran")
    assert (root / "var/example/vip").read_text().split() == ["db2"]
    jobs = [h for h in home.history() if h["commands"]]
    assert [c["command"] for c in jobs[0]["commands"]] == [
        "stopservice1", "unplumb", "plumb %MASTER%", "startservice1"]
    assert "slave -> master" in home.cli("history").stdout


def test_daemon_mode_start_stop_reload_stale_pidfile_second_instance(home):
    home.write("checks.conf", FAST + "log = var/hadaemon.log\n[local]\nstatus_from_files db1\n")
    home.write("actions.conf", "")
    home.set_status("db1", "up")
    try:
        r = home.cli("start", check=True)
        assert "hadaemon started (pid" in r.stdout
        pid = int((home.root / "var/hadaemon.pid").read_text())
        os.kill(pid, 0)
        again = home.cli("start")
        assert again.returncode == 1
        assert f"already runs in {home.root} (pid {pid}" in again.stderr
        assert home.cli("run").returncode == 1
        wait_for(committed(home, "db1", "up"), 20, "db1 up")
        # reload picks up a new check
        home.write("checks.conf", FAST + "log = var/hadaemon.log\n[local]\n"
                   "status_from_files db1 db2\n")
        home.set_status("db2", "up")
        r = home.cli("reload", check=True)
        assert "reloaded: 1 check(s)" in r.stdout
        wait_for(committed(home, "db2", "up"), 20, "db2 up after reload")
        # SIGHUP does the same
        os.kill(pid, signal.SIGHUP)
        wait_for(lambda: (home.root / "var/hadaemon.log").read_text().count("reloaded:") == 2,
                 20, "SIGHUP reload")
        # a broken config is refused and the running one kept
        home.write("checks.conf", "[daemon]\nworkers = many\n")
        r = home.cli("reload")
        assert r.returncode == 1
        assert "checks.conf:2: workers" in r.stderr
        assert "reload refused" in (home.root / "var/hadaemon.log").read_text()
        assert home.status()["hosts"]["db2"]["status"] == "up"
        r = home.cli("stop", check=True)
        assert f"stopped (pid {pid})" in r.stdout
        assert not (home.root / "var/hadaemon.pid").exists()
    finally:
        home.cli("stop")
    # a stale pidfile left by a crash does not block start
    home.write("checks.conf", FAST + "log = var/hadaemon.log\n[local]\nstatus_from_files db1\n")
    dead = subprocess.Popen(["true"])
    dead.wait()
    (home.root / "var/hadaemon.pid").write_text(f"{dead.pid}\n")
    try:
        r = home.cli("start", check=True)
        assert "hadaemon started" in r.stdout
    finally:
        home.cli("stop", check=True)
    assert home.cli("stop").stdout.strip() == "hadaemon was not running"


def test_status_and_history_json_shapes(home, daemons):
    seed_home(home)
    home.set_status("db1", "slave")
    home.set_status("db2", "slave")
    daemons(home)
    wait_for(committed(home, "db1", "slave"), 20, "db1")
    home.set_status("db1", "master")
    wait_for(lambda: len(home.actions_log()) == 4, 20, "actions")
    wait_for(lambda: home.history()[-1]["state"] == "done", 20, "job done")
    status = home.status()
    assert set(status["hosts"]) == {"db1", "db2"}
    assert status["hosts"]["db1"]["status"] == "master"
    assert isinstance(status["hosts"]["db1"]["since"], float)
    entry = home.history()[-1]
    assert {k: entry[k] for k in ("host", "from", "to")} == {
        "host": "db1", "from": "slave", "to": "master"}
    assert isinstance(entry["time"], float)
    c = entry["commands"][0]
    assert c["exit"] == 0 and c["duration"] >= 0 and c["outcome"] == "ok"
    text = home.cli("status").stdout
    assert "db1" in text and "master" in text and "HOST" in text


def test_slow_actions_never_delay_checks_and_sequences_never_interleave(home, daemons):
    home.write("checks.conf", FAST + "action_timeout = 0.5\n[local]\nstatus_from_files db1 db2\n")
    home.script("actions", "slow", """\
        #!/bin/sh
        echo "start $1" >> "$HA_HOME/var/actions.log"
        sleep "$2"
        echo "end $1" >> "$HA_HOME/var/actions.log"
        """)
    home.write("actions.conf", """
        [slave_to_master]
        -slow %HOST% 2
        record after-timeout
        slow %HOST% 0.1
        """)
    home.set_status("db1", "slave")
    home.set_status("db2", "slave")
    daemons(home)
    wait_for(lambda: committed(home, "db1", "slave")() and committed(home, "db2", "slave")(), 20,
             "slaves")
    home.set_status("db1", "master")
    wait_for(lambda: "start db1" in home.actions_log(), 20, "db1's sequence started")
    home.set_status("db2", "master")
    # While db1's first command sleeps, checks go on and db2's transition is committed ...
    wait_for(committed(home, "db2", "master"), 20, "db2 committed during db1's sequence")
    assert "end db1" not in home.actions_log()
    wait_for(lambda: len(home.history()) == 4 and home.history()[-1]["state"] == "done", 30,
             "both sequences done")
    # ... but its commands only start after db1's sequence has ended: never interleaved.
    names = [line.split(" | ")[0] for line in home.actions_log()]
    assert names == ["start db1", "record after-timeout", "start db1", "end db1",
                     "start db2", "record after-timeout", "start db2", "end db2"]
    first = home.history()[-2]["commands"][0]
    assert first["outcome"] == "error" and first["error"] == "timed out after 0.5s"


def test_home_from_the_environment(home, tmp_path):
    home.write("checks.conf", "[local]\nstatus_from_files db1\n")
    env = dict(os.environ, HADAEMON_HOME=str(home.root))
    r = subprocess.run([sys.executable, "-m", "hadaemon", "check-config"], cwd=tmp_path,
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0 and str(home.root / "etc") in r.stdout


def test_a_stalled_control_client_does_not_break_the_next_ones(home, daemons):
    import socket
    home.write("checks.conf", FAST + "[local]\nstatus_from_files db1\n")
    home.set_status("db1", "up")
    daemons(home)
    stalled = socket.socket(socket.AF_UNIX)
    stalled.connect(str(home.root / "var/control.sock"))
    stalled.settimeout(30)
    try:
        assert stalled.recv(1) == b""  # past the client timeout (5 s) the daemon drops it
        for _ in range(3):  # each new client may be given the dropped one's fd number
            assert home.answers()
    finally:
        stalled.close()


def test_a_status_named_like_a_daemon_variable_overrides_nothing(home, daemons):
    # HA_<STATUS> lists the hosts with that status; `home` and `check` are statuses like any.
    home.write("checks.conf", FAST + "statuses = home, check\n[local]\nstatus_from_files h1 h2\n")
    home.write("actions.conf", "[*_to_check]\nshow\n")
    home.script("actions", "show", '#!/bin/sh\necho "home=$HA_HOME check=${HA_CHECK-unset}"\n')
    home.set_status("h1", "home")
    home.set_status("h2", "check")
    daemons(home)
    wait_for(lambda: any(h["state"] == "done" and h["commands"] for h in home.history()), 20,
             "the action ran")
    job = next(h for h in home.history() if h["commands"])
    assert job["commands"][0]["output"].strip() == f"home={home.root} check=unset"

"""Operator commands in single-node mode: pause/resume (maintenance) and manual transitions."""

import json
import os
import signal
import subprocess
import sys

from conftest import ROOT, committed, status_of, wait_for
from hadaemon import control

FAST = "[daemon]\ninterval = 0.1\n"


def setup(home, on_resume="last"):
    home.write("checks.conf",
               FAST + f"on_resume = {on_resume}\n[local]\nstatus_from_files db1 db2\n")
    home.write("actions.conf", "[*_to_*]\nrecord %HOST% %FROM% %TO%\n")
    home.set_status("db1", "slave")
    home.set_status("db2", "slave")


def test_pause_keeps_checking_fires_nothing_survives_restart_and_resume_fires_the_net_change(
        home, daemons):
    setup(home)
    d = daemons(home)
    wait_for(lambda: len(home.actions_log()) == 2, 20, "first statuses fired")
    assert "pause requested" in home.cli("pause", check=True).stdout
    assert home.status()["daemon"]["paused"] is True
    assert "PAUSED" in home.cli("status").stdout
    home.set_status("db1", "master")
    wait_for(lambda: status_of(home, "db1") == "master", 20, "committed while paused")
    job = home.history()[-1]
    assert job["state"] == "skipped" and job["note"] == "paused: no action fired"
    assert [c["outcome"] for c in job["commands"]] == ["not run"]
    assert d.stop() == 0
    daemons(home)  # still paused after a restart
    home.set_status("db2", "down")
    wait_for(lambda: status_of(home, "db2") == "down", 20, "db2 committed")
    home.set_status("db2", "slave")
    wait_for(lambda: home.history()[-1]["to"] == "slave", 20, "back to slave, paused")
    assert len(home.actions_log()) == 2
    r = home.cli("resume", check=True)
    assert "resume" in r.stdout
    # db1 changed during the pause (slave -> master): fired once; db2 is where it was: nothing.
    wait_for(lambda: len(home.actions_log()) == 3, 20, "net change fired")
    assert home.actions_log()[2].startswith("record db1 slave master |")
    assert home.history()[-1]["note"] == "fired on resume"
    assert home.status()["daemon"]["paused"] is False
    assert home.cli("resume").returncode == 1  # not paused


def test_resume_fires_nothing_when_configured(home, daemons):
    setup(home, on_resume="none")
    daemons(home)
    wait_for(lambda: len(home.actions_log()) == 2, 20, "first statuses fired")
    home.cli("pause", check=True)
    home.set_status("db1", "master")
    wait_for(lambda: status_of(home, "db1") == "master", 20, "committed while paused")
    home.cli("resume", check=True)
    wait_for(lambda: "resumed; fired on resume (on_resume = none): nothing" in home.log(), 20,
             "resume logged")
    assert len(home.actions_log()) == 2


def test_manual_transition_fires_like_an_observed_one(home, daemons):
    setup(home)
    # Slow on purpose: ten check results still say slave while it works.
    home.script("actions", "promote", """\
        #!/bin/sh
        sleep 1
        echo master > "$HA_HOME/var/status/$1"
        echo "promoted $1 manual=$HA_MANUAL"
        """)
    home.write("actions.conf", "[slave_to_master]\npromote %HOST%\n")
    daemons(home)
    wait_for(lambda: status_of(home, "db2") == "slave", 20, "db2 slave")
    r = home.cli("transition", "db2", "MASTER", check=True)
    assert "transition db2 -> master requested" in r.stdout
    wait_for(lambda: home.history()[-1]["state"] == "done", 20, "manual job done")
    job = home.history()[-1]
    assert (job["host"], job["from"], job["to"], job["manual"]) == ("db2", "slave", "master", True)
    assert job["commands"][0]["output"].strip() == "promoted db2 manual=1"
    assert "(manual)" in home.cli("history").stdout
    # The action made it true, so the checks agree; what they said before it was done did not
    # flip the host back.
    wait_for(lambda: home.status()["hosts"]["db2"].get("observed") == "master", 20, "observed")
    assert "db2: master -> slave held: the manual transition to master is still being" in home.log()
    assert [h["to"] for h in home.history() if h["host"] == "db2"] == ["slave", "master"]
    # status --json says which status was set by hand (the status page shows it)
    hosts = json.loads(home.cli("status", "--json").stdout)["hosts"]
    assert (hosts["db2"]["manual"], hosts["db1"]["manual"]) == (True, False)
    bad = home.cli("transition", "db1;x", "master")
    assert bad.returncode == 2 and "'db1;x' is not a host name" in bad.stderr
    # the daemon refuses it too, for a client other than ours
    answer = control.request(home.root / "var/control.sock",
                             {"cmd": "transition", "host": "db1;x", "status": "master"})
    assert not answer["ok"] and "invalid host or status" in answer["error"]
    same = home.cli("transition", "db2", "master")
    assert same.returncode == 1 and "db2 is master already" in same.stderr


def test_bad_cli_arguments_get_one_line_naming_the_command(home):
    cases = [(("status", "--bogus"), "hadaemon status: No such option '--bogus'"),
             (("transition", "db1"), "hadaemon transition: Missing argument 'STATUS'"),
             (("history", "--limit", "abc"), "hadaemon history: Invalid value for '--limit'"),
             (("frobnicate",), "hadaemon: No such command 'frobnicate'"),
             (("transition", "db1;reboot", "up"), "'db1;reboot' is not a host name"),
             (("transition", "db1", "UP!"), "'UP!' is not a status")]
    for args, expected in cases:
        r = home.cli(*args)
        assert r.returncode == 2 and r.stdout == "", (args, r)
        assert len(r.stderr.splitlines()) == 1 and expected in r.stderr, (args, r.stderr)
    r = home.cli("--home", str(home.root / "nowhere"), "status")
    assert r.returncode == 2 and r.stderr.startswith("hadaemon: home ") and \
        len(r.stderr.splitlines()) == 1, r.stderr
    # refused before anything is asked of the daemon: no daemon runs here, yet no "not running"
    assert "not running" not in home.cli("transition", "$(id)", "up").stderr
    assert "not running" not in home.cli("history", "--host", "a b").stderr


def test_settings_naming_what_does_not_exist_are_refused_with_their_line(home):
    home.write("checks.conf", "[daemon]\nlog = nowhere/hadaemon.log\nuser = nosuchuser\n"
               "socket_group = nosuchgroup\n[local]\nstatus_from_files db1\n")
    r = home.cli("check-config")
    assert r.returncode == 1
    conf = home.root / "etc/checks.conf"
    for line, text in ((2, f"log: folder {home.root / 'nowhere'} does not exist"),
                       (3, "user: no user 'nosuchuser' on this machine"),
                       (4, "socket_group: no group 'nosuchgroup' on this machine")):
        assert f"{conf}:{line}: {text}" in r.stderr + r.stdout, (text, r.stderr, r.stdout)
    assert "Traceback" not in r.stderr + r.stdout


def test_a_reload_that_cannot_apply_keeps_everything_and_the_daemon_answers(home, daemons):
    setup(home)
    d = daemons(home)
    wait_for(lambda: len(home.actions_log()) == 2, 20, "first statuses fired")
    conf = home.root / "etc/checks.conf"
    good = conf.read_text()
    # A log "file" that is a folder: the config reads well, opening it fails.
    (home.root / "logs").mkdir()
    conf.write_text(good.replace("[local]", "log = logs\n[local]"))
    r = home.cli("reload")
    assert r.returncode == 1 and "cannot open log logs" in r.stderr, r
    assert len(r.stderr.splitlines()) == 1, r.stderr
    d.proc.send_signal(signal.SIGHUP)  # the same through a signal: logged, and the daemon lives
    wait_for(lambda: home.log().count("reload refused") == 2, 20, "second refusal logged")
    assert d.proc.poll() is None and "Traceback" not in home.log()
    conf.write_text(good)
    home.set_status("db1", "master")
    wait_for(lambda: len(home.actions_log()) == 3, 20, "checks and actions go on")
    # Requests the daemon cannot serve get an answer at once, not a dropped connection.
    sock = home.root / "var/control.sock"
    for bad in ({"cmd": "history", "limit": 1e400}, {"cmd": "history", "limit": 10 ** 20},
                {"cmd": "history", "host": ["x"]}, {"cmd": "history", "limit": "5"}):
        answer = control.request(sock, bad, timeout=3)
        assert not answer["ok"] and "bad history request" in answer["error"], (bad, answer)
    assert d.stop() == 0


# -- a host nobody reports: transition --new, forget ------------------------------------------

def test_a_host_no_check_reports_needs_new_and_forget_takes_it_out_of_every_status_list(
        home, daemons):
    """Issue 11: `transition db9 master` (a typo) made db9 a master for good: every later
    failover passed it in %MASTER%."""
    home.write("checks.conf", FAST + "[local]\nstatus_from_files db1 db2\nthird\n"
               "[check:third]\nscript = status_from_files\nargs = db9\n")
    home.write("actions.conf", "[slave_to_master]\nrecord %MASTER%\n")
    for host, status in (("db1", "slave"), ("db2", "slave"), ("db9", "master")):
        home.set_status(host, status)
    d = daemons(home)
    wait_for(committed(home, "db9", "master"), 20, "db9 master")
    wait_for(committed(home, "db2", "slave"), 20, "db2 slave")

    typo = home.cli("transition", "db8", "master")
    assert typo.returncode == 1 and len(typo.stderr.splitlines()) == 1, typo
    assert "db8: no check reports this host" in typo.stderr
    assert "transition --new db8 master" in typo.stderr
    assert "db8" not in home.status()["hosts"]
    assert home.cli("transition", "--new", "db8", "master").returncode == 0
    wait_for(committed(home, "db8", "master"), 20, "db8 master by hand")
    assert home.history()[-1]["host"] == "db8" and home.history()[-1]["manual"]

    # A check still names db9: forgetting it would last until its next result.
    r = home.cli("forget", "db9")
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r
    assert "db9 is still reported by check third (its latest result names it)" in r.stderr
    assert home.cli("forget", "db8", check=True).stdout.strip() == "db8 forgotten"
    assert "db8" not in home.status()["hosts"]
    gone = home.cli("forget", "db8")
    assert gone.returncode == 1 and "db8: no such host in the table" in gone.stderr
    assert "forgot host db8 (was master" in home.log()

    home.write("checks.conf", FAST + "[local]\nstatus_from_files db1 db2\n")
    home.cli("reload", check=True)
    home.cli("forget", "db9", check=True)
    assert set(home.status()["hosts"]) == {"db1", "db2"}
    home.set_status("db2", "master")
    wait_for(lambda: home.actions_log(), 20, "failover fired")
    assert home.actions_log()[0].startswith("record db2 |"), home.actions_log()

    # A forgotten host a check reports again is just a host, new from unknown; and forgotten
    # is forgotten across a restart.
    assert d.stop() == 0
    daemons(home)
    assert set(home.status()["hosts"]) == {"db1", "db2"}
    home.write("checks.conf", FAST + "[local]\nstatus_from_files db1 db2 db9\n")
    home.cli("reload", check=True)
    wait_for(committed(home, "db9", "master"), 20, "db9 back")
    assert [(h["from"], h["to"]) for h in home.history() if h["host"] == "db9"][-1] == (
        "unknown", "master")
    assert home.cli("transition", "db9", "slave").returncode == 0  # reported: no --new needed


def test_a_transition_committed_while_paused_with_no_section_is_recorded_once(home, daemons):
    """Issue 11: recorded `done` while paused, then again on resume."""
    home.write("checks.conf", FAST + "[local]\nstatus_from_files db1 db2\n")
    home.write("actions.conf", "[slave_to_master]\nrecord %HOST% %FROM% %TO%\n")
    home.set_status("db1", "slave")
    home.set_status("db2", "slave")
    daemons(home)
    wait_for(committed(home, "db2", "slave"), 20, "db2 slave")
    wait_for(committed(home, "db1", "slave"), 20, "db1 slave")
    home.cli("pause", check=True)
    home.set_status("db1", "down")  # no section: slave -> down
    home.set_status("db2", "down")  # down, then master: the net change has a section
    wait_for(committed(home, "db2", "down"), 20, "db2 down")
    home.set_status("db2", "master")
    wait_for(committed(home, "db2", "master"), 20, "db2 master")
    wait_for(committed(home, "db1", "down"), 20, "db1 down")
    during = [(h["host"], h["from"], h["to"], h["state"]) for h in home.history()[2:]]
    assert sorted(during) == [("db1", "slave", "down", "skipped"),
                              ("db2", "down", "master", "skipped"),
                              ("db2", "slave", "down", "skipped")]
    assert home.cli("resume", check=True).returncode == 0
    wait_for(lambda: home.actions_log(), 20, "db2's net change fired")
    assert home.actions_log() == [home.actions_log()[0]]
    assert home.actions_log()[0].startswith("record db2 slave master |")
    after = [(h["host"], h["from"], h["to"], h["state"]) for h in home.history()[2:]]
    wait_for(lambda: home.history()[-1]["state"] == "done", 20, "fired sequence done")
    assert after[:3] == [tuple(x) for x in during] and after[3][:3] == ("db2", "slave", "master")
    assert len(after) == 4, after  # db1's slave -> down once, not again on resume
    assert "resumed; fired on resume (on_resume = last): db2: slave -> master" in home.log()


# -- not a home -------------------------------------------------------------------------------

def test_commands_outside_a_home_say_so_on_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HADAEMON_HOME"}
    env["PYTHONPATH"] = str(ROOT)
    bare = tmp_path / "bare"
    bare.mkdir()

    def hadaemon(*args, cwd, extra=None):
        return subprocess.run([sys.executable, "-m", "hadaemon", *args], cwd=cwd,
                              capture_output=True, text=True, timeout=60,
                              env=dict(env, **(extra or {})))
    for where in ("/", bare):
        for args in (("status",), ("check-config",), ("run",), ("history",), ("stop",),
                     ("transition", "db1", "up"), ("forget", "db1")):
            r = hadaemon(*args, cwd=where)
            assert r.returncode == 2 and r.stdout == "", (where, args, r)
            assert r.stderr == (f"hadaemon: not a hadaemon home (no etc/checks.conf in "
                                f"{where}): use --home or HADAEMON_HOME\n"), (where, args)
    r = hadaemon("--home", str(bare), "status", cwd="/")
    assert r.returncode == 2 and r.stderr == (
        f"hadaemon: not a hadaemon home (no etc/checks.conf in {bare}, given by --home)\n")
    r = hadaemon("check-config", cwd="/", extra={"HADAEMON_HOME": str(bare)})
    assert r.returncode == 2 and r.stderr == (
        f"hadaemon: not a hadaemon home (no etc/checks.conf in {bare}, from $HADAEMON_HOME)\n")
    assert not (bare / "var").exists()  # nothing was made there
    for args in (("--help",), ("status", "--help"), ("transition", "--help")):
        r = hadaemon(*args, cwd="/")
        assert r.returncode == 0 and r.stdout.startswith("Usage: "), (args, r)

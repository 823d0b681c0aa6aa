"""Operator commands in single-node mode: pause/resume (maintenance) and manual transitions."""

from conftest import status_of, wait_for
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

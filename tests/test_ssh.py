"""[ssh:HOST] scopes against a real sshd (Debian's openssh-server) in a network namespace of its
own, keys made per test, its host key recorded with ssh-keyscan: results, Nagios plugins, the
remote timeout, sshd gone, a partition, a changed host key, hostile arguments, one connection
per host, and no ssh left behind.
"""

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

import sshnet
from conftest import ROOT, committed, new_results, status_of, wait_for
from test_walkthrough import README, hadaemon_env, run_shell, shell_block

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(bool(sshnet.unavailable()),
                                 reason=str(sshnet.unavailable()))]

DUMMY = "/usr/lib/nagios/plugins/check_dummy"
# A check sent from checks/ over stdin: python3 on the remote side, reporting what it got.
REPORT = """\
#!/usr/bin/python3
import json, os, sys
print(json.dumps({"host": os.environ["HA_HOST"], "status": "up", "args": sys.argv[1:],
                  "check": os.environ["HA_CHECK"], "via": os.environ.get("SSH_CONNECTION", "")}))
"""


@pytest.fixture
def remote(tmp_path):
    host = sshnet.RemoteHost(tmp_path / "sshd").up()
    try:
        yield host
    finally:
        host.down()


def ssh_home(home, remote, scope, daemon="interval = 0.2\ntimeout = 3\n", actions="",
             connect_timeout=1):
    home.script("checks", "report", REPORT)
    home.write("checks.conf", f"[daemon]\n{daemon}\n{remote.settings()}"
               f"connect_timeout = {connect_timeout}\n\n"
               f"[ssh:db3]\naddress = {remote.address}\n{scope}")
    home.write("actions.conf", actions)
    return home


def details(home, host):
    return home.status()["hosts"].get(host, {}).get("details", {})


def masters(home):
    """pids of this home's ssh masters (HA_SSH in their environment)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if f"HA_HOME={home.root}".encode() in env and any(v.startswith(b"HA_SSH=") for v in env):
            found.append(int(entry))
    return found


def logins_once_the_master_is_up(home, remote, *hosts):
    """sshd's logins once the master is up and the checks that connected alone meanwhile (as
    many as ran before its socket appeared) are done: none more comes with the same key."""
    wait_for(lambda: any(p.is_socket() for p in (home.root / "var/ssh").iterdir()), 30,
             "the master's control socket")
    settle = new_results(home, *hosts)
    wait_for(lambda: settle() >= 6, 30, "the checks that connected alone done")
    return remote.logins()


def test_remote_json_and_nagios_results_through_one_connection(home, daemons, remote):
    ssh_home(home, remote, f"report one 'two words'\n{DUMMY} 1 'remote says hi'\n"
             "[check:check_dummy@db3]\nhost = db3-plugin\n")
    daemons(home)
    wait_for(committed(home, "db3", "up"), 30, "db3 up")
    wait_for(committed(home, "db3-plugin", "warning"), 30, "the plugin's warning")
    d = details(home, "db3")
    assert d["args"] == ["one", "two words"] and d["check"] == "report@db3"
    assert d["via"].split()[2] == remote.address  # it ran behind that host's sshd
    assert details(home, "db3-plugin") == {"exit": 1, "output": "WARNING: remote says hi"}
    # From the master on each check is a channel of it: 30 results later, no login more and
    # one connection.
    before = logins_once_the_master_is_up(home, remote, "db3", "db3-plugin")
    count = new_results(home, "db3", "db3-plugin")
    wait_for(lambda: count() >= 30, 60, "30 remote results")
    assert len(remote.connections()) == 1, remote.connections()
    assert remote.logins() == before, (before, remote.logins())
    # probe runs a remote check too (through the daemon's master, or alone)
    r = home.cli("probe", "--json", "report@db3", "check_dummy@db3")
    assert r.returncode == 0, r.stderr
    answers = {a["check"]: a["results"] for a in json.loads(r.stdout)}
    assert answers["report@db3"][0]["status"] == "up"
    assert answers["check_dummy@db3"][0] == {"host": "db3-plugin", "status": "warning",
                                              "details": {"exit": 1,
                                                          "output": "WARNING: remote says hi"}}


def test_hostile_arguments_reach_the_check_verbatim(home, daemons, remote, tmp_path):
    marks = [tmp_path / f"owned{i}" for i in range(4)]
    hostile = [f"$(touch {marks[0]})", f"`touch {marks[1]}`", f"; touch {marks[2]}",
               f"' && touch {marks[3]} '", 'say "hi"', "*", "~root", "$HOME"]
    line = " ".join("'" + w.replace("'", "'\"'\"'") + "'" if "'" not in w else '"' + w + '"'
                    for w in hostile)
    ssh_home(home, remote, f"report {line}\n/nonexistent/check_x\n"
             "[check:check_x@db3]\nhost = db3-missing\n")
    # probe without a daemon: on a connection of its own
    r = home.cli("probe", "--json", "report@db3")
    assert r.returncode == 0 and json.loads(r.stdout)[0]["results"][0]["details"]["args"] == \
        hostile, r.stdout + r.stderr
    daemons(home)
    wait_for(committed(home, "db3", "up"), 30, "db3 up")
    assert details(home, "db3")["args"] == hostile
    assert not [m for m in marks if m.exists()]  # the namespace shares this file system
    # a remote program that is not there is an error, as a local one that cannot start
    wait_for(committed(home, "db3-missing", "unknown"), 30, "db3-missing unknown")
    assert details(home, "db3-missing")["error"].startswith(
        "cannot run on db3: timeout: failed to run command '/nonexistent/check_x'")


def test_a_timeout_kills_the_remote_process(home, daemons, remote):
    ssh_home(home, remote, "/bin/sleep 4242\n", daemon="interval = 60\ntimeout = 1\n")
    daemons(home)
    wait_for(lambda: any("sleep 4242" in c for c in remote.commands()), 30,
             "the check running on db3")
    wait_for(committed(home, "db3", "unknown"), 30, "db3 unknown")
    assert details(home, "db3")["error"] == "timed out after 1s on db3"
    wait_for(lambda: not any("sleep 4242" in c for c in remote.commands()), 10,
             "the remote sleep gone")


@pytest.mark.parametrize("daemons", ("run", "start"), indirect=True)  # a fault: as deployed too
def test_sshd_gone_is_unknown_not_down_and_comes_back(home, daemons, remote):
    # confirm = 3: "unreachable for 3 intervals" is what fires [up_to_unknown]
    ssh_home(home, remote, "report\n[check:report@db3]\nconfirm = 3\n",
             actions="[up_to_unknown]\nrecord db3 unreachable\n")
    d = daemons(home)
    wait_for(committed(home, "db3", "up"), 30, "db3 up")
    wait_for(lambda: len(masters(home)) == 1, 30, "a master")
    first = masters(home)
    remote.demo("stop")
    wait_for(committed(home, "db3", "unknown"), 30, "db3 unknown")
    assert details(home, "db3")["error"].startswith("unreachable via ssh")
    wait_for(lambda: home.actions_log(), 30, "the action of up_to_unknown")
    assert home.actions_log()[0].startswith("record db3 unreachable")
    remote.demo("start")
    wait_for(committed(home, "db3", "up"), 60, "db3 up again")
    wait_for(lambda: masters(home) and masters(home) != first, 60, "a new master")
    assert [(t["from"], t["to"]) for t in reversed(home.history())] == [
        ("unknown", "up"), ("up", "unknown"), ("unknown", "up")]
    assert d.alive()


def test_a_partition_is_unknown_and_heals(home, daemons, remote):
    ssh_home(home, remote, "report\n", daemon="interval = 0.5\ntimeout = 1\n",
             connect_timeout=3)
    daemons(home)
    wait_for(committed(home, "db3", "up"), 30, "db3 up")
    remote.demo("cut")
    # Until the master sees the link dead (twice connect_timeout), a check's channel hangs
    # until the local ssh's timeout (1 + 3 + 3 s), longer than two intervals plus the check's
    # timeout: the check must not be stale for it (its worker not stalled, the watchdog fed).
    stale = []

    def unknown_then_two_more(count=[]):
        stale.extend(home.status()["daemon"]["stale"]["checks"])
        if not count:
            if status_of(home, "db3") == "unknown":
                count.append(new_results(home, "db3"))
            return False
        return count[0]() >= 2
    wait_for(unknown_then_two_more, 90, "db3 unknown, then two more results")
    assert details(home, "db3")["error"].startswith("unreachable via ssh")
    assert "down" not in [t["to"] for t in home.history()]
    assert stale == []
    remote.demo("mend")
    wait_for(committed(home, "db3", "up"), 90, "db3 up again")


def test_a_changed_host_key_is_refused(home, daemons, remote):
    known = (remote.dir / "known_hosts").read_bytes()
    ssh_home(home, remote, "report\n")
    daemons(home)
    wait_for(committed(home, "db3", "up"), 30, "db3 up")
    logins = logins_once_the_master_is_up(home, remote, "db3")
    remote.demo("rekey")  # what a man in the middle would show
    wait_for(committed(home, "db3", "unknown"), 30, "db3 unknown")
    # (while sshd restarts: "Connection refused")
    wait_for(lambda: details(home, "db3").get("error") ==
             "unreachable via ssh: Host key verification failed.", 30, "the key refused")
    count = new_results(home, "db3")
    wait_for(lambda: count() >= 5, 30, "more refused checks")
    assert status_of(home, "db3") == "unknown"
    assert remote.logins() == logins  # never logged in to it
    assert (remote.dir / "known_hosts").read_bytes() == known  # and nothing learnt from it


@pytest.mark.parametrize("daemons", ("run", "start"), indirect=True)  # a fault: as deployed too
def test_no_ssh_outlives_the_daemon(home, daemons, remote):
    ssh_home(home, remote, "report\n")
    d = daemons(home)
    wait_for(committed(home, "db3", "up"), 30, "db3 up")
    wait_for(lambda: len(masters(home)) == 1, 30, "a master")
    # a master whose socket is gone serves nothing: it is ended and replaced
    old = masters(home)
    [socket] = [p for p in (home.root / "var/ssh").iterdir() if p.is_socket()]
    socket.unlink()
    wait_for(lambda: masters(home) and not set(masters(home)) & set(old), 30, "a new master")
    wait_for(socket.exists, 30, "its socket")
    # a reload that changes how db3 is reached ends the old master; the next check starts one
    old = masters(home)
    text = (home.root / "etc/checks.conf").read_text()
    home.write("checks.conf", text.replace("connect_timeout = 1", "connect_timeout = 2"))
    assert home.cli("reload").returncode == 0
    wait_for(lambda: masters(home) and not set(masters(home)) & set(old), 30, "a new master")
    assert d.stop() == 0
    assert masters(home) == [] and remote.connections() == []
    # a SIGKILL of the supervisor alone: its master goes with it (it asked for SIGTERM then)
    d = daemons(home)
    wait_for(lambda: len(masters(home)) == 1, 30, "a master")
    d.kill_supervisor(signal.SIGKILL)
    wait_for(lambda: masters(home) == [], 10, "the master gone with the supervisor")
    wait_for(lambda: remote.connections() == [], 10, "no connection left")


def test_the_sweep_at_start_kills_a_master_a_killed_daemon_left(home, daemons):
    # PR_SET_PDEATHSIG makes this rare (a master started just as its supervisor died); a
    # process with a master's marks stands in for one.
    home.write("checks.conf", "[local]\nstatus_from_files db1\n")
    left = subprocess.Popen(["sleep", "600"], start_new_session=True,
                            env={"HA_HOME": str(home.root), "HA_SSH": "10.213.0.2"})
    try:
        daemons(home)
        wait_for(lambda: left.poll() is not None, 30, "the left master killed")
        assert left.returncode == -signal.SIGKILL
    finally:
        if left.poll() is None:
            left.kill()
            left.wait()


def test_readme_ssh_walkthrough_twice_in_a_row(tmp_path):
    host = sshnet.RemoteHost(tmp_path / "sshd")
    sshnet.reap_stale()
    host.net = sshnet.reserve_net()
    demo = f"{sshnet.DEMO} -s {host.suffix} -n {host.net} -d {host.dir}"
    script = shell_block(README.read_text(), "ssh")
    for old, new in (("demo=$PWD/examples/ssh/demo;", f'demo="{demo}";'),
                     ("10.213.0.2", host.address), ("/var/tmp/hadaemon-sshdemo", str(host.dir)),
                     ("/tmp/hassh", str(tmp_path / "hassh"))):
        assert old in script
        script = script.replace(old, new)
    env = hadaemon_env(tmp_path)
    try:
        for round_ in (1, 2):
            out = run_shell(script, ROOT, env)
            for shown in ("OK: 3 check(s)", "hadaemon started", "hadaemon stopped"):
                assert shown in out, f"round {round_}: {shown!r} not in:\n{out}"
            assert not (tmp_path / "hassh").exists() and not host.dir.exists()
    finally:
        host.down()

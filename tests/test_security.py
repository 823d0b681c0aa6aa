"""hadaemon runs as root and executes scripts: what it refuses, and who may talk to it."""

import json
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import STATUS_FROM_FILES, Home, status_of, wait_for

FAST = "[daemon]\ninterval = 0.1\n"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (strict mode, other users)")


@needs_root
@pytest.mark.parametrize("target", ["checks/status_from_files", "actions/record", "etc/checks.conf",
                                    "etc/actions.conf", "checks", "."])
def test_strict_mode_refuses_what_others_can_write(home, target):
    home.write("checks.conf", "[local]\nstatus_from_files db1\n")
    home.write("actions.conf", "[*_to_up]\nrecord x\n")
    path = (home.root / target).resolve()
    assert home.cli("check-config").returncode == 0
    path.chmod(path.stat().st_mode | stat.S_IWGRP)
    r = home.cli("run", timeout=30)
    assert r.returncode == 1
    assert f"strict mode: {path} is writable by its group" in r.stderr
    path.chmod(path.stat().st_mode & ~stat.S_IWGRP | stat.S_IWOTH)
    r = home.cli("check-config")
    assert r.returncode == 1 and f"{path} is writable by others" in r.stderr
    os.chown(path, 65534, -1)
    path.chmod(path.stat().st_mode & ~stat.S_IWOTH)
    r = home.cli("check-config")
    assert r.returncode == 1 and f"{path} is owned by uid 65534" in r.stderr
    home.write("checks.conf", "[daemon]\nstrict = no\n[local]\nstatus_from_files db1\n")
    os.chown(home.root / "etc/checks.conf", 0, -1)
    assert home.cli("check-config").returncode == 0


@needs_root
def test_strict_mode_is_kept_on_reload(home, daemons):
    home.write("checks.conf", FAST + "[local]\nstatus_from_files db1\n")
    home.set_status("db1", "up")
    daemons(home)
    wait_for(lambda: status_of(home, "db1") == "up", 20, "up")
    home.script("checks", "evil", "#!/bin/sh\necho '{\"host\": \"db1\", \"status\": \"down\"}'\n")
    (home.root / "checks/evil").chmod(0o777)
    home.write("checks.conf", FAST + "[local]\nstatus_from_files db1\nevil\n[check:evil]\n")
    r = home.cli("reload")
    assert r.returncode == 1 and "checks/evil is writable by others" in r.stderr
    assert "reload refused" in home.log()
    assert status_of(home, "db1") == "up"


@pytest.fixture
def open_home():
    """A home every user can read (a pytest tmp dir is root-only), removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="hadaemon-test-"))
    root.chmod(0o755)
    yield Home(root / "home")
    shutil.rmtree(root)


@needs_root
def test_checks_and_actions_run_as_the_configured_user(open_home, daemons):
    home = open_home
    home.write("checks.conf", FAST + "user = nobody\n[local]\nwhoami\n")
    home.script("checks", "whoami",
                "#!/bin/sh\necho \"{\\\"host\\\": \\\"h\\\", \\\"status\\\": \\\"up\\\", "
                "\\\"user\\\": \\\"$(id -un)\\\", \\\"groups\\\": \\\"$(id -G)\\\"}\"\n")
    home.script("actions", "whoami", "#!/bin/sh\nid -un\n")
    home.write("actions.conf", "[*_to_up]\nwhoami\n")
    for d in ("", "checks", "actions", "etc"):
        (home.root / d).chmod(0o755)
    daemons(home)
    wait_for(lambda: status_of(home, "h") == "up", 20, "up")
    details = home.status()["hosts"]["h"]["details"]
    assert details["user"] == "nobody" and details["groups"] == "65534"
    wait_for(lambda: home.history() and home.history()[-1]["state"] == "done", 20, "action")
    assert home.history()[-1]["commands"][0]["output"].strip() == "nobody"


def test_minimal_environment(home, daemons, monkeypatch):
    home.write("checks.conf", FAST + "[local]\nenvcheck\n")
    home.script("checks", "envcheck", """\
        #!/bin/sh
        printf '{"host": "h", "status": "up", "env": "%s"}\\n' "$(env | cut -d= -f1 | sort | tr '\\n' ' ')"
        """)
    home.script("actions", "envaction", "#!/bin/sh\nenv | cut -d= -f1 | sort\n")
    home.write("actions.conf", "[*_to_up]\nenvaction\n")
    monkeypatch.setenv("SECRET_TOKEN", "do-not-leak")
    daemons(home)
    wait_for(lambda: status_of(home, "h") == "up", 20, "up")
    seen = set(home.status()["hosts"]["h"]["details"]["env"].split())
    assert seen - {"PWD", "SHLVL", "_"} == {"PATH", "LANG", "HA_HOME", "HA_CHECK", "HA_HOST"}
    wait_for(lambda: home.history() and home.history()[-1]["state"] == "done", 20, "action")
    names = set(home.history()[-1]["commands"][0]["output"].split()) - {"PWD", "SHLVL", "_"}
    assert names == {"PATH", "LANG", "HA_HOME", "HA_HOST", "HA_FROM", "HA_TO", "HA_UP",
                     "HA_MANUAL", "HA_RESUMED", "HA_JOB"}


def test_control_socket_is_private_and_checks_credentials(open_home, daemons):
    home = open_home
    home.write("checks.conf", FAST + "[local]\nstatus_from_files db1\n")
    daemons(home)
    sock = home.root / "var/control.sock"
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another user")
    (home.root / "var").chmod(0o755)
    client = ["/usr/bin/python3", "-c", f"""
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect({str(sock)!r})
except PermissionError:
    print("EACCES"); sys.exit()
try:
    s.sendall(b'{{"cmd": "status"}}\\n')
except BrokenPipeError:
    pass  # refused before the request was read: the answer is waiting anyway
print(s.recv(65536).decode().strip())
"""]
    as_nobody = dict(user="nobody", group="nogroup", extra_groups=[], capture_output=True,
                     text=True, timeout=30)
    # The file mode alone keeps others out ...
    assert subprocess.run(client, **as_nobody).stdout.strip() == "EACCES"
    # ... and were the mode loosened by mistake, SO_PEERCRED still refuses them.
    sock.chmod(0o666)
    out = subprocess.run(client, **as_nobody).stdout.strip()
    assert json.loads(out) == {"ok": False, "error": "permission denied"}
    wait_for(lambda: "control socket: refused pid" in home.log() and "uid 65534" in home.log(),
             10, "refusal logged")
    assert home.status()["hosts"] is not None  # root still gets in


def test_hostile_host_names_never_reach_an_action(home, daemons):
    home.write("checks.conf", FAST + "[local]\nliar\n")
    home.script("checks", "liar", """\
        #!/bin/sh
        echo '[{"host": "db1", "status": "master"}, {"host": "db1; reboot", "status": "slave"}]'
        """)
    home.script("checks", "liar2", "#!/bin/sh\necho '{\"host\": \"$(id)\", \"status\": \"up\"}'\n")
    home.write("actions.conf", "[*_to_*]\nrecord %HOST% %MASTER% %SLAVE%\n")
    daemons(home)
    wait_for(lambda: "unsafe host name 'db1; reboot'" in home.log(), 20, "rejection")
    home.write("checks.conf", FAST + "[local]\nliar2\n")
    assert home.cli("reload").returncode == 0
    wait_for(lambda: "unsafe host name '$(id)'" in home.log(), 20, "rejection")
    assert home.status()["hosts"] == {}
    assert home.actions_log() == []


# -- strict mode covers the home's folders; a program name resolves once ----------------------

OTHER_UID = 12345  # no user of the machine: "another user" without creating one
REFUSED = "is owned by uid 12345, not root or the daemon user"


def _strict_lines(stderr):
    return [line for line in stderr.splitlines() if "strict mode" in line]


@needs_root
def test_strict_mode_refuses_an_actions_folder_another_user_owns(home):
    """Issue 10: actions.conf names only a program on PATH, so no file under actions/ was
    vetted; whoever owns actions/ could add actions/logger later, and it would run as root."""
    home.write("checks.conf", "[daemon]\nstrict = yes\n[local]\nstatus_from_files db1\n")
    home.write("actions.conf", "[*_to_up]\nlogger hadaemon-test\n")
    actions = (home.root / "actions").resolve()
    assert home.cli("check-config").returncode == 0
    os.chown(actions, OTHER_UID, -1)
    for command in ("check-config", "start"):
        r = home.cli(command, timeout=30)
        assert r.returncode == 1, r.stdout
        assert _strict_lines(r.stderr) == [
            f"error: strict mode: {actions} {REFUSED} (chown it, or set strict = no in [daemon])"]
    assert not (home.root / "var/hadaemon.pid").exists()


@pytest.fixture
def plugin(tmp_path):
    """A check outside the home, named by its absolute path (as a Nagios plugin is): no check
    program lies under checks/."""
    path = tmp_path / "plugins/status_from_files"
    path.parent.mkdir()
    path.write_text(STATUS_FROM_FILES)
    path.chmod(0o755)
    return path


@needs_root
@pytest.mark.parametrize("folder", [".", "etc", "checks", "actions"])
def test_strict_mode_refuses_home_folders_others_can_write(home, daemons, plugin, folder):
    """The folders themselves, even when no program the config names lies in them: start,
    check-config and reload refuse them with one line naming the folder."""
    home.write("checks.conf", FAST + f"[local]\n{plugin} db1\n")
    home.write("actions.conf", "[*_to_*]\necho %HOST% %TO%\n")
    home.set_status("db1", "up")
    daemons(home)
    wait_for(lambda: status_of(home, "db1") == "up", 20, "up")
    path = (home.root / folder).resolve()
    path.chmod(0o777)
    for command in ("check-config", "reload"):
        r = home.cli(command)
        assert r.returncode == 1 and _strict_lines(r.stderr) == [
            f"error: strict mode: {path} is writable by others (chmod go-w {path}, "
            f"or set strict = no in [daemon])"], r.stderr
    assert "reload refused, keeping the running config" in home.log()
    home.set_status("db1", "down")  # the running config still works
    wait_for(lambda: status_of(home, "db1") == "down", 20, "down")
    path.chmod(0o755)
    os.chown(path, OTHER_UID, -1)
    r = home.cli("check-config")
    assert r.returncode == 1 and len(_strict_lines(r.stderr)) == 1 and REFUSED in r.stderr
    assert str(path) in _strict_lines(r.stderr)[0]


def _jobs_done(home, count):
    def done():
        h = home.history()
        return len(h) >= count and all(e["state"] in ("done", "failed") for e in h) and h
    return done


def test_a_program_appearing_in_actions_after_load_does_not_run_until_a_reload(home, daemons):
    """`echo` resolved to the PATH program at load: an actions/echo created afterwards does not
    change what runs (the runner never looks the name up again) until a reload resolves anew."""
    home.write("checks.conf", FAST + "[local]\nstatus_from_files db1\n")
    home.write("actions.conf", "[*_to_*]\necho %TO%\n")
    home.set_status("db1", "up")
    daemons(home)
    wait_for(_jobs_done(home, 1), 20, "the first job")
    home.script("actions", "echo", "#!/bin/sh\necho shadow \"$@\"\n")
    home.set_status("db1", "down")
    last = wait_for(_jobs_done(home, 2), 20, "the second job")[-1]
    assert (last["to"], last["state"]) == ("down", "done")
    assert last["commands"][0]["output"] == "down\n"
    assert home.cli("reload").returncode == 0
    home.set_status("db1", "up")
    last = wait_for(_jobs_done(home, 3), 20, "the third job")[-1]
    assert last["commands"][0]["output"] == "shadow up\n"


SLOW_ONCE = """\
#!/bin/sh
[ "$HA_RESUMED" = 1 ] && exit 0
exec sleep 60
"""


def test_a_resumed_job_runs_the_program_resolved_when_it_was_committed(home, daemons):
    """The resolved path is journalled with each step: a job interrupted by a stop and resumed
    at the next start runs what was resolved then, though the new start resolves `echo` to an
    actions/echo created meanwhile."""
    home.write("checks.conf", FAST + "grace = 0\n[local]\nstatus_from_files db1\n")
    home.script("actions", "slow", SLOW_ONCE)
    home.write("actions.conf", "[*_to_down]\nslow\necho %TO%\n")
    home.set_status("db1", "down")
    d = daemons(home)
    wait_for(lambda: home.history() and home.history()[-1]["commands"][0]["outcome"] == "running",
             20, "slow running")
    assert d.stop() == 0
    home.script("actions", "echo", "#!/bin/sh\necho shadow \"$@\"\n")
    daemons(home)
    job = wait_for(_jobs_done(home, 1), 20, "the job resumed and finished")[-1]
    assert job["resumed"] and job["state"] == "done"
    assert job["commands"][1]["output"] == "down\n"


def test_a_program_gone_since_load_fails_its_command_and_is_not_looked_up_again(home, daemons):
    """actions/true resolved at load; once it is gone, the command fails with the reason in
    history, rather than running /usr/bin/true found on PATH."""
    home.write("checks.conf", FAST + "[local]\nstatus_from_files db1\n")
    script = home.script("actions", "true", "#!/bin/sh\nexit 0\n").resolve()
    home.write("actions.conf", "[*_to_*]\ntrue\n")
    home.set_status("db1", "up")
    daemons(home)
    assert wait_for(_jobs_done(home, 1), 20, "the first job")[-1]["state"] == "done"
    script.unlink()
    home.set_status("db1", "down")
    last = wait_for(_jobs_done(home, 2), 20, "the second job")[-1]
    assert last["state"] == "failed"
    assert last["commands"][0]["error"] == (
        f"{script} does not exist (resolved from 'true' when the config was loaded; "
        f"not looked up again)")

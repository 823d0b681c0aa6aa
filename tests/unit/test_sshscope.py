"""The [ssh:HOST] scope's pure parts (hadaemon/sshscope.py, its reading in config.py): targets,
settings refused with file:line, the ssh argv, and the remote command's quoting, which a real
POSIX shell reads back word for word, hostile words included."""

import json
import shlex
import subprocess
import sys

import pytest

from hadaemon import config, protocol, sshscope
from hadaemon.home import Home
from hadaemon.inifile import ConfigError

HOSTILE = ["$(touch /tmp/hadaemon-owned)", "`id`", "a; touch /tmp/x", "it's", 'say "hi"',
           "new\nline", "*", "~root", "$HOME", "| cat", "&& false", "\\", "", " lead", "-x"]


def test_targets_parse_user_host_and_port():
    assert sshscope.parse_target("db3") == ("", "db3", 0)
    assert sshscope.parse_target("monitor@db3.example.com:2222") == ("monitor", "db3.example.com",
                                                                     2222)
    assert sshscope.parse_target("10.0.0.2:22") == ("", "10.0.0.2", 22)
    for bad, why in (("db3:99999", "port"), ("-oProxyCommand=x", "host name"),
                     ("a b", "host name"), ("-l@db3", "user"), ("db3:", "port"), ("", "host")):
        with pytest.raises(ValueError, match=why):
            sshscope.parse_target(bad)


def test_remote_command_is_read_back_word_for_word_by_a_shell():
    command = sshscope.remote_command(("/usr/bin/printf", "%s\\0", *HOSTILE), "c@db3", "db3", 2.5)
    # What sshd does with it: the login shell's -c. printf shows each word it was given.
    out = subprocess.run(["/bin/sh", "-c", command.replace("exec env", "exec /usr/bin/env", 1)],
                         capture_output=True, timeout=10, cwd="/tmp")
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().split("\0")[:-1] == HOSTILE
    words = shlex.split(command)
    assert words[:8] == ["exec", "env", "HA_CHECK=c@db3", "HA_HOST=db3", "timeout", "-k", "1",
                         "2.5"]


def test_remote_command_passes_the_environment_of_a_local_check():
    command = sshscope.remote_command(
        (sys.executable, "-c", "import os, json; print(json.dumps([os.environ['HA_CHECK'], "
                               "os.environ['HA_HOST']]))"), "check_x@db3", "db3", 5)
    out = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, timeout=10)
    assert json.loads(out.stdout) == ["check_x@db3", "db3"]


def test_the_argv_keeps_every_safety_option_and_quotes_file_names(tmp_path):
    settings = sshscope.SshSettings(user="monitor", port=2222, identity="etc/my key",
                                    known_hosts="etc/known%hosts", connect_timeout=2.5,
                                    options="Ciphers=aes128-ctr")
    t = sshscope.target("/usr/bin/ssh", "db3", settings, str(tmp_path / "var/ssh"),
                        lambda name: f"/h/{name}")
    argv = t.check_argv("true")
    options = [argv[i + 1] for i, w in enumerate(argv) if w == "-o"]
    for required in ("BatchMode=yes", "StrictHostKeyChecking=yes", "GlobalKnownHostsFile=none",
                     "UpdateHostKeys=no", "ConnectTimeout=3", "ControlMaster=no",
                     'UserKnownHostsFile="/h/etc/known%%hosts"', 'IdentityFile="/h/etc/my key"',
                     "IdentitiesOnly=yes", "Ciphers=aes128-ctr"):
        assert required in options
    assert "-a" in argv and "-x" in argv and "-T" in argv  # no agent, no X11, no terminal
    assert argv[argv.index("-l") + 1] == "monitor" and argv[argv.index("-p") + 1] == "2222"
    assert argv[-3:] == ("--", "db3", "true")  # the host after --: never read as an option
    master = t.master_argv()
    assert master[-2:] == ("--", "db3") and "ControlPersist=no" in master
    assert t.margin == 3 + sshscope.KILL_AFTER + 2
    # another way of connecting is another master
    other = sshscope.target("/usr/bin/ssh", "db3", settings.__class__(), str(tmp_path),
                            lambda name: f"/h/{name}")
    assert other.socket != t.socket


@pytest.mark.parametrize("options, why", [
    ("StrictHostKeyChecking=no", "set by hadaemon"), ("forwardagent=yes", "set by hadaemon"),
    ("ControlPath=/tmp/x", "set by hadaemon"), ("-oFoo=bar", "not an ssh option"),
    ("Ciphers", "not an ssh option")])
def test_options_that_would_undo_a_guarantee_are_refused(options, why):
    with pytest.raises(ValueError, match=why):
        sshscope.extra_options(options)


def test_a_control_socket_past_the_unix_limit_is_refused():
    with pytest.raises(ValueError, match="too long for a UNIX socket"):
        sshscope.target("/usr/bin/ssh", "db3", sshscope.SshSettings(), "/" + "x" * 90,
                        lambda name: name)


def test_remote_failures_read_as_unreachable_never_as_the_check():
    remote = {"host": "db3", "timeout": 2.0, "local_timeout": 9.0}
    assert sshscope.failure(255, False, b"@@@ WARNING @@@\nHost key verification failed.\n",
                            remote) == "unreachable via ssh: Host key verification failed."
    assert sshscope.failure(-15, True, b"", remote) == \
        "unreachable via ssh: no answer from db3 within 9s"
    assert sshscope.failure(124, False, b"", remote) == "timed out after 2s on db3"
    assert sshscope.failure(127, False, b"timeout: failed to run command '/x': No such file or "
                            b"directory\n", remote) == ("cannot run on db3: timeout: failed to "
                                                       "run command '/x': No such file or "
                                                       "directory")
    assert sshscope.failure(2, False, b"", remote) == ""  # the check's own answer: down


def ssh_home(home, text):
    (home.root / "etc/known_hosts").write_text("db3 ssh-ed25519 AAAA\n")
    home.script("checks", "plain", "#!/bin/sh -e\necho '{}'\n")
    (home.root / "checks/binary").write_bytes(b"\x7fELF")
    (home.root / "checks/binary").chmod(0o755)
    home.write("checks.conf", text)
    return Home(home.root)


def test_ssh_scopes_give_checks_on_their_host(home):
    h = ssh_home(home, """\
        [ssh]
        connect_timeout = 2
        [ssh:monitor@db3:2222]
        options = Ciphers=aes128-ctr
        plain --flag 'two words'
        /usr/lib/nagios/plugins/check_load -w 5
        [ssh:db4]
        plain
        [check:plain@db4]
        host = other
        timeout = 3
        """)
    checks = {c.id: c for c in config.load(h).checks}
    assert set(checks) == {"plain@db3", "check_load@db3", "plain@db4"}
    sent, path, db4 = checks["plain@db3"], checks["check_load@db3"], checks["plain@db4"]
    assert sent.host == "db3" and sent.send == str(home.root / "checks/plain")
    assert shlex.split(sent.argv[-1])[8:] == ["/bin/sh", "-e", "/dev/stdin", "--flag",
                                              "two words"]
    assert path.send == "" and shlex.split(path.argv[-1])[8:] == [
        "/usr/lib/nagios/plugins/check_load", "-w", "5"]
    assert "-p" in sent.argv and "monitor" in sent.argv and "Ciphers=aes128-ctr" in sent.argv
    assert db4.host == "other" and "HA_HOST=other" in db4.argv[-1] and "Ciphers=aes128-ctr" \
        not in db4.argv
    job = protocol.check_job(db4, config.DaemonSettings(), 1)
    # every local limit (the worker's, stale, a result's life) counts the ssh's longer time
    assert db4.timeout == job["timeout"] == 3 + db4.remote.margin and job["stdin"] == db4.send
    assert "timeout -k 1 3 " in db4.argv[-1]
    assert job["remote"] == {"host": "db4", "timeout": 3, "local_timeout": job["timeout"]}


def test_ssh_settings_are_refused_each_with_its_line(home):
    h = ssh_home(home, """\
        [ssh]
        connect_timeout = 0.5
        identity = etc/nothing
        [ssh:db3]
        port = 70000
        options = BatchMode=no
        binary
        bin/relative
        [ssh:root@db4]
        user = other
        [ssh:db5;x]
        plain
        [ssh:db6]
        known_hosts = etc/absent
        """)
    with pytest.raises(ConfigError) as e:
        config.load(h)
    conf = home.root / "etc/checks.conf"
    expected = [
        f"{conf}:2: connect_timeout: must be from 1 to 300 seconds, got 0.5",
        f"{conf}:5: port: 70000 is not a port number",
        f"{conf}:6: options: BatchMode is set by hadaemon",
        f"{conf}:4: [ssh:db3]: identity {home.root}/etc/nothing does not exist",
        f"{conf}:9: [ssh:root@db4] names the user and sets user = too",
        f"{conf}:9: [ssh:root@db4]: identity {home.root}/etc/nothing does not exist",
        f"{conf}:11: [ssh:db5;x]: 'db5;x' is not a host name",
        f"{conf}:13: [ssh:db6]: known_hosts {home.root}/etc/absent does not exist (record the "
        "host's key first",
        f"{conf}:13: [ssh:db6]: identity {home.root}/etc/nothing does not exist"]
    assert len(e.value.problems) == len(expected), e.value.problems
    for line, start in zip(e.value.problems, expected):
        assert line.startswith(start), (line, start)


def test_remote_programs_are_absolute_paths_or_scripts(home):
    h = ssh_home(home, """\
        [ssh:db3]
        binary
        bin/relative
        """)
    with pytest.raises(ConfigError) as e:
        config.load(h)
    conf = home.root / "etc/checks.conf"
    assert e.value.problems == [
        f"{conf}:2: check 'binary@db3': {home.root}/checks/binary has no #! line: only a script "
        "can be sent to a remote host (give a remote program as an absolute path)",
        f"{conf}:3: check 'relative@db3': a remote program must be an absolute path"]


def test_strict_mode_vets_the_known_hosts_file(home):
    h = ssh_home(home, "[daemon]\nstrict = yes\n[ssh:db3]\n/bin/true\n")
    (home.root / "etc/known_hosts").chmod(0o666)
    with pytest.raises(ConfigError) as e:
        config.load(h)
    assert len(e.value.problems) == 1 and "known_hosts" in e.value.problems[0], e.value.problems
    (home.root / "etc/known_hosts").chmod(0o644)
    assert [c.id for c in config.load(h).checks] == ["true@db3"]


def test_ssh_scopes_and_a_daemon_user_are_refused_together(home):
    h = ssh_home(home, "[daemon]\nuser = nobody\n[ssh:db3]\n/bin/true\n")
    with pytest.raises(ConfigError) as e:
        config.load(h)
    assert e.value.problems == [f"{home.root}/etc/checks.conf:3: [ssh:db3]: ssh scopes cannot be "
                                "combined with `user =` in [daemon] (not supported yet)"]

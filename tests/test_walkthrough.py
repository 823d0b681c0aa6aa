"""The walkthroughs, pasted as they stand, twice in a row as a reader who tries again would.

README.md: its two terminals' shell blocks (each follows a `<!-- walkthrough: ... terminal -->`
marker) run through sh in a copy of the repository's home (etc/, checks/, actions/; never the
repository's own var/), with `hadaemon` on PATH. docs/cluster.md: its one block, less the
install lines, with its /tmp paths and etcd ports moved to the test's own.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

import procs
from conftest import ROOT, wait_for
from ports import free_ports

pytestmark = pytest.mark.slow

README = ROOT / "README.md"
CLUSTER_DOC = ROOT / "docs/cluster.md"


def shell_block(text, marker):
    """The ```sh block right after `<!-- walkthrough: MARKER -->` in the README."""
    found = re.search(rf"<!-- walkthrough: {marker} -->\n```sh\n(.*?)\n```", text, re.S)
    assert found, f"README.md has no ```sh block after <!-- walkthrough: {marker} -->"
    return found.group(1) + "\n"


def test_shell_block_is_the_one_after_its_marker():
    text = textwrap.dedent("""\
        ```sh
        not this
        ```
        <!-- walkthrough: first terminal -->
        ```sh
        a
        b
        ```
        <!-- walkthrough: second terminal -->
        ```sh
        c
        ```
        """)
    assert shell_block(text, "first terminal") == "a\nb\n"
    assert shell_block(text, "second terminal") == "c\n"
    with pytest.raises(AssertionError, match="no ```sh block"):
        shell_block(text, "third terminal")


def example_home(tmp_path):
    """A copy of the shipped example and an environment whose `hadaemon` is this checkout's."""
    home = tmp_path / "home"
    for d in ("etc", "checks", "actions"):
        shutil.copytree(ROOT / d, home / d)
    return home, hadaemon_env(tmp_path)


def hadaemon_env(tmp_path):
    """os.environ with this checkout's `hadaemon` first on PATH and no HADAEMON_HOME."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "hadaemon"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m hadaemon "$@"\n')
    wrapper.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "HADAEMON_HOME"}
    env["PATH"] = f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def run_shell(script, cwd, env, timeout=180):
    """Output of `sh -c script`; a script still running after timeout is killed and fails."""
    proc = subprocess.Popen(["sh", "-c", script], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"the commands did not end in {timeout}s:\n{out}")
    return out


def check_second_terminal(out):
    """What the README's comments say each command shows, in that order."""
    lines = out.splitlines()
    table = [i for i, line in enumerate(lines) if line.startswith("HOST ")]
    assert len(table) == 1, out  # one `hadaemon status`, its header once
    assert re.match(r"db1 +master ", lines[table[0] + 1]), out
    assert re.match(r"db2 +slave ", lines[table[0] + 2]), out
    history = lines[table[0] + 3:]
    assert [re.sub(r"^#(\d+) \S+ \S+ ", r"#\1 ", line) for line in history
            if line.startswith("#")] == [
        "#1 db1: unknown -> master [done]",
        "#2 db2: unknown -> slave [done]",
        "#3 db1: master -> slave [done]",
        "#4 db2: slave -> master [done]",
    ], out
    commands = [line.split()[:2] for line in history
                if line.startswith("    ") and not line.lstrip().startswith("|")]
    assert commands == [["ok", "stopservice1"], ["ok", "unplumb"], ["ok", "plumb"],
                        ["ok", "startservice1"]], out
    assert "| service address plumbed for db2" in out, out
    assert lines[-1] == "db2", out  # cat var/example/vip


def test_readme_walkthrough_twice_in_a_row(tmp_path):
    text = README.read_text()
    first, second = shell_block(text, "first terminal"), shell_block(text, "second terminal")
    home, env = example_home(tmp_path)
    for round_ in (1, 2):
        log_path = tmp_path / f"first-terminal-{round_}.log"
        with open(log_path, "w") as log:
            daemon = subprocess.Popen(["sh", "-c", first], cwd=home, env=env, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        try:
            out = run_shell(second, home, env)
            pid = int((home / "var/hadaemon.pid").read_text())
            check_second_terminal(out)
        finally:
            # Ctrl-C: SIGINT to the first terminal's foreground process group.
            os.killpg(daemon.pid, signal.SIGINT)
            daemon.wait(30)
        wait_for(lambda: not procs.alive(pid), 30, "the daemon stopped by Ctrl-C")
        shown = log_path.read_text()
        for claim in ("db2: master seen 1/2 times", "transition db2: slave -> master",
                      "plumb %MASTER% exited 0", "INFO stopped"):
            assert claim in shown, f"round {round_}: the first terminal does not show " \
                                   f"{claim!r}:\n{shown}"
        assert not (home / "var/control.sock").exists()


def cluster_script(tmp_path):
    """docs/cluster.md's walkthrough less its install lines, with the test's paths and ports."""
    lines = re.search(r"## Walkthrough.*?```sh\n(.*?)\n```", CLUSTER_DOC.read_text(),
                      re.S).group(1).splitlines()
    assert lines[0].startswith("apt-get install") and lines[1].startswith("pip install"), lines
    script = "\n".join(lines[2:]) + "\n"
    for port, free in zip(("23790", "23800"), free_ports(2)):
        assert port in script
        script = script.replace(port, str(free))
    return script.replace("/tmp/ha", str(tmp_path / "ha"))


def check_cluster_output(out):
    """What the page's comments say each step shows."""
    first_table = out.index("HOST ")
    assert re.search(r"cluster hadaemon: node n1, leader n\d, lease", out), out
    for n in ("n1", "n2", "n3"):
        assert re.search(rf"node {n}( \(leader\))?: db1=master db2=slave", out[:first_table]), out
    # n1 alone sees db2 as master: its vote shows, the committed status stays slave
    alone = out[first_table + 1:]
    alone = alone[alone.index("cluster hadaemon"):]
    assert re.search(r"node n1( \(leader\))?: db1=slave db2=master", alone), out
    assert re.search(r"\ndb2 +slave ", alone[:alone.index("#1 ")]), out
    history = [re.sub(r"^#(\d+) \S+ \S+ ", r"#\1 ", line) for line in out.splitlines()
               if line.startswith("#")]
    assert history == ["#1 db1: unknown -> master [done]", "#2 db2: unknown -> slave [done]",
                       "#3 db1: master -> slave [done]", "#4 db2: slave -> master [done]"], out
    assert "| service address plumbed for db2\n" in out, out
    changes = re.findall(r"^leader: (n\d), then (n\d)$", out, re.M)
    assert len(changes) == 2 and all(a != b for a, b in changes), out
    assert changes[0][1] == changes[1][0], out  # the node killed is the one leading then
    killed = changes[1][0]
    last = out[out.rindex("cluster hadaemon"):]
    assert f"leader {changes[1][1]}," in last.splitlines()[0], out
    assert f"node {killed}" not in last, out  # its node key went with its lease
    assert re.search(r"\ndb1 +slave ", last) and re.search(r"\ndb2 +master ", last), out


def test_cluster_walkthrough_twice_in_a_row(tmp_path):
    if not os.access("/usr/bin/etcd", os.X_OK):
        pytest.skip("Debian's etcd (/usr/bin/etcd, package etcd-server) is not installed")
    script = cluster_script(tmp_path)
    env = hadaemon_env(tmp_path)
    try:
        for round_ in (1, 2):
            out = run_shell(script, ROOT, env, timeout=600)
            check_cluster_output(out)
            wait_for(lambda: not procs.naming(tmp_path), 30,
                     f"round {round_}: the clean-up's daemons and etcd gone")
    finally:
        for pid in procs.naming(tmp_path):
            os.kill(pid, signal.SIGKILL)

"""The README's walkthrough, pasted as it stands: its two terminals' shell blocks are read from
README.md (each follows a `<!-- walkthrough: ... terminal -->` marker) and run through sh in a
copy of the repository's home (etc/, checks/, actions/; never the repository's own var/), with
`hadaemon` on PATH. Twice in a row on the same copy, as a reader who tries it again would.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT, pid_alive, wait_for

pytestmark = pytest.mark.slow

README = ROOT / "README.md"


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
    """A copy of the shipped example and a PATH whose `hadaemon` is this checkout's."""
    home = tmp_path / "home"
    for d in ("etc", "checks", "actions"):
        shutil.copytree(ROOT / d, home / d)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "hadaemon"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m hadaemon "$@"\n')
    wrapper.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "HADAEMON_HOME"}
    env["PATH"] = f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return home, env


def run_second_terminal(script, home, env, timeout=180):
    proc = subprocess.Popen(["sh", "-c", script], cwd=home, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"the second terminal's commands did not end in {timeout}s:\n{out}")
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
            out = run_second_terminal(second, home, env)
            pid = int((home / "var/hadaemon.pid").read_text())
            check_second_terminal(out)
        finally:
            # Ctrl-C: SIGINT to the first terminal's foreground process group.
            os.killpg(daemon.pid, signal.SIGINT)
            daemon.wait(30)
        wait_for(lambda: not pid_alive(pid), 30, "the daemon stopped by Ctrl-C")
        shown = log_path.read_text()
        for claim in ("db2: master seen 1/2 times", "transition db2: slave -> master",
                      "plumb %MASTER% exited 0", "INFO stopped"):
            assert claim in shown, f"round {round_}: the first terminal does not show " \
                                   f"{claim!r}:\n{shown}"
        assert not (home / "var/control.sock").exists()

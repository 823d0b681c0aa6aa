"""Install and first run: the README's two commands, what CI runs, the wheel, the systemd unit,
`hadaemon --version` and a bare `hadaemon`."""

import os
import re
import shutil
import signal
import subprocess
import sys
import zipfile

import pytest

import hadaemon
from conftest import ROOT, Home, committed, http_body, wait_for
from ports import free_ports

PREFIX = "/opt/hadaemon"  # where the README's "Install as a service" puts the venv


def readme_commands():
    """The two commands at the top of the README (its first sh block), without comments."""
    block = re.search(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    commands = [re.sub(r"\s+#.*", "", line).strip() for line in block.splitlines()]
    assert len(commands) == 2, block
    return commands


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "hadaemon", *args], capture_output=True,
                          text=True, timeout=60, **kw)


def test_ci_runs_the_readme_test_command():
    test_command = readme_commands()[1]
    assert test_command in (ROOT / ".ci/run").read_text().splitlines()


def test_version():
    r = cli("--version")
    assert r.returncode == 0 and r.stdout == f"hadaemon {hadaemon.__version__}\n", r
    assert re.fullmatch(r"\d+\.\d+\.\d+", hadaemon.__version__)
    # one copy of the version: the package's, which the build reads
    assert re.search(r'^dynamic = \["version"\]', (ROOT / "pyproject.toml").read_text(), re.M)


def test_bare_hadaemon_prints_the_whole_help():
    r = cli()
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("Usage: hadaemon [OPTIONS] COMMAND [ARGS]...\n"), r.stderr
    lines = r.stderr.splitlines()
    listed = lines[lines.index("Commands:") + 1:]
    # every command on its own line, each description whole or cut with "...", nothing glued on
    assert {line.split()[0] for line in listed} >= {"init", "run", "status", "transition"}
    for line in listed:
        assert line.endswith((".", "...", ")")) and "--help" not in line, line
    assert r.stderr == cli("--help").stdout


def ignore_local(directory, names):
    """What a fresh clone does not have."""
    return {n for n in names if n in {".git", ".venv", "var", "build", "__pycache__",
                                      ".pytest_cache", ".hypothesis"} or n.endswith(".egg-info")}


def clean_env():
    """The environment of someone who just cloned: no PYTHONPATH pointing at a checkout."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HADAEMON_HOME",
                                                             "VIRTUAL_ENV")}


def first_command_until_db1_is_master(clone, log):
    """Paste the README's first command in a shell at the clone's root, as a user would; once
    the daemon it starts answers with db1 master, Ctrl-C. Returns its exit status."""
    home = Home.__new__(Home)
    home.root = clone
    with open(log, "a") as out:
        shell = subprocess.Popen(["bash", "-c", readme_commands()[0]], cwd=clone,
                                 env=clean_env(), stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    try:
        def db1_master():  # asked on the control socket: not a CLI per poll while pip works
            answer = home.ask({"cmd": "status"})
            assert shell.poll() is None, f"exited {shell.returncode}:\n{log.read_text()}"
            return bool(answer) and answer["hosts"].get("db1", {}).get("status") == "master"
        wait_for(db1_master, 600, "db1 master (pip install, then hadaemon run)")
        os.killpg(shell.pid, signal.SIGINT)  # what Ctrl-C sends: the terminal's whole group
        return shell.wait(60)
    finally:
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)
            shell.wait()


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A copy of the repository where the README's first command ran twice in a row: it holds
    .venv, the documented install (`pip install .`, not editable).

    Made once per test process, in a fixed place under its temporary folder: under -n a
    worker may tear a module's fixture down between the module's two tests (when the second
    had not reached it yet), and making it again is two pip installs more."""
    root = tmp_path_factory.getbasetemp() / "clone" / "hadaemon"
    made = root.parent / "made"
    if not made.exists():
        shutil.rmtree(root.parent, ignore_errors=True)  # a half-made one: start again
        shutil.copytree(ROOT, root, symlinks=True, ignore=ignore_local)
        log = root.parent / "first-command.log"
        for _ in range(2):
            assert first_command_until_db1_is_master(root, log) == 0, log.read_text()
        made.touch()
    return root


@pytest.mark.slow
@pytest.mark.xdist_group("clone")  # under -n, on one worker: the module's clone is made once
def test_the_readme_first_command_works_twice_and_installs_a_package_that_inits(clone, tmp_path):
    hadaemon_bin = clone / ".venv/bin/hadaemon"
    env = clean_env()
    r = subprocess.run([hadaemon_bin, "--version"], capture_output=True, text=True, env=env)
    assert r.stdout == f"hadaemon {hadaemon.__version__}\n", r
    where = subprocess.run([clone / ".venv/bin/python", "-c",
                            "import hadaemon; print(hadaemon.__file__)"], cwd=tmp_path, env=env,
                           capture_output=True, text=True).stdout
    assert "/.venv/lib/" in where, where  # the installed copy, not the clone's source
    new = tmp_path / "new"
    assert subprocess.run([hadaemon_bin, "init", new], env=env, cwd=tmp_path).returncode == 0
    for part in ("etc", "checks", "actions"):
        for source in (ROOT / part).iterdir():
            assert (new / part / source.name).read_bytes() == source.read_bytes(), source
    ok = subprocess.run([hadaemon_bin, "--home", new, "check-config"], env=env,
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr


@pytest.mark.slow
def test_the_wheel_holds_the_example_as_files_and_the_docs(tmp_path):
    source = tmp_path / "source"  # pip builds in the tree: build/ and egg-info go there
    shutil.copytree(ROOT, source, symlinks=True, ignore=ignore_local)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp_path,
                        source], capture_output=True, text=True, env=clean_env(), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    [wheel] = tmp_path.glob("hadaemon-*.whl")
    with zipfile.ZipFile(wheel) as z:
        entries = {i.filename: i for i in z.infolist()}
        for part in ("etc", "checks", "actions"):
            for source in (ROOT / part).iterdir():
                name = f"hadaemon/example/{part}/{source.name}"
                assert z.read(name) == source.read_bytes(), name  # a file, not a link
                executable = entries[name].external_attr >> 16 & 0o111
                assert bool(executable) == (part != "etc"), name
        data = f"hadaemon-{hadaemon.__version__}.data/data/share/doc/hadaemon"
        assert f"{data}/README.md" in entries and f"{data}/docs/cluster.md" in entries


def unit_paths(text):
    """Every absolute path the unit runs or points at."""
    return re.findall(r"^(?:Exec\w+=|Documentation=file://)(/\S+)", text, re.M)


@pytest.mark.slow
@pytest.mark.xdist_group("clone")
@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="no systemd-analyze here")
def test_the_systemd_unit_verifies_against_the_documented_install(clone, tmp_path):
    """The unit as shipped, with /opt/hadaemon made the clone's .venv (the same install the
    README's service steps make there): every path it names exists, and systemd accepts it."""
    text = (ROOT / "contrib/hadaemon.service").read_text()
    paths = unit_paths(text)
    assert len(paths) == 4 and all(p.startswith(PREFIX + "/") for p in paths), paths
    assert "\nType=notify\n" in text and "\nWatchdogSec=" in text
    moved = text.replace(PREFIX + "/", f"{clone}/.venv/")
    for path in unit_paths(moved):
        assert os.path.isfile(path), path
    unit = tmp_path / "hadaemon.service"
    unit.write_text(moved)
    r = subprocess.run(["systemd-analyze", "verify", unit], capture_output=True, text=True)
    # verify exits 0 on warnings (a bad URL, an unknown key): any line about the unit fails
    assert r.returncode == 0 and "hadaemon.service" not in r.stdout + r.stderr, r


SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.mark.slow
@pytest.mark.skipif(not os.access(SYSTEM_PYTHON, os.X_OK), reason="no system python3 here")
def test_the_pyz_runs_the_example_on_the_system_python(tmp_path):
    """contrib/build-pyz's one file, run by the system's interpreter with nothing installed
    into it and no PYTHONPATH: init, run, a failover whose commands the action runner carries
    out, and the HTTP endpoint's /metrics: both are exec'd processes, which must find the
    package (and prometheus-client) inside the file."""
    pyz = tmp_path / "hadaemon.pyz"
    r = subprocess.run([sys.executable, ROOT / "contrib/build-pyz", "-o", pyz],
                       capture_output=True, text=True, env=clean_env(), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    env = clean_env()
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import hadaemon"], env=env, cwd=tmp_path,
                           capture_output=True)
    assert probe.returncode != 0  # the system Python has no hadaemon of its own to fall back on

    def pyz_cli(*args):
        return subprocess.run([SYSTEM_PYTHON, pyz, *args], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=60)
    assert pyz_cli("--version").stdout == f"hadaemon {hadaemon.__version__}\n"
    root = tmp_path / "home"
    assert pyz_cli("init", root).returncode == 0
    [port] = free_ports(1)
    with open(root / "etc/checks.conf", "a") as conf:
        conf.write(f"\n[http]\nlisten = 127.0.0.1:{port}\n")
    home = Home.__new__(Home)
    home.root = root
    with open(tmp_path / "daemon.log", "w") as log:
        daemon = subprocess.Popen([SYSTEM_PYTHON, pyz, "--home", root, "run"], env=env,
                                  stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        wait_for(lambda: committed(home, "db1", "master")() and committed(home, "db2", "slave")(),
                 60, "db1 master, db2 slave")
        (root / "var/role/db1").write_text("down\n")
        (root / "var/role/db2").write_text("master\n")
        wait_for(lambda: any(e["host"] == "db2" and e["state"] == "done" and e["commands"]
                             for e in home.history()), 60, "db2's failover done")
        [failover] = [e for e in home.history() if e["host"] == "db2" and e["commands"]]
        assert [c["outcome"] for c in failover["commands"]] == ["ok"] * 4, failover
        assert (root / "var/example/vip").read_text() == "db2\n"
        status = pyz_cli("--home", root, "status")
        assert status.returncode == 0 and "db2   master" in status.stdout, status
        wait_for(lambda: b'hadaemon_host_status{host="db2",status="master"} 1.0' in (
            http_body(f"http://127.0.0.1:{port}/metrics") or b""), 30, "/metrics with db2 master")
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0, (tmp_path / "daemon.log").read_text()

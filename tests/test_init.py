"""`hadaemon init DIR`: a new home, the shipped example, that checks and runs as it is."""

import os
import subprocess
import sys

from conftest import ROOT, Home, committed, wait_for

EXAMPLE = sorted(str(p.relative_to(ROOT)) for d in ("etc", "checks", "actions")
                 for p in (ROOT / d).iterdir())


def init(directory, env=None, umask=None):
    def preexec():
        if umask is not None:
            os.umask(umask)
    return subprocess.run([sys.executable, "-m", "hadaemon", "init", str(directory)],
                          capture_output=True, text=True, timeout=60, env=env,
                          preexec_fn=preexec)


def as_home(root):
    home = Home.__new__(Home)  # not Home(): that adds the test scripts
    home.root = root
    return home


def test_init_writes_the_repository_example_with_safe_modes_whatever_the_umask(tmp_path):
    new = tmp_path / "a" / "new"  # its parent too: strict mode vets every directory above
    r = init(new, umask=0o002)
    assert r.returncode == 0, r.stderr
    assert f"new home in {new}" in r.stdout
    written = sorted(str(p.relative_to(new)) for p in new.rglob("*") if p.is_file())
    assert written == EXAMPLE and "etc/checks.conf" in written and "actions/plumb" in written
    for rel in written:
        assert (new / rel).read_bytes() == (ROOT / rel).read_bytes(), rel
        mode = (new / rel).stat().st_mode & 0o777
        assert mode == (0o644 if rel.startswith("etc/") else 0o755), (rel, oct(mode))
    for d in (new, new / "etc", new / "checks", new / "actions"):
        assert d.stat().st_mode & 0o777 == 0o755, d
    # commented for a user to edit
    assert "To watch your own hosts" in (new / "etc/checks.conf").read_text()
    ok = as_home(new).cli("check-config")
    assert ok.returncode == 0 and "OK: 2 check(s), 1 action section(s)" in ok.stdout, ok


def test_init_overwrites_nothing(tmp_path):
    new = tmp_path / "home"
    assert init(new).returncode == 0
    conf = new / "etc/checks.conf"
    conf.write_text(conf.read_text() + "# mine\n")
    (new / "actions/plumb").unlink()  # one file missing: the rest still exists
    again = init(new)
    assert again.returncode == 1 and again.stdout == ""
    assert len(again.stderr.splitlines()) == 1, again.stderr
    assert again.stderr.startswith(f"hadaemon: init: {new}/") and "overwrites nothing" in \
        again.stderr
    assert conf.read_text().endswith("# mine\n")
    assert not (new / "actions/plumb").exists()  # refused whole: nothing written


def test_init_into_an_existing_directory_and_the_home_it_names_not_yet_there(tmp_path):
    """HADAEMON_HOME may already name the home init is about to write."""
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README").write_text("mine\n")
    env = dict(os.environ, HADAEMON_HOME=str(tmp_path / "later"))
    assert init(empty, env=env).returncode == 0
    assert (empty / "README").read_text() == "mine\n"
    r = init(tmp_path / "later", env=env)
    assert r.returncode == 0, r.stderr
    ok = subprocess.run([sys.executable, "-m", "hadaemon", "check-config"], env=env,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr


def test_a_new_home_runs_the_example(tmp_path, daemons):
    new = tmp_path / "home"
    assert init(new).returncode == 0
    home = as_home(new)
    daemons(home)
    wait_for(committed(home, "db1", "master"), 30, "db1 master")
    wait_for(committed(home, "db2", "slave"), 30, "db2 slave")
    (new / "var/role/db1").write_text("slave\n")
    wait_for(committed(home, "db1", "slave"), 30, "db1 slave")
    (new / "var/role/db2").write_text("master\n")
    vip = new / "var/example/vip"
    wait_for(lambda: vip.exists() and vip.read_text().split() == ["db2"], 30, "plumb db2")

"""bench/cluster_scale.py --commit OLD: each side's daemons import that side's package.

Started from this tree (as the bench is run), `python -m hadaemon` put the working directory
before PYTHONPATH and the OLD side measured this tree's code under OLD's name. OLD is HEAD
here: the same code in another folder, which is all the test needs to tell the sides apart.
No figure is asserted (the machine is shared): only where each side imported from, as the
bench reads it of every supervisor, and that both rows were measured.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from etcdkit import ETCD

ROOT = Path(__file__).resolve().parent.parent


def test_each_side_of_cluster_scale_runs_its_own_package():
    if not ETCD:
        pytest.skip("etcd binary missing: apt-get install etcd-server etcd-client")
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"],
                      capture_output=True).returncode:
        pytest.skip("not a git checkout: --commit needs a worktree")
    out = subprocess.run([sys.executable, "bench/cluster_scale.py", "--hosts", "10",
                          "--seconds", "1", "--within", "120", "--commit", "HEAD"], cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    imported = re.findall(r"^n1, n2, n3: hadaemon imported from (.+)$", out.stderr, re.M)
    assert len(imported) == 2, out.stderr
    old, new = (Path(p) for p in imported)
    assert new == ROOT
    assert old != ROOT and old.name == "tree", imported  # versus.checkout's worktree
    assert not old.exists(), "the worktree of --commit is removed at the end"
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ")][1:]
    assert [r.split("|")[1].strip() for r in rows] == ["HEAD", "this tree"], out.stdout
    for row in rows:
        assert re.match(r"^\d", row.split("|")[3].strip()), row  # every host committed

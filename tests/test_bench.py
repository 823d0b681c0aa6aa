"""bench/all.py runs every benchmark of issue 14 and prints its summary table whole (--smoke: the
shortest windows that fill every cell, as the table's shape is what is tested).

No figure is asserted (the machine is shared): only that every row is there and was measured,
or says why this machine cannot measure it.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

ROWS = [
    ("daemon CPU per check, 10 checks @ 1 s", "rest"),
    ("PSS of all daemon processes", "rest"),
    ("throughput, 1 worker / 1 bare spawn loop", None),
    ("throughput, 2 workers / 2 bare spawn loops", None),
    ("throughput, 4 workers / 4 bare spawn loops", None),
    ("reaction p99 (result read -> command started)", None),
    ("scheduling p99, 100 checks @ 1 s", "schedule"),
    ("scheduling p99, 1000 checks @ 5 s", "schedule"),
    ("per-check CPU, 1000 hosts / 10 hosts", None),
    ("commit, 1000 hosts", None),
    ("loop hold: longest turn during status, 1000 hosts", None),
    ("loop hold: longest turn during history, 1000 jobs", None),
]
# A figure with its unit, or a ratio or difference: 0.9 ms, 1009/s, 2.11x, +7.51 ms, 0.56.
NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?(e[+-]?\d+)?( ?(ms|us|MiB|/s|x))?$")


def cannot_run(needs):
    """Whether this machine lacks what a benchmark needs (root, ip and keepalived; cc)."""
    if needs == "rest" and (os.geteuid() != 0 or not shutil.which("ip")
                            or not shutil.which("keepalived")):
        return True
    return needs == "schedule" and not shutil.which("cc")


def test_all_prints_every_row_measured():
    out = subprocess.run([sys.executable, "bench/all.py", "--smoke"], cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert re.search(r"^commit \w+.*cores.*load average [\d.]+ [\d.]+ [\d.]+$", out.stdout,
                     re.M), out.stdout
    assert "$ python bench/all.py --smoke" in lines
    table = [line for line in lines if line.startswith("| ")]
    assert [c.strip() for c in table[0].strip("|").split("|")] == [
        "figure", "baseline", "hadaemon", "ratio", "goal", "met?"]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table[1:]]
    assert len(rows) == len(ROWS), out.stdout
    for (label, needs), row in zip(ROWS, rows):
        assert row[0].startswith(label), row
        if cannot_run(needs):
            assert row[1].startswith("cannot run here: "), row
        else:
            assert all(NUMBER.match(c) for c in row[1:4]), (row, out.stderr)
            assert row[5] in ("yes", "no"), row
    for script in ("throughput", "latency", "growth"):
        assert any(line.startswith(f"$ python bench/{script}.py --") for line in lines)
    if not cannot_run("rest"):  # the floor the CPU and PSS goals are read against
        assert re.search(r"^the least a Python daemon pays \(bench/floor.py, in rest.py's run\): "
                         r"[\d.e+-]+ ms per check, [\d.]+x keepalived's; [\d.e+-]+ MiB PSS, "
                         r"[\d.]+x$", out.stdout, re.M), out.stdout

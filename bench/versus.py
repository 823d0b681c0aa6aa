"""Run one benchmark against two commits in the same run, taking turns, so both sides meet the
same machine: `python bench/versus.py OLD -- throughput.py --seconds 3`.

OLD is checked out into a throw-away git worktree; NEW is this tree. Each round runs the
benchmark once on each side (the order alternates from round to round: a side that always ran
second would always meet the first one's leftovers) and prints both tables as the benchmark
prints them, labelled; the ratios are read from there. Nothing is averaged here: the benchmarks
already report medians of their own rounds.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def checkout(commit):
    """A worktree of commit in a temporary folder; its path."""
    where = Path(tempfile.mkdtemp(prefix="hadaemon-versus-")) / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(where),
                    commit], check=True)
    return where


def remove(where):
    """The worktree checkout() made, and its temporary folder."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)])
    shutil.rmtree(where.parent, ignore_errors=True)


def run(tree, label, bench):
    """The benchmark from tree's bench/ folder, importing tree's package."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run([sys.executable, str(tree / "bench" / bench[0]), *bench[1:]],
                         cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    print(f"=== {label} ({tree}){' FAILED' if out.returncode else ''}")
    print(out.stdout.rstrip(), flush=True)


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        usage="versus.py OLD [--rounds N] -- BENCH.py [its arguments]")
    ap.add_argument("old", help="the commit to compare with (e.g. a tag, a hash, HEAD~3)")
    ap.add_argument("--rounds", type=int, default=2)
    argv = sys.argv[1:]
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        ap.error("name a benchmark after --, e.g. -- throughput.py --seconds 3")
    cut = argv.index("--")
    a, bench = ap.parse_args(argv[:cut]), argv[cut + 1:]
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    old = checkout(a.old)
    try:
        sides = [(old, f"old {a.old}"), (ROOT, f"new {head} (this tree)")]
        print(f"python bench/versus.py {a.old} --rounds {a.rounds} -- {' '.join(bench)}")
        for n in range(a.rounds):
            for tree, label in (sides if n % 2 == 0 else sides[::-1]):
                run(tree, f"round {n + 1}: {label}", bench)
    finally:
        remove(old)


if __name__ == "__main__":
    main()

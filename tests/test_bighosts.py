"""A thousand hosts of 253 characters: actions still run (host lists too long for the
environment are handed over as files; a command Linux would refuse is refused before its
sequence starts), and the state file stops growing while they flap (keep_jobs)."""

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from conftest import host_name, status_of, wait_for

DAEMON_MODES = ("run", "start")

HOSTS = 1000
NAMES = [host_name(i) for i in range(HOSTS)]


# Half of the hosts each: one check may print at most 1000 results and 256 KiB.
FROM_FILE = """\
#!/bin/sh
exec cat "$HA_HOME/var/result-$1"
"""

# What a command got of the hosts that are up: arguments, the file, the inline variable.
COUNT = """\
#!/bin/sh
first="$1"
n=$#
if [ -n "$HA_UP_FILE" ]; then
  lines=$(wc -l < "$HA_UP_FILE"); head=$(head -n 1 "$HA_UP_FILE")
  again=$(wc -l < "$HA_UP_FILE")
else
  lines=none; head=none; again=none
fi
echo "count args=$n first=$first lines=$lines again=$again head=$head inline=${HA_UP-unset}" \
  "down=$HA_DOWN host=$HA_HOST" >> "$HA_HOME/var/actions.log"
"""

CHECKS = """\
[daemon]
interval = 0.3
timeout = 20
workers = 2
output_limit = 262144
{extra}
[local]
half_a
half_b

[check:half_a]
script = from_file
args = a

[check:half_b]
script = from_file
args = b
"""


def set_statuses(home, statuses):
    """statuses: {host index: status}; the rest are up."""
    for half, part in (("a", range(0, HOSTS // 2)), ("b", range(HOSTS // 2, HOSTS))):
        results = [{"host": NAMES[i], "status": statuses.get(i, "up")} for i in part]
        path = home.root / f"var/result-{half}"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(results))
        tmp.rename(path)


def all_up(home):
    hosts = home.status()["hosts"]
    return len(hosts) == HOSTS and all(h["status"] == "up" for h in hosts.values())


def setup_home(home, actions_conf, extra=""):
    home.script("checks", "from_file", FROM_FILE)
    home.script("actions", "count", COUNT)
    home.write("checks.conf", CHECKS.format(extra=extra))
    home.write("actions.conf", actions_conf)
    set_statuses(home, {})


def test_thousand_long_host_names_fail_over(home, daemons):
    setup_home(home, """\
        [up_to_down]
        /bin/true
        count %UP%

        [down_to_up]
        /bin/true
        -count --hosts=%UP%
        """)
    daemons(home)
    wait_for(lambda: all_up(home), 120, "1000 hosts up")
    assert len(" ".join(NAMES)) > 128 * 1024  # HA_UP alone would pass MAX_ARG_STRLEN

    set_statuses(home, {0: "down"})
    job = wait_for(lambda: [h for h in home.history() if h["to"] == "down"
                            and h["state"] not in ("queued", "running")], 60, "failover")[0]
    assert job["state"] == "done", job
    assert [c["outcome"] for c in job["commands"]] == ["ok", "ok"]
    up = sorted(NAMES[1:])
    [line] = home.actions_log()
    assert line == (f"count args=999 first={up[0]} lines=999 again=999 head={up[0]} "
                    f"inline=unset down={NAMES[0]} host={NAMES[0]}")
    assert job["commands"][1]["argv"] == ["count"] + up

    # --hosts=%UP% would be one argument of 254 000 bytes: the sequence is refused whole,
    # before its first command, and history says why.
    set_statuses(home, {})
    back = wait_for(lambda: [h for h in home.history() if h["from"] == "down"
                             and h["state"] not in ("queued", "running")], 60, "refusal")[0]
    assert back["state"] == "failed"
    assert [c["outcome"] for c in back["commands"]] == ["not run", "not run"]
    assert "--hosts=%UP%" in back["note"] and "%UP%" in back["note"]
    assert f"over Linux's limit of {128 * 1024 - 1}" in back["note"]
    assert "actions.conf:7" in back["note"], back["note"]
    assert status_of(home, NAMES[0]) == "up"
    assert len(home.actions_log()) == 1
    assert "sequence refused" in home.log()


def db_size(home):
    return sum(os.path.getsize(home.root / f"var/state.db{s}") for s in ("", "-wal")
               if (home.root / f"var/state.db{s}").exists())


def test_state_file_stops_growing_while_a_thousand_hosts_flap(home, daemons):
    keep, flapping = 10, 10
    setup_home(home, "[up_to_down]\n/bin/true\n\n[down_to_up]\n/bin/true\n",
               extra=f"keep_jobs = {keep}\n")
    daemons(home)
    wait_for(lambda: all_up(home), 120, "1000 hosts up")

    def flap(rounds):
        for r in range(rounds):
            flap.round += 1
            down = flap.round % 2 == 1
            set_statuses(home, {i: "down" for i in range(flapping)} if down else {})
            last = HOSTS + flap.round * flapping
            # FIFO: when the round's last job has ended, all of them have
            wait_for(lambda: (lambda h: h["id"] == last and h["state"] == "done")(
                home.history()[-1]), 60, f"round {flap.round}")
    flap.round = 0

    flap(5)  # N = 50 jobs with commands
    wait_for(lambda: len(home.history()) == keep, 30, "pruned")
    first = db_size(home)
    flap(10)  # 3N
    history = wait_for(lambda: (lambda h: h if len(h) == keep else None)(home.history()),
                       30, "pruned")
    last = HOSTS + flap.round * flapping
    assert [h["id"] for h in history] == list(range(last - keep + 1, last + 1))
    assert all(h["state"] == "done" and h["commands"][0]["outcome"] == "ok" for h in history)
    grown = db_size(home) - first
    # Each job's environment alone is ~254 KB: 100 more jobs kept would add ~25 MB. What may
    # vary is how many jobs were open at once (each holds its environment until it ends).
    assert grown < first // 4 + 1024 * 1024, (first, grown)
    with sqlite3.connect(f"file:{home.root}/var/state.db?mode=ro", uri=True) as conn:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == keep
        assert conn.execute("SELECT count(*) FROM jobs WHERE env != '{}'").fetchone()[0] == 0


# -- spilled lists read by a real command ------------------------------------------------------

def test_spilled_lists_reach_a_command_as_readable_files(tmp_path):
    """The file is an inherited descriptor: readable twice, by path and as the descriptor,
    and sealed against writes."""
    from hadaemon import listfiles
    text = "".join(f"{n}\n" for n in NAMES)
    script = ("import os, sys\n"
              "p = os.environ['HA_UP_FILE']\n"
              "a = open(p).read(); b = open(p).read()\n"
              "fd = int(p.rsplit('/', 1)[1]); c = os.read(fd, 1 << 20).decode()\n"
              "try:\n    open(p, 'w').write('x'); w = 'written'\n"
              "except OSError:\n    w = 'refused'\n"
              "print(a == b == c, len(a.splitlines()), w)\n")
    with listfiles.opened({"HA_UP": text}) as (env, fds):
        r = subprocess.run([sys.executable, "-c", script], env=dict(os.environ, **env),
                           pass_fds=fds, capture_output=True, text=True)
    assert r.stdout.split() == ["True", str(HOSTS), "refused"], r.stderr
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)

"""Fault injection with real processes and real signals: hung, huge and hostile checks, killed
workers, a killed supervisor in the middle of a sequence, corrupt and full state files, SIGTERM.
"""

import json
import os
import re
import signal
import sqlite3
import subprocess
import time

import pytest

import procs
from conftest import FAST, new_results, status_of, wait_for

# Every test here runs against `hadaemon run` and against a detached `hadaemon start`.
DAEMON_MODES = ("run", "start")

# Each run prints the first line of var/queue and drops it; the last line repeats for ever.
# This makes a sequence of results deterministic whatever the timing.
QUEUE = """\
#!/bin/sh
q="$HA_HOME/var/queue"
line=$(head -n 1 "$q")
[ "$(wc -l < "$q")" -gt 1 ] && sed -i 1d "$q"
echo "$line"
"""

SLOW_ACTION = """\
#!/bin/sh
echo "slow start $* resumed=$HA_RESUMED" >> "$HA_HOME/var/actions.log"
sleep "$1"
echo "slow end $* resumed=$HA_RESUMED" >> "$HA_HOME/var/actions.log"
"""


def queued(home):
    """The lines of var/queue not read yet (the last one repeats for ever)."""
    return len((home.root / "var/queue").read_text().splitlines())


def queue(home, *lines):
    path = home.root / "var/queue"
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(f'{{"host": "db1", "status": "{s}"}}\n' for s in lines))
    tmp.rename(path)


# -- checks and workers -----------------------------------------------------------------------

def test_hung_check_is_killed_with_everything_it_started(home, daemons):
    home.write("checks.conf", FAST + "[local]\nhangs\n[check:hangs]\nhost = h1\ntimeout = 0.5\n")
    home.script("checks", "hangs", """\
        #!/bin/sh
        sleep 1000 &
        echo $! >> "$HA_HOME/var/children"
        sleep 1000
        """)
    d = daemons(home)
    wait_for(lambda: status_of(home, "h1") == "unknown", 20, "unknown after timeout")
    assert "timed out after 0.5s" in home.status()["hosts"]["h1"]["details"]["error"]
    wait_for(lambda: len((home.root / "var/children").read_text().split()) >= 3, 20,
             "the check ran again: its worker came back")
    first = [int(p) for p in (home.root / "var/children").read_text().split()][:2]
    wait_for(lambda: not any(procs.alive(p) for p in first), 10, "background children killed")
    assert d.alive()


def test_a_hung_check_left_by_a_killed_daemon_is_killed_at_the_next_start(home, daemons):
    home.write("checks.conf", FAST + "[local]\nhangs_once\n[check:hangs_once]\nhost = h1\n"
               "timeout = 1000\n")
    # The first run hangs, with a child; later runs answer at once.
    home.script("checks", "hangs_once", """\
        #!/bin/sh
        if mkdir "$HA_HOME/var/hung" 2>/dev/null; then
          sleep 1000 &
          echo "$$ $!" > "$HA_HOME/var/hung/pids"
          wait
        fi
        echo '{"host": "h1", "status": "up"}'
        """)
    d = daemons(home)
    pids_file = home.root / "var/hung/pids"
    wait_for(lambda: pids_file.exists() and pids_file.read_text().strip(), 20, "the check hangs")
    hung = [int(p) for p in pids_file.read_text().split()]
    d.kill_all()  # the supervisor's group; the check has a session of its own and lives on
    assert all(procs.alive(p) for p in hung)
    daemons(home)
    wait_for(lambda: not any(procs.alive(p) for p in hung), 20, "the leftovers killed")
    assert "that checks of a killed daemon left running" in home.log()
    wait_for(lambda: status_of(home, "h1") == "up", 20, "checks go on")


def test_check_that_leaves_a_daemon_does_not_hold_the_worker(home, daemons):
    home.write("checks.conf", FAST + "[local]\nforks\n[check:forks]\nhost = h1\ntimeout = 3\n")
    # The grandchild escapes the check's session (setsid) and keeps stdout open.
    home.script("checks", "forks", """\
        #!/bin/sh
        setsid sleep 30 &
        echo $! >> "$HA_HOME/var/children"
        echo '{"host": "h1", "status": "up"}'
        """)
    daemons(home)
    try:
        wait_for(lambda: status_of(home, "h1") == "up", 20, "h1 up")
        wait_for(lambda: len((home.root / "var/children").read_text().split()) >= 5, 20,
                 "five runs, each well inside the 3 s timeout")
        assert "error" not in home.status()["hosts"]["h1"]["details"]
        assert "timed out" not in home.log()
    finally:
        for p in (home.root / "var/children").read_text().split():
            try:
                os.kill(int(p), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_output_is_bounded_and_memory_does_not_grow(home, daemons):
    home.write("checks.conf", FAST + "[local]\nhuge\n[check:huge]\nhost = h1\n")
    home.script("checks", "huge", """\
        #!/bin/sh
        echo run >> "$HA_HOME/var/runs"
        head -c 20000000 /dev/zero | tr '\\0' a
        """)
    d = daemons(home)
    wait_for(lambda: status_of(home, "h1") == "unknown", 20, "rejected")
    assert "output exceeds 65536 bytes" in home.status()["hosts"]["h1"]["details"]["error"]
    runs = lambda: len((home.root / "var/runs").read_text().split())  # noqa: E731
    wait_for(lambda: runs() >= 10, 30, "10 runs")
    early = procs.rss_kib(procs.tree(d.pid))
    start = runs()
    wait_for(lambda: runs() >= start + 30, 60, "30 more runs")
    late = procs.rss_kib(procs.tree(d.pid))
    # Each run offers 20 MB; anything kept per run would show as tens of MB here.
    assert late - early < 8 * 1024, (early, late)


HOSTILE = [
    ("{not json", "invalid JSON"),
    ('{"host": 5, "status": "up"}', "missing or non-string 'host'"),
    ('{"host": "db1"}', "missing or non-string 'status'"),
    ('{"host": "db1; reboot", "status": "up"}', "unsafe host name 'db1; reboot'"),
    ('{"host": "$(id)", "status": "up"}', "unsafe host name '$(id)'"),
    ('{"host": "db1", "status": "up; rm -rf /"}', "unsafe status"),
    ('{"host": "db1", "status": "up", "x": "\\u0000"}', None),  # details may hold anything JSON
    ("[" + ",".join(['{"host": "h", "status": "up"}'] * 1500) + "]", "1500 results"),
    ('[1, 2]', "result 0: expected a JSON object, got int"),
    ("[]", "empty JSON array"),
    ("plain text and exit 0", "no JSON on stdout and no host= setting"),
    # too deep for the supervisor's pickling (600) and for the JSON parser itself (5000)
    ('{"host": "db1", "status": "up", "d": ' + "[" * 600 + "]" * 600 + "}",
     "JSON nested deeper than 32 levels"),
    ('{"host": "db1", "status": "up", "d": ' + "[" * 5000 + "]" * 5000 + "}",
     "JSON nested deeper than 32 levels"),
    ('{"host": "db1", "status": "up", "x": NaN}', "invalid JSON: NaN is not a JSON value"),
]


def test_hostile_results_are_rejected_and_never_reach_the_table(home, daemons):
    home.write("checks.conf", FAST + "[local]\nhostile\n")
    home.write("actions.conf", "[*_to_*]\nrecord %HOST% %TO%\n")
    home.script("checks", "hostile", "#!/bin/sh\ncat \"$HA_HOME/var/out\"\n")
    out = home.root / "var/out"
    out.write_text(HOSTILE[0][0])
    d = daemons(home)
    for text, reason in HOSTILE:
        if reason is None:
            continue
        out.write_text(text)
        wait_for(lambda: f"check hostile: {reason}" in home.log(), 20, reason)
        assert home.status()["hosts"] == {}
    out.write_bytes(b'{"host": "db1", "status": "\xff"}')
    wait_for(lambda: "check hostile: output is not UTF-8" in home.log(), 20, "non-UTF-8")
    assert home.actions_log() == []
    assert d.alive()
    # one line per rejection, naming the check
    assert all(line.count("check hostile:") <= 1 for line in home.log().splitlines())
    out.write_text('{"host": "db1", "status": "UP", "x": "\\u0000"}')
    wait_for(lambda: status_of(home, "db1") == "up", 20, "a valid result still counts")
    assert home.status()["hosts"]["db1"]["details"] == {"x": "\x00"}


def test_killed_worker_is_replaced_and_its_check_reported(home, daemons):
    home.write("checks.conf", FAST + """
        [local]
        slow
        [check:slow]
        host = h1
        timeout = 20
        """)
    home.script("checks", "slow", """\
        #!/bin/sh
        echo $$ > "$HA_HOME/var/check.pid"
        sleep 2
        echo '{"host": "h1", "status": "up"}'
        """)
    d = daemons(home)
    wait_for(lambda: status_of(home, "h1") == "up", 20, "h1 up")
    pidfile = home.root / "var/check.pid"
    pidfile.unlink()
    wait_for(pidfile.exists, 20, "the check runs again")
    check_pid = int(pidfile.read_text())
    worker = procs.parent(check_pid)
    assert worker in procs.children(d.pid)
    os.kill(worker, signal.SIGKILL)
    wait_for(lambda: status_of(home, "h1") == "unknown", 20, "in-flight check reported unknown")
    assert "worker killed by SIGKILL" in home.status()["hosts"]["h1"]["details"]["error"]
    wait_for(lambda: len(procs.children(d.pid)) == 3, 10, "two workers and the runner again")
    assert worker not in procs.children(d.pid)
    assert not [p for p in procs.children(d.pid) if procs.state(p) == "Z"]
    wait_for(lambda: status_of(home, "h1") == "up", 20, "checks go on")


def test_workers_are_recycled_without_zombies(home, daemons):
    home.write("checks.conf", FAST + "max_jobs = 3\n[local]\nstatus_from_files db1\n")
    home.set_status("db1", "up")
    d = daemons(home)
    seen = set()
    # 2 workers x 3 jobs at 10/s: many generations in 20 s
    wait_for(lambda: seen.update(procs.children(d.pid)) or len(seen) >= 8, 20,
             "8 worker generations")
    wait_for(lambda: set(procs.children(d.pid)) - seen, 20, "one more generation")
    kids = procs.children(d.pid)
    zombies = [p for p in kids if procs.state(p) == "Z"]
    assert len(zombies) <= 1, zombies  # one may be dying right now, never piling up
    assert len([p for p in kids if procs.state(p) != "Z"]) == 3


def test_confirmations_and_hold_down_suppress_flapping(home, daemons):
    home.write("checks.conf", FAST + """
        confirm = 3
        hold_down = 2
        [local]
        queue
        [check:queue]
        host = db1
        """)
    home.script("checks", "queue", QUEUE)
    home.write("actions.conf", "[*_to_*]\nrecord %FROM% %TO%\n")
    # 3 x master commits; the short flaps never reach 3; the long run of downs commits only once
    # the 2 s hold-down after the first transition is over; the masters after it are held again.
    queue(home, *["master"] * 3 + ["down", "down", "master", "down", "master", "master"]
          + ["down"] * 30 + ["master"] * 60)
    daemons(home)
    wait_for(lambda: len(home.actions_log()) >= 3, 30, "three transitions")
    left = queued(home)
    wait_for(lambda: queued(home) <= max(left - 10, 1), 30,
             "ten more results, none of them fires")
    names = [line.split(" | ")[0] for line in home.actions_log()]
    assert names == ["record unknown master", "record master down", "record down master"]
    log = home.log()
    assert "db1: down seen 2/3 times" in log
    assert "down seen 2 time(s), then master again: not committed" in log
    assert "held down for another" in log
    # Hold-down runs on the monotonic clock, history records wall time: allow their drift.
    times = [h["time"] for h in home.history()]
    assert times[1] - times[0] >= 1.99 and times[2] - times[1] >= 1.99


# -- the supervisor and the state table --------------------------------------------------------

SEQ = """
    [slave_to_master]
    record one
    slow 2 two
    record three
    """


def _start_sequence(home, daemons, grace="10"):
    home.write("checks.conf", FAST + f"grace = {grace}\n[local]\nstatus_from_files db1\n")
    home.write("actions.conf", SEQ)
    home.script("actions", "slow", SLOW_ACTION)
    home.set_status("db1", "slave")
    d = daemons(home)
    wait_for(lambda: status_of(home, "db1") == "slave", 20, "slave")
    home.set_status("db1", "master")
    wait_for(lambda: any(line.startswith("slow start") for line in home.actions_log()), 20,
             "the slow command runs")
    return d


def test_supervisor_killed_mid_sequence_resumes_without_repeating(home, daemons):
    d = _start_sequence(home, daemons)
    d.kill_supervisor()  # the supervisor alone: its runner finishes the command
    daemons(home)
    wait_for(lambda: home.history()[-1]["state"] == "done", 30, "the sequence finished")
    lines = [line.split(" | ")[0] for line in home.actions_log()]
    assert lines == ["record one", "slow start 2 two resumed=0", "slow end 2 two resumed=0",
                     "record three"]
    assert "resumed=1" in home.actions_log()[-1]
    job = home.history()[-1]
    assert job["resumed"] is True
    assert [c["outcome"] for c in job["commands"]] == ["ok", "ok", "ok"]
    assert [c["resumed"] for c in job["commands"]] == [False, False, True]


def test_whole_daemon_killed_mid_command_reruns_only_that_command(home, daemons):
    d = _start_sequence(home, daemons)
    d.kill_all()  # supervisor, runner and workers; the command itself lives in its own session
    daemons(home)
    wait_for(lambda: home.history()[-1]["state"] == "done", 30, "the sequence finished")
    lines = [line.split(" | ")[0] for line in home.actions_log()]
    # The interrupted command ran to its end on its own; the new runner waited for it instead of
    # overlapping it, then ran it again (it cannot know its exit code) with HA_RESUMED=1.
    assert lines == ["record one", "slow start 2 two resumed=0", "slow end 2 two resumed=0",
                     "slow start 2 two resumed=1", "slow end 2 two resumed=1", "record three"]
    assert "previous runner still runs: waiting for it" in home.log()


def test_interrupted_sequence_is_superseded_when_the_host_moved_on(home, daemons):
    d = _start_sequence(home, daemons)
    d.kill_supervisor()
    home.set_status("db1", "down")
    home.write("actions.conf", SEQ + "[master_to_down]\nrecord gone-down\n")
    daemons(home)
    wait_for(lambda: any("gone-down" in line for line in home.actions_log()), 30, "next job")
    # The runner closes the job after its last command has written its line.
    wait_for(lambda: home.history()[-1]["state"] == "done", 30, "the next job closed")
    first, second = [h for h in home.history() if h["to"] in ("master", "down")][-2:]
    assert first["state"] == "superseded" and "db1 is down now" in first["note"]
    assert [c["outcome"] for c in first["commands"]] == ["ok", "ok", "not run"]
    assert second["state"] == "done"
    assert not any("three" in line for line in home.actions_log())


def test_a_command_left_running_by_a_killed_daemon_delays_even_the_next_jobs_commands(
        home, daemons):
    """Its job is superseded (the host moved on), but its command still runs: the next job's
    commands wait for it, so actions never overlap."""
    import fcntl
    d = _start_sequence(home, daemons)
    d.kill_all()  # the slow command lives on in its own session, holding command.lock
    home.set_status("db1", "down")
    home.write("actions.conf", SEQ + "[master_to_down]\nrecord gone-down\n")
    with open(home.root / "var/runner.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the runner starts late: down is committed first
        daemons(home)
        wait_for(lambda: status_of(home, "db1") == "down", 20, "down committed")
    wait_for(lambda: any("gone-down" in line for line in home.actions_log()), 30, "next job")
    wait_for(lambda: home.history()[-1]["state"] == "done", 30, "the next job closed")
    lines = [line.split(" | ")[0] for line in home.actions_log()]
    assert lines == ["record one", "slow start 2 two resumed=0", "slow end 2 two resumed=0",
                     "record gone-down"], lines
    assert [h["state"] for h in home.history() if h["to"] in ("master", "down")][-2:] == [
        "superseded", "done"]


def test_sigterm_gives_a_running_command_its_grace_then_resumes_it(home, daemons):
    d = _start_sequence(home, daemons, grace="0.5")
    assert d.stop() == 0
    assert not (home.root / "var/hadaemon.pid").exists()
    assert not (home.root / "var/control.sock").exists()
    assert "interrupted by shutdown" in home.log()
    assert not any(line.startswith("slow end") for line in home.actions_log())
    step = home.history()[-1]["commands"][1]  # read from the state file: no daemon runs
    assert (step["outcome"], step["error"]) == (
        "interrupted", "interrupted by shutdown; resumed at the next start")
    daemons(home)
    wait_for(lambda: home.history()[-1]["state"] == "done", 30, "resumed after restart")
    assert home.actions_log()[-1].startswith("record three")
    assert "slow end 2 two resumed=1" in [line.split(" | ")[0] for line in home.actions_log()]


def test_sigterm_lets_a_short_command_finish(home, daemons):
    d = _start_sequence(home, daemons, grace="10")
    assert d.stop() == 0
    assert "slow end 2 two resumed=0" in [line.split(" | ")[0] for line in home.actions_log()]
    assert not any("three" in line for line in home.actions_log())  # no new command started


def test_corrupt_table_is_moved_aside(home, daemons):
    home.write("checks.conf", FAST + "[local]\nstatus_from_files db1\n")
    home.set_status("db1", "up")
    (home.root / "var/state.db").write_bytes(b"this is not a database" * 100)
    daemons(home)
    wait_for(lambda: status_of(home, "db1") == "up", 20, "fresh table works")
    aside = list((home.root / "var").glob("state.db.corrupt-*"))
    assert len(aside) == 1
    assert "state file unreadable" in home.log() and f"moved aside to {aside[0]}" in home.log()
    assert "Traceback" not in home.log()


def test_damaged_rows_and_records_are_shown_as_such_and_the_rest_goes_on(home, daemons):
    home.write("checks.conf", FAST + "[local]\nstatus_from_files db1\n")
    home.write("actions.conf", "[*_to_*]\nrecord %HOST%\nnoisy\n")
    home.script("actions", "noisy", "#!/bin/sh\nprintf 'red \\033[31mRED\\007\\n'\n")
    home.set_status("db1", "up")
    d = daemons(home)
    wait_for(lambda: home.history() and home.history()[0]["state"] == "done", 20, "first job")
    # a command's output reaches the terminal with its control characters escaped
    assert "| red \\x1b[31mRED\\x07" in home.cli("history").stdout
    d.stop()
    db = sqlite3.connect(home.root / "var/state.db")
    with db:  # a key that is not UTF-8, a pickle that is not one, a job plan that is not JSON
        db.execute("INSERT INTO hosts VALUES (x'ff00', x'80')")
        db.execute("INSERT INTO hosts VALUES (?, x'8004')", (b"db9",))
        db.execute("UPDATE jobs SET plan = 'not json' WHERE id = 1")
    db.close()
    history = home.history()
    assert history[0]["state"] == "unreadable" and "record unreadable" in history[0]["note"]
    assert "#1 " in home.cli("history").stdout
    assert "Traceback" not in home.cli("status").stderr
    daemons(home)
    for key in ("b'\\xff\\x00'", "b'db9'"):
        assert f"state table entry unreadable, dropped: {key}" in home.log(), home.log()
    home.set_status("db1", "down")
    wait_for(lambda: len(home.actions_log()) == 2, 20, "transitions go on")


def test_a_var_that_is_no_folder_and_a_state_file_that_is_no_file_are_one_line(home):
    home.write("checks.conf", FAST + "[local]\nstatus_from_files db1\n")
    (home.root / "var/status").rmdir()
    (home.root / "var").rmdir()
    (home.root / "var").write_text("x\n")
    for args in (("status",), ("history",)):
        r = home.cli(*args, timeout=20)
        assert "Traceback" not in r.stderr and len(r.stderr.splitlines()) <= 1, r.stderr
    (home.root / "var").unlink()
    (home.root / "var").mkdir()
    os.mkfifo(home.root / "var/state.db")
    r = home.cli("status", timeout=20)  # a FIFO would block a reader for ever
    assert r.returncode == 1 and "not a file" in r.stderr, r


def test_a_state_file_a_starting_daemon_has_only_just_created_reads_as_empty(home):
    """Between the daemon creating var/state.db and its control socket answering, `status`
    and `history` read the file themselves: empty (0 bytes) or without tables yet, it is
    nothing recorded, not an error (CI once polled `status --json` into that window)."""
    home.write("checks.conf", FAST + "[local]\nstatus_from_files db1\n")
    db = home.root / "var/state.db"
    for make in (lambda: db.write_bytes(b""),
                 lambda: sqlite3.connect(db).execute("PRAGMA journal_mode=WAL").close()):
        db.unlink(missing_ok=True)
        make()
        r = home.cli("status", "--json")
        assert r.returncode == 3 and json.loads(r.stdout)["hosts"] == {}, r
        r = home.cli("history", "--json")
        assert r.returncode == 0 and json.loads(r.stdout) == [], r


def test_corrupt_table_refused_when_configured(home):
    home.write("checks.conf", FAST + "corrupt_table = refuse\n[local]\nstatus_from_files db1\n")
    (home.root / "var/state.db").write_bytes(b"garbage" * 1000)
    r = home.cli("run", timeout=30)
    assert r.returncode == 1
    assert "refusing to start (corrupt_table = refuse)" in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    for command in ("status", "history"):  # read by the CLI itself: no daemon runs
        r = home.cli(command)
        assert r.returncode == 1
        assert r.stderr.strip() == (f"hadaemon: cannot read {home.root}/var/state.db: "
                                    f"file is not a database")
    assert (home.root / "var/state.db").read_bytes().startswith(b"garbage")


@pytest.fixture
def small_var(home):
    """var/ on a 4 MiB tmpfs the test can fill or make read-only; the check reads state/.

    (A file system busy with the daemon's open files cannot be remounted read-only, so the
    read-only case is tested at start; while running, any failed write takes the path the full
    disk test takes.)
    """
    var = home.root / "var"
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(var)],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a small tmpfs for var/: {r.stderr.strip()}")
    state = home.root / "state"
    state.mkdir()
    home.script("checks", "outside", """\
        #!/bin/sh
        echo "{\\"host\\": \\"db1\\", \\"status\\": \\"$(cat "$HA_HOME/state/db1")\\"}"
        """)
    home.write("checks.conf", FAST + "[local]\noutside\n")
    home.write("actions.conf", "[up_to_down]\nrecord down\n")
    (state / "db1").write_text("up\n")
    yield var, state
    subprocess.run(["umount", "-l", str(var)])


def _cannot_record_then_recover(home, daemons, state, break_var, mend_var, reason):
    d = daemons(home)
    wait_for(lambda: status_of(home, "db1") == "up", 20, "up")
    break_var()
    (state / "db1").write_text("down\n")
    wait_for(lambda: "cannot record db1: up -> down" in home.log(), 20, "error logged")
    st = home.status()
    assert st["hosts"]["db1"]["status"] == "up"  # not committed without a journal
    assert st["hosts"]["db1"]["observed"] == "down"  # but still checked
    assert reason in st["daemon"]["record_error"]
    assert "cannot record" in home.cli("status").stdout
    assert home.actions_log() == []
    mend_var()
    wait_for(lambda: status_of(home, "db1") == "down", 20, "committed once var/ works again")
    wait_for(lambda: home.actions_log() == [
        "record down | host=db1 from=up to=down resumed=0"], 20, "action ran once")
    assert d.stop() == 0


def test_full_disk_is_reported_and_checks_go_on(home, daemons, small_var):
    var, state = small_var
    filler = var / "filler"
    _cannot_record_then_recover(
        home, daemons, state,
        lambda: subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"],
                               capture_output=True),
        filler.unlink, "full")


# A check of db1 whose details change on every run (so each result is a write of the table), and
# which counts its runs in state/runs; and an action that notes its arguments outside var/.
COUNTED = """\
#!/bin/sh
echo x >> "$HA_HOME/state/runs"
s=$(cat "$HA_HOME/state/db1"); n=$(wc -l < "$HA_HOME/state/runs")
echo "{\\"host\\": \\"db1\\", \\"status\\": \\"$s\\", \\"details\\": {\\"run\\": \\"$n\\"}}"
"""
NOTE = """\
#!/bin/sh
echo "$(basename "$0") $* resumed=$HA_RESUMED" >> "$HA_HOME/acts.log"
"""
# Notes itself, then (unless resumed) fills var/ to the last byte: its own end cannot be recorded.
FILL = """\
#!/bin/sh
echo "fill resumed=$HA_RESUMED" >> "$HA_HOME/acts.log"
[ "$HA_RESUMED" = 1 ] || dd if=/dev/zero of="$HA_HOME/var/filler" bs=64k 2>/dev/null
exit 0
"""


def _fill(var):
    subprocess.run(["dd", "if=/dev/zero", f"of={var}/filler", "bs=64k"], capture_output=True)


def _acts(home):
    path = home.root / "acts.log"
    return path.read_text().splitlines() if path.exists() else []


def _runs(state):
    path = state / "runs"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _counted_setup(home, actions):
    home.script("checks", "counted", COUNTED)
    home.script("actions", "note", NOTE)
    home.write("checks.conf", FAST + "[local]\ncounted\n")
    home.write("actions.conf", actions)


def _after_more_runs(state, n, what):
    start = _runs(state)
    wait_for(lambda: _runs(state) >= start + n, 30, what)


def test_resume_on_a_full_disk_stays_paused_and_fires_once_space_returns(
        home, daemons, small_var):
    var, state = small_var
    home.script("actions", "note", NOTE)
    home.write("actions.conf", "[up_to_down]\nnote fired\n")
    d = daemons(home)
    wait_for(lambda: status_of(home, "db1") == "up", 20, "up")
    home.cli("pause", check=True)
    (state / "db1").write_text("down\n")
    wait_for(lambda: status_of(home, "db1") == "down", 20, "down committed while paused")
    _fill(var)
    r = home.cli("resume")
    assert r.returncode == 1, r.stdout
    assert len(r.stderr.splitlines()) == 1 and "cannot record" in r.stderr, r.stderr
    assert "still paused" in r.stderr
    st = home.status()
    assert st["daemon"]["paused"] is True and (var / "paused").exists()
    assert "full" in st["daemon"]["record_error"]
    (var / "filler").unlink()
    home.cli("resume", check=True)
    wait_for(lambda: _acts(home) == ["note fired resumed=0"], 20, "the sequence ran")
    st = home.status()
    assert st["daemon"]["paused"] is False and st["daemon"]["record_error"] is None
    fired = [h for h in home.history() if h["note"] == "fired on resume"]
    assert [(h["from"], h["to"], h["state"]) for h in fired] == [("up", "down", "done")]
    assert home.cli("resume").returncode == 1  # not paused: nothing fires twice
    assert _acts(home) == ["note fired resumed=0"]
    assert d.stop() == 0


def test_a_command_whose_end_cannot_be_recorded_is_not_run_again(home, daemons, small_var):
    var, state = small_var
    _counted_setup(home, "[up_to_down]\nfill\nnote after-fill\n[down_to_up]\nnote next-job\n")
    home.script("actions", "fill", FILL)
    d = daemons(home)
    wait_for(lambda: status_of(home, "db1") == "up", 20, "up")
    runner = home.status()["daemon"]["runner"]
    (state / "db1").write_text("down\n")
    wait_for(lambda: "cannot record the end of 'fill'" in home.log(), 20, "the end not recorded")
    (state / "db1").write_text("up\n")  # cannot be committed either while the disk is full
    wait_for(lambda: home.status()["hosts"]["db1"]["observed"] == "up", 20, "up observed")
    _after_more_runs(state, 30, "three seconds of checks on a full disk")  # the runner respawn
    st = home.status()                                                  # delay is one second
    assert st["daemon"]["runner"] == runner  # it did not leave
    assert st["hosts"]["db1"]["status"] == "down" and st["daemon"]["record_error"]
    assert _acts(home) == ["fill resumed=0"]  # nothing after it ran, nor it again
    (var / "filler").unlink()
    wait_for(lambda: len(_acts(home)) == 3, 30, "the rest ran once space returned")
    assert _acts(home) == ["fill resumed=0", "note after-fill resumed=0",
                           "note next-job resumed=0"]
    down, up = [h for h in home.history() if h["to"] in ("down", "up")][-2:]
    assert (down["to"], down["state"], down["resumed"]) == ("down", "done", False)
    assert [c["outcome"] for c in down["commands"]] == ["ok", "ok"]
    assert (up["to"], up["state"]) == ("up", "done")
    assert home.status()["daemon"]["runner"] == runner
    assert home.log().count("cannot record the end of 'fill'") == 1
    assert "the journal can be written again" in home.log()
    assert d.stop() == 0


def test_a_stop_gives_up_an_unwritten_end_after_its_grace_and_the_next_start_resumes_it(
        home, daemons, small_var):
    """The window left: the end is only in the runner's memory, and a stop ends the runner."""
    var, state = small_var
    _counted_setup(home, "[up_to_down]\nfill\nnote after-fill\n")
    home.write("checks.conf", FAST + "grace = 1\n[local]\ncounted\n")
    home.script("actions", "fill", FILL)
    d = daemons(home)
    wait_for(lambda: status_of(home, "db1") == "up", 20, "up")
    (state / "db1").write_text("down\n")
    wait_for(lambda: "cannot record the end of 'fill'" in home.log(), 20, "the end not recorded")
    assert d.stop() == 0
    assert "stopping before the end of fill could be recorded" in home.log()
    (var / "filler").unlink()
    daemons(home)
    wait_for(lambda: len(_acts(home)) == 3, 30, "resumed at the next start")
    assert _acts(home) == ["fill resumed=0", "fill resumed=1", "note after-fill resumed=1"]


def test_cannot_record_is_logged_once_and_status_clears_on_the_next_write(
        home, daemons, small_var):
    var, state = small_var
    _counted_setup(home, "[up_to_down]\nnote down\n")
    d = daemons(home)
    wait_for(lambda: status_of(home, "db1") == "up", 20, "up")
    _fill(var)
    filled = time.monotonic()
    wait_for(lambda: home.status()["daemon"]["record_error"], 20, "results cannot be written")
    (state / "db1").write_text("down\n")  # a transition proposed, and refused, every result
    _after_more_runs(state, 40, "forty results on a full disk")
    (state / "db1").write_text("up\n")  # back: no transition left to commit
    wait_for(lambda: home.status()["hosts"]["db1"]["observed"] == "up", 20, "up observed")
    lines = [line for line in home.log().splitlines() if "cannot record" in line]
    assert 1 <= len(lines) <= 2 + int((time.monotonic() - filled) / 60), lines
    assert "full" in home.status()["daemon"]["record_error"]
    (var / "filler").unlink()
    # Only results are written now (details change every run): that is enough to clear it.
    wait_for(lambda: home.status()["daemon"]["record_error"] is None, 20, "the warning cleared")
    assert "cannot record" not in home.cli("status").stdout
    # once; "check counted: works again" may come too, when a check read db1's file as the
    # test rewrote it (empty: an unsafe status)
    assert home.log().count(f"recording in {home.root}/var/state.db works again") == 1
    assert status_of(home, "db1") == "up" and _acts(home) == []
    assert d.stop() == 0


def test_start_on_a_read_only_var_is_one_clear_line(home, small_var):
    var, _ = small_var
    subprocess.run(["mount", "-o", "remount,ro", str(var)], check=True)
    for command in ("run", "start"):
        r = home.cli(command, timeout=30)
        assert r.returncode == 1
        assert r.stderr.strip() == (f"hadaemon: cannot create {var}/hadaemon.pid: "
                                    f"{var} is not writable"), r.stderr


def test_a_late_runner_supersedes_nothing_of_its_own_run(home, daemons):
    """Jobs committed by this run always run in order, however late the runner gets going (here
    it waits on the runner lock, as it does behind a crash-orphaned runner)."""
    import fcntl
    home.write("checks.conf", FAST + "[local]\nqueue\n[check:queue]\nhost = db1\n")
    home.script("checks", "queue", QUEUE)
    home.write("actions.conf", "[*_to_*]\nrecord %FROM% %TO%\n")
    queue(home, *["slave"] * 5 + ["master"] * 5 + ["down"])
    (home.root / "var").mkdir(exist_ok=True)
    with open(home.root / "var/runner.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        daemons(home)
        wait_for(lambda: status_of(home, "db1") == "down", 20, "three transitions committed")
        assert home.actions_log() == []
    wait_for(lambda: len(home.actions_log()) == 3, 20, "all three ran once the lock was free")
    assert [line.split(" | ")[0] for line in home.actions_log()] == [
        "record unknown slave", "record slave master", "record master down"]
    # The runner closes a job after its last command has written its line.
    wait_for(lambda: [h["state"] for h in home.history()] == ["done", "done", "done"], 20,
             "all three jobs closed")


def _strace_works():
    import shutil
    if not shutil.which("strace"):
        return "strace missing: apt-get install strace"
    r = subprocess.run(["strace", "-f", "-o", "/dev/null", "true"], capture_output=True,
                       text=True)
    return None if r.returncode == 0 else f"strace cannot trace here: {r.stderr.strip()}"


def wal_unsynced_at_command_starts(trace, command):
    """Read an `strace -f -y` log; for each exec of `command`, whether the WAL writes of the
    process that started it (the runner: its record of the command's start) had no fsync after
    them yet. An fsync covers everything written to the file before it, whoever wrote it, and
    the job's commit was written before the runner could read the job, so an fsync after the
    runner's last write covers the commit: one check per command start is the whole power-loss
    argument. (What the supervisor writes after that fsync is after the commit too.)"""
    last_sync = -1
    writes, parent = {}, {}  # pid -> line of its last WAL write; child pid -> its parent
    syncing = set()  # pids inside an fsync of the WAL (strace splits calls that overlap)
    starts = []
    for i, line in enumerate(trace.splitlines()):
        pid, _, call = line.partition(" ")
        call = call.lstrip()
        on_wal = "-wal>" in call.split(",")[0]
        spawned = re.search(r"clone3?\(.*= (\d+)$|<\.\.\. clone3? resumed>.*= (\d+)$", call)
        if spawned:
            parent[spawned.group(1) or spawned.group(2)] = pid
        if call.startswith(("pwrite64(", "write(")) and on_wal:
            writes[pid] = i
        elif call.startswith(("fdatasync(", "fsync(")) and on_wal:
            if "<unfinished" in call:
                syncing.add(pid)
            elif call.rstrip().endswith("= 0"):
                last_sync = i
        elif call.startswith(("<... fdatasync resumed>", "<... fsync resumed>")) \
                and pid in syncing:
            syncing.discard(pid)
            if call.rstrip().endswith("= 0"):
                last_sync = i
        elif call.startswith("execve(") and f"/actions/{command}\"" in call:
            starts.append((pid, dict(writes), last_sync))
    # A spawn's exec is logged before its clone returns the child's pid: parents come after.
    return [seen.get(parent.get(pid), max(seen.values(), default=-1)) > synced
            for pid, seen, synced in starts]


def test_every_command_starts_after_an_fsync_that_covers_its_commit(home, tmp_path):
    """The supervisor commits without an fsync of its own (store.py says why that is safe);
    this checks the claim on the real system calls of a whole run."""
    why = _strace_works()
    if why:
        pytest.skip(why)
    home.write("checks.conf", FAST + "statuses = maint\n[local]\nstatus_from_files db1 db2\n")
    home.write("actions.conf", "[*_to_*]\nrecord %HOST% %TO%\n")
    home.set_status("db1", "up")
    home.set_status("db2", "up")
    trace = tmp_path / "strace.log"
    from conftest import Daemon
    d = Daemon(home, prefix=["strace", "-f", "-y", "-qq", "-o", str(trace), "-e",
                             "trace=write,pwrite64,fsync,fdatasync,execve,clone,clone3"]).start()
    try:
        wait_for(lambda: len(home.actions_log()) == 2, 30, "first statuses fired")
        for n, status in enumerate(["down", "up", "down", "up"], start=3):
            home.set_status("db1", status)
            wait_for(lambda: len(home.actions_log()) == n, 30, f"db1 {status} fired")
        assert home.cli("transition", "db2", "maint").returncode == 0
        # >= 7: once its sequence is done, the checks (still up) may take db2 back at once
        wait_for(lambda: len(home.actions_log()) >= 7, 30, "manual transition fired")
    finally:
        d.kill_all()
    assert "db2 maint" in home.actions_log()[6]
    starts = wal_unsynced_at_command_starts(trace.read_text(), "record")
    assert len(starts) >= 7 and not any(starts), starts


# -- workers leaving and the daemon stopping are not observations ------------------------------

def _steady_checks(home, n, extra=""):
    """n checks of hosts h1..hn, each always up, every 20 ms; every transition fires `record`."""
    for i in range(1, n + 1):
        home.set_status(f"h{i}", "up")
    lines = "\n".join(f"c{i}" for i in range(1, n + 1))
    sections = "\n".join(f"[check:c{i}]\nscript = status_from_files\nargs = h{i}\nhost = h{i}"
                         for i in range(1, n + 1))
    home.write("checks.conf", f"[daemon]\ninterval = 20ms\ntimeout = 5\n{extra}\n[local]\n"
               f"{lines}\n{sections}\n")
    home.write("actions.conf", "[*_to_*]\nrecord %HOST%\n")


def _only_first_transitions(home, n):
    """Each host went unknown -> up once and nothing else fired."""
    moves = sorted((h["host"], h["from"], h["to"]) for h in home.history())
    assert moves == sorted((f"h{i}", "unknown", "up") for i in range(1, n + 1)), moves
    assert "while running it" not in home.log()


def test_a_recycled_workers_last_result_is_kept(home, daemons):
    # max_jobs = 1: every worker leaves right after sending its result, so the loop often
    # reaps it before it has read that result.
    _steady_checks(home, 6, "workers = 4\nmax_jobs = 1")
    d = daemons(home)
    wait_for(lambda: all(status_of(home, f"h{i}") == "up" for i in range(1, 7)), 20, "all up")
    runs = new_results(home)
    # one worker per result: hundreds of generations, each reaped around its last result
    wait_for(lambda: runs() >= 300, 120, "300 results")
    d.stop()
    _only_first_transitions(home, 6)


def test_shrinking_the_pool_by_reload_loses_no_check(home, daemons):
    _steady_checks(home, 6, "workers = 6")
    daemons(home)
    wait_for(lambda: all(status_of(home, f"h{i}") == "up" for i in range(1, 7)), 20, "all up")
    conf = home.root / "etc/checks.conf"
    for n in range(12):
        text = conf.read_text()
        conf.write_text(text.replace("workers = 6", "workers = 1") if n % 2 == 0
                        else text.replace("workers = 1", "workers = 6"))
        home.cli("reload", check=True)
        runs = new_results(home)
        wait_for(lambda: runs() >= 6, 20, "checks run with the pool resized")
    _only_first_transitions(home, 6)


def test_sigterm_during_a_check_commits_nothing(home, daemons):
    home.write("checks.conf", FAST + "[local]\nslow\n[check:slow]\nhost = h1\n")
    home.script("checks", "slow", """\
        #!/bin/sh
        touch "$HA_HOME/var/check.running"
        sleep 1
        echo '{"host": "h1", "status": "up"}'
        """)
    home.write("actions.conf", "[*_to_*]\nrecord %HOST%\n")
    def up():
        return status_of(home, "h1") == "up"
    for _ in range(2):  # stop, start, stop: each stop comes while the check sleeps
        d = daemons(home)
        wait_for(up, 20, "h1 up")
        running = home.root / "var/check.running"
        running.unlink(missing_ok=True)
        wait_for(running.exists, 20, "the check runs again")
        assert d.stop() == 0
    assert up()
    assert [(h["from"], h["to"]) for h in home.history()] == [("unknown", "up")]
    assert len(home.actions_log()) == 1


# -- resource exhaustion and frozen workers ----------------------------------------------------

def _log_lines(home, since=0):
    return home.log().splitlines()[since:]


def _db1_up_fired(home, daemons, settings=""):
    """A daemon whose one check reports db1 up and whose every transition runs `record`, once
    that first transition's command ran: (the daemon, its runner's pid)."""
    home.write("checks.conf", FAST + settings + "[local]\nstatus_from_files db1\n")
    home.write("actions.conf", "[*_to_*]\nrecord %HOST% %TO%\n")
    home.set_status("db1", "up")
    d = daemons(home)
    wait_for(lambda: home.actions_log(), 20, "db1 up fired")
    return d, home.status()["daemon"]["runner"]


def test_a_moment_without_descriptors_stops_no_check_for_good(home, daemons):
    """No descriptor at all for a while (fd 3 and up refused): recycled workers and a killed
    runner cannot be replaced. Each failure is logged once, the loop does not spin, and all of it
    comes back by itself when descriptors do."""
    d, runner_pid = _db1_up_fired(home, daemons, "max_jobs = 3\n")
    before = len(_log_lines(home))
    limits = procs.nofile(d.pid)
    procs.set_nofile(d.pid, f"3:{limits.split(':')[1]}")
    try:
        wait_for(lambda: "cannot start a worker" in home.log(), 20, "workers cannot be replaced")
        os.kill(runner_pid, signal.SIGKILL)
        wait_for(lambda: "cannot start the action runner" in home.log(), 20, "no runner either")
        time.sleep(3)  # what the loop does meanwhile: dozens of retries, a few log lines
        assert d.alive()
        assert len([p for p in procs.children(d.pid) if procs.alive(p)]) == 0
    finally:
        procs.set_nofile(d.pid, limits)
    low = _log_lines(home, before)
    assert sum("cannot start a worker" in line for line in low) == 1, low
    assert sum("cannot start the action runner" in line for line in low) == 1, low
    assert len(low) < 15, low
    raised = time.time()
    wait_for(home.answers, 20, "control socket answers")
    wait_for(lambda: home.status()["daemon"]["workers"] == 2, 20, "the pool back to size")
    wait_for(lambda: home.status()["hosts"]["db1"]["last_seen"] > raised, 20, "checks resume")
    # The runner comes back on its own back-off, not with the workers.
    wait_for(lambda: home.status()["daemon"]["runner"] not in (None, runner_pid), 20,
             "a new runner")
    assert "workers started again: 2 run" in home.log()
    home.set_status("db1", "down")
    wait_for(lambda: len(home.actions_log()) == 2, 20, "the new runner runs actions")
    assert d.alive()
    assert d.stop() == 0


def test_held_control_connections_do_not_make_accept_spin(home, daemons):
    """A client holding connections drives accept into EMFILE: the daemon stops listening for a
    moment instead of spinning on a socket that stays readable, logs it once, and answers again
    once the connections are gone."""
    import socket
    home.write("checks.conf", FAST + "[local]\nstatus_from_files db1\n")
    home.set_status("db1", "up")
    d = daemons(home)
    wait_for(lambda: status_of(home, "db1") == "up", 20, "db1 up")
    limits = procs.nofile(d.pid)
    procs.set_nofile(d.pid, f"{procs.fd_count(d.pid) + 8}:{limits.split(':')[1]}")
    before = len(_log_lines(home))
    held = []
    try:
        for _ in range(60):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(str(home.root / "var/control.sock"))
            except BlockingIOError:  # the backlog is full: pending
                pass
            held.append(s)
        wait_for(lambda: "cannot accept a connection" in home.log(), 20, "accept at EMFILE")
        time.sleep(3)  # an accept that spins logs thousands of lines in this time
        assert d.alive()
        low = _log_lines(home, before)
        assert sum("cannot accept a connection" in line for line in low) == 1, low[:20]
        assert len(low) < 15, low[:20]
    finally:
        for s in held:
            s.close()
        procs.set_nofile(d.pid, limits)
    wait_for(home.answers, 20, "answers again")
    wait_for(lambda: "control socket: accepting connections again" in home.log(), 20,
             "recovery logged")
    assert d.alive()


def test_a_client_holding_many_connections_cannot_take_the_workers_descriptors(home, daemons):
    """Past MAX_CLIENTS connections at once the daemon stops accepting: more clients wait in the
    listen queue, and the descriptors left are there for the workers. A worker killed meanwhile
    is replaced, which takes descriptors the held connections would otherwise have taken."""
    import socket
    from hadaemon.control import MAX_CLIENTS
    home.write("checks.conf", FAST + "[local]\nstatus_from_files db1\n")
    home.set_status("db1", "up")
    d = daemons(home)
    wait_for(lambda: status_of(home, "db1") == "up", 20, "db1 up")
    limits = procs.nofile(d.pid)
    procs.set_nofile(d.pid, f"{procs.fd_count(d.pid) + MAX_CLIENTS + 8}:"
                f"{limits.split(':')[1]}")
    held = []
    try:
        # As fast as the daemon accepts: it drops a client that sent nothing after 5 s.
        for _ in range(MAX_CLIENTS + 10):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            held.append(s)
            deadline = time.monotonic() + 0.5  # past the cap the listen queue stays full
            while time.monotonic() < deadline:
                try:
                    s.connect(str(home.root / "var/control.sock"))
                    break
                except BlockingIOError:
                    time.sleep(0.002)
        wait_for(lambda: f"{MAX_CLIENTS} clients at once" in home.log(), 20, "the cap reached")
        victim = next(p for p in procs.children(d.pid) if b"hadaemon.runner" not in procs.cmdline(p))
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: victim not in procs.children(d.pid) and len(procs.children(d.pid)) == 3, 30,
                 "the killed worker replaced")
        # Without the cap the held connections take every descriptor: the worker would wait.
        assert "cannot start a worker" not in home.log()
        assert "cannot accept a connection" not in home.log()
    finally:
        for s in held:
            s.close()
        procs.set_nofile(d.pid, limits)
    wait_for(home.answers, 20, "answers again")
    # Logged when the cap is reached, not on every turn it stays reached (clients dropped after
    # their 5 s make room, and the waiting ones may fill it once more).
    assert 1 <= home.log().count(f"{MAX_CLIENTS} clients at once") <= 3
    assert d.alive()


def test_a_frozen_worker_is_killed_and_its_check_reported(home, daemons):
    """SIGSTOP a worker mid-check (as a worker stuck on a hung mount): within the check's
    timeout plus the margin, the check is reported unknown, the worker and the check are
    killed, a new worker takes over."""
    home.write("checks.conf", FAST + "[local]\nslow\n[check:slow]\nhost = h1\ntimeout = 1\n")
    home.script("checks", "slow", """\
        #!/bin/sh
        if [ -e "$HA_HOME/var/hang" ]; then
          echo $$ > "$HA_HOME/var/check.pid"
          rm "$HA_HOME/var/hang"
          sleep 1000
        fi
        echo '{"host": "h1", "status": "up"}'
        """)
    d = daemons(home)
    wait_for(lambda: status_of(home, "h1") == "up", 20, "h1 up")
    (home.root / "var/hang").touch()
    pidfile = home.root / "var/check.pid"
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 20, "the check hangs")
    check_pid = int(pidfile.read_text())
    worker = procs.parent(check_pid)
    assert worker in procs.children(d.pid)
    os.kill(worker, signal.SIGSTOP)
    # The next run, by a new worker, answers up at once: the unknown is in history.
    wait_for(lambda: ("up", "unknown") in [(h["from"], h["to"]) for h in home.history()], 30,
             "the stalled check reported unknown")
    assert "check slow: worker stalled: no result 6s after the check started" in home.log()
    wait_for(lambda: not procs.alive(worker), 10, "the frozen worker killed")
    wait_for(lambda: not procs.alive(check_pid), 10, "its check killed")
    wait_for(lambda: status_of(home, "h1") == "up", 20, "checks go on")
    wait_for(lambda: len([p for p in procs.children(d.pid) if procs.alive(p)]) == 3, 10,
             "two workers and the runner")
    stalled = [line for line in home.log().splitlines() if "worker stalled" in line]
    assert len(stalled) == 1 and f"killed worker {worker}" in stalled[0], stalled
    assert d.alive()


def test_a_runner_that_cannot_start_is_logged_with_its_traceback_and_retried(home, daemons):
    """The runner's traceback reaches the log (a daemon's stderr is /dev/null); runners that
    keep dying are started less and less often; once the cause is gone, actions run."""
    home.write("checks.conf", FAST + "[local]\nstatus_from_files db1\n")
    home.write("actions.conf", "[*_to_*]\nrecord %HOST% %TO%\n")
    home.set_status("db1", "up")
    (home.root / "var/runner.lock").mkdir(parents=True)
    d = daemons(home)
    wait_for(lambda: "a new one resumes the journal in 2s" in home.log(), 20, "a second death")
    log = home.log()
    assert "action runner failed" in log and "IsADirectoryError" in log, log
    (home.root / "var/runner.lock").rmdir()
    wait_for(lambda: home.actions_log(), 30, "a runner runs the action")
    assert d.alive()


def test_the_loop_failing_is_logged_with_its_traceback_and_exits_non_zero(home):
    """Whatever breaks the loop itself, the daemon never leaves a log that reads like a clean
    stop: the traceback is in the log (not on a stderr that is /dev/null) and the exit status
    says it. The fault: the loop's selector closed under it."""
    import sys
    home.write("checks.conf", FAST + "[local]\nstatus_from_files db1\n")
    log_file = home.root / "broken.log"
    script = f"""
import sys
from hadaemon import config, logsetup
from hadaemon.home import Home
from hadaemon.supervisor import Supervisor
home = Home.resolve({str(home.root)!r})
conf = config.load(home)
logsetup.configure(home, {str(log_file)!r}, "info", foreground=False)
sup = Supervisor(home, conf, foreground=False)
sup.setup()
sup.sel.close()
sys.exit(sup.serve())
"""
    r = subprocess.run([sys.executable, "-c", script], cwd=home.root, timeout=60,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    text = log_file.read_text()
    assert r.returncode == 70, text
    assert "the loop failed; stopping" in text and "Traceback" in text, text
    assert text.rstrip().endswith("exiting with status 70 after an internal error"), text


def test_a_forked_child_that_fails_leaves_its_traceback_in_the_log(home):
    """Workers (and cluster helpers) are forked children: their stderr is the daemon's, which is
    /dev/null in daemon mode, so what kills them must go to the log."""
    import sys
    log_file = home.root / "child.log"
    script = f"""
import os, sys
from hadaemon import logsetup
from hadaemon.fork import fork_child
from hadaemon.home import Home
logsetup.configure(Home.resolve({str(home.root)!r}), {str(log_file)!r}, "info", False)
def broken():
    raise RuntimeError("the child broke")
pid = fork_child(broken, [])
sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""
    r = subprocess.run([sys.executable, "-c", script], timeout=60, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert r.returncode == 1
    text = log_file.read_text()
    assert "__main__.broken (pid" in text and "RuntimeError: the child broke" in text, text


def test_an_idle_runner_stops_on_sigterm_and_a_new_one_takes_over(home, daemons):
    """A SIGTERM reaches the runner alone (an operator's kill, a cgroup-wide stop whose
    supervisor is slower): waiting for work, it leaves at once, and the supervisor starts the
    next one, which runs what comes."""
    d, runner = _db1_up_fired(home, daemons)
    os.kill(runner, signal.SIGTERM)
    wait_for(lambda: not procs.alive(runner), 10, "the idle runner gone after SIGTERM")
    wait_for(lambda: home.status()["daemon"]["runner"] not in (None, runner), 30, "a new runner")
    home.set_status("db1", "down")
    wait_for(lambda: len(home.actions_log()) == 2, 30, "the new runner runs the next action")
    assert d.alive()

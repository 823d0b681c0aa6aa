"""The runner loop (runner.Runner) over a real journal in a throwaway SQLite file, with a fake
executor in place of processes: exactly-once across a crash, stop on failure, keep_going, and a
gate that holds or hands a job on."""

import socket
import sqlite3

import pytest

from hadaemon import journal, runner, wire
from hadaemon.commit import Transition
from hadaemon.execute import Outcome
from hadaemon.home import Home
from hadaemon.job import State, Verdict
from hadaemon.store import SCHEMA, Store
from hadaemon.table import Table

SETTINGS = {"grace": 1.0, "action_timeout": 1.0, "programs": {}, "resume_upto": 0}


class Crash(BaseException):
    """The runner process dies here (kill -9): nothing after this point is written."""


class Executor:
    """Stands for execute.run: remembers what ran; rc by command text; `crash_at`: the text of
    a command during which the runner dies."""

    def __init__(self, rcs=None, crash_at=None):
        self.ran, self.rcs, self.crash_at = [], rcs or {}, crash_at

    def __call__(self, job, step, resumed, extra_env=(), on_start=None, **options):
        self.ran.append((step.text, resumed))
        if step.text == self.crash_at:
            raise Crash(step.text)
        return Outcome(self.rcs.get(step.text, 0), b"out", b"", 0.01), None


class Holding(runner.LocalGate):
    """A gate that answers `verdicts` in turn before any step, then GO."""

    def __init__(self, r, verdicts):
        super().__init__(r)
        self.verdicts = list(verdicts)

    def check(self, job, idx):
        return self.verdicts.pop(0) if self.verdicts else Verdict.GO


@pytest.fixture
def home(tmp_path):
    Home(tmp_path).make_var()
    store = Store(Home(tmp_path).state_db)
    store.conn.executescript(SCHEMA)
    store.close()
    return tmp_path


def open_journal(home):
    store = Store(Home(home).state_db)
    return journal.Journal(store), Table(store)


def queue(j, *texts, keep_going=()):
    steps = [{"section": "s", "text": t, "where": f"actions.conf:{i}",
              "keep_going": t in keep_going, "timeout": 5, "program": "/bin/true",
              "argv": [t], "error": None} for i, t in enumerate(texts)]
    return j.enqueue(Transition("db1", "slave", "master", {"db1": "master"}), steps, {})


def start(home, executor, gate=runner.LocalGate):
    """A runner as its main() sets it up (journal, gate, jobs left open), without a process."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    r = runner.Runner(home, dict(SETTINGS), a, execute=executor)
    r.store, table = open_journal(home)
    r.gate = gate(r)
    runner.resume_left_open(r.store, table, SETTINGS["resume_upto"])
    return r


def state(home, job_id):
    return open_journal(home)[0]._store.conn.execute(
        "SELECT state, note, resumed FROM jobs WHERE id = ?", (job_id,)).fetchone()


def test_a_sequence_runs_in_order_once_and_the_job_is_done(home):
    j, _ = open_journal(home)
    job_id = queue(j, "a", "b", "c")
    ex = Executor()
    r = start(home, ex)
    assert r.work() is True
    assert ex.ran == [("a", False), ("b", False), ("c", False)]
    assert state(home, job_id)[:2] == ("done", None)
    assert r.work() is False and ex.ran == [("a", False), ("b", False), ("c", False)]


def test_a_crash_between_start_and_end_reruns_that_command_only_resumed(home):
    j, _ = open_journal(home)
    job_id = queue(j, "a", "b", "c")
    first = Executor(crash_at="b")
    with pytest.raises(Crash):
        start(home, first).work()
    assert first.ran == [("a", False), ("b", False)]
    assert state(home, job_id)[0] == "running"
    second = Executor()
    assert start(home, second).work() is True
    # a finished before the crash: never again; b's end is unknown: run again, HA_RESUMED=1
    assert second.ran == [("b", True), ("c", True)]
    assert state(home, job_id) == ("done", None, 1)


def test_a_crash_after_the_last_end_closes_the_job_without_running_anything(home):
    j, _ = open_journal(home)
    job_id = queue(j, "a", "b")
    r = start(home, Executor())
    r.store.close = lambda job, st, note=None: (_ for _ in ()).throw(Crash("before close"))
    with pytest.raises(Crash):
        r.work()
    again = Executor()
    assert start(home, again).work() is True
    assert again.ran == [] and state(home, job_id)[0] == "done"


def test_a_failed_command_stops_the_sequence(home):
    j, _ = open_journal(home)
    job_id = queue(j, "a", "b")
    ex = Executor(rcs={"a": 1})
    start(home, ex).work()
    assert ex.ran == [("a", False)]
    assert state(home, job_id)[:2] == ("failed", "stopped at command 1: a")


def test_keep_going_runs_the_rest_after_a_failure(home):
    j, _ = open_journal(home)
    job_id = queue(j, "a", "b", keep_going=("a",))
    ex = Executor(rcs={"a": 1})
    start(home, ex).work()
    assert ex.ran == [("a", False), ("b", False)]
    assert state(home, job_id)[0] == "done"


def test_a_gate_that_holds_starts_nothing_until_it_says_go(home):
    j, _ = open_journal(home)
    job_id = queue(j, "a")
    ex = Executor()
    r = start(home, ex, lambda r: Holding(r, [Verdict.HOLD, Verdict.HOLD]))
    assert r.work() is False and r.work() is False  # held: the loop waits, then asks again
    assert ex.ran == [] and state(home, job_id)[0] == "queued"
    assert r.work() is True
    assert ex.ran == [("a", False)] and state(home, job_id)[0] == "done"


def test_a_fenced_or_handed_on_job_is_left_alone(home):
    j, _ = open_journal(home)
    job_id = queue(j, "a")
    ex = Executor()
    for verdict in (Verdict.FENCED, Verdict.HAND_ON):
        r = start(home, ex, lambda r: Holding(r, [verdict]))
        assert r.work() is True  # not held: the loop goes on at once
        assert ex.ran == [] and state(home, job_id)[0] == "queued"


def test_no_new_job_begins_while_paused_but_one_under_way_finishes(home):
    j, _ = open_journal(home)
    first = queue(j, "a", "b")
    queue(j, "c")
    with pytest.raises(Crash):
        start(home, Executor(crash_at="b")).work()
    Home(home).paused.touch()
    ex = Executor()
    r = start(home, ex)
    assert r.work() is True  # job 1 was under way
    assert r.work() is False  # job 2 waits for the end of the pause
    assert ex.ran == [("b", True)] and state(home, first)[0] == "done"
    Home(home).paused.unlink()
    assert r.work() is True and ex.ran[-1] == ("c", False)


def test_the_runner_takes_new_settings_and_wake_ups_from_the_supervisor(home):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    r = runner.Runner(home, dict(SETTINGS), a, execute=Executor())
    b.send(wire.encode(wire.Settings({"grace": 3})))
    assert r.wait_for_work(5) is True and r.settings["grace"] == 3
    b.send(wire.encode(wire.Wake()))
    assert r.wait_for_work(5) is True and r.settings["grace"] == 3
    b.send(b"{garbled")  # dropped, the runner carries on
    assert r.wait_for_work(5) is True and r.settings == dict(SETTINGS, grace=3)
    b.close()
    assert r.wait_for_work(5) is False  # the supervisor is gone


def test_a_job_left_open_whose_host_moved_on_is_superseded(home):
    j, table = open_journal(home)
    job_id = queue(j, "a")
    with table.transaction():
        table.set("db1", {"status": "slave"})
    ex = Executor()
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    r = runner.Runner(home, dict(SETTINGS, resume_upto=job_id), a, execute=ex)
    r.store, r.gate = j, runner.LocalGate(r)
    runner.resume_left_open(j, table, job_id)
    assert r.work() is False and ex.ran == []
    assert state(home, job_id)[:2] == ("superseded", "db1 is slave now, not master")
    assert State(state(home, job_id)[0]) is State.SUPERSEDED


class FullDisk(journal.Journal):
    """The journal on a full disk: a command's pid is never written, its end fails `ends`
    times first."""

    def __init__(self, store, ends):
        super().__init__(store)
        self.ends = ends

    def step_pid(self, job, idx, pid):
        raise sqlite3.OperationalError("database or disk is full")

    def step_finished(self, *args):
        if self.ends:
            self.ends -= 1
            raise sqlite3.OperationalError("database or disk is full")
        return super().step_finished(*args)


class Spawning(Executor):
    """Says the command's pid, as execute.run does once the command started."""

    def __call__(self, job, step, resumed, extra_env=(), on_start=None, **options):
        on_start(4242)
        return super().__call__(job, step, resumed, extra_env, on_start, **options)


def test_an_unrecorded_pid_does_not_hide_an_unrecorded_end(home, caplog, monkeypatch):
    """The pid is a note for the operator; the end is what keeps the command from running again:
    both failures are said, the pid's first."""
    monkeypatch.setattr(runner.Backoff, "ready", lambda self, now: True)  # no back-off wait
    j, _ = open_journal(home)
    job = queue(j, "a")
    r = start(home, Spawning())
    r.store = FullDisk(r.store._store, ends=2)
    assert r.work() is True
    said = [rec.getMessage() for rec in caplog.records if "cannot record" in rec.getMessage()]
    assert said[0].startswith("cannot record the pid of job #%d's command 1" % job), said
    assert any(m.startswith("cannot record the end of 'a'") for m in said), said
    assert state(home, job)[0] == "done"

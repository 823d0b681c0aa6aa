"""The action journal (hadaemon/journal.py) on a throwaway SQLite store: the states a job is
enqueued in, the order the runner takes jobs, a finished step never claimed again, what a
finished job keeps, and pruning."""

import json
from dataclasses import replace

import pytest

from hadaemon import journal
from hadaemon.commit import Transition
from hadaemon.job import State, next_step
from hadaemon.journal import initial_state
from hadaemon.store import Store, open_store

STEP = {"section": "s", "text": "x", "where": "w", "keep_going": False, "timeout": 1,
        "argv": ["x"], "error": None}
ENV = {"HA_UP": "h"}


@pytest.fixture
def store(tmp_path):
    store, moved = open_store(tmp_path / "state.db")
    assert moved is None
    yield store
    store.close()


def row(store, job_id, *columns):
    return store.conn.execute(f"SELECT {', '.join(columns)} FROM jobs WHERE id = ?",
                              (job_id,)).fetchone()


def t(host="h", source="up", target="down"):
    return Transition(host, source, target, {host: target})


def test_prune_keeps_the_newest_and_every_open_job(tmp_path):
    store = Store(tmp_path / "state.db")
    from hadaemon.store import SCHEMA
    store.conn.executescript(SCHEMA)
    j = journal.Journal(store)
    step = [{"section": "s", "text": "x", "where": "w", "keep_going": False, "timeout": 1,
             "argv": ["x"], "error": None}]
    ids = [j.enqueue(Transition("h", "up", "down", {"h": "down"}), step, {"HA_UP": "h"})
           for _ in range(10)]
    for i in ids:
        if i != 4:
            j.finish(i, "done")
    assert j.prune(3) == 4  # job 4 is open: it and everything after it stay
    assert [r[0] for r in store.conn.execute("SELECT id FROM jobs")] == ids[3:]
    assert store.conn.execute("SELECT env FROM jobs WHERE id = 5").fetchone()[0] == "{}"
    assert store.conn.execute("SELECT env FROM jobs WHERE id = 4").fetchone()[0] != "{}"
    j.finish(4, "done")
    assert j.prune(3, 4) == 8
    assert [r[0] for r in store.conn.execute("SELECT id FROM jobs")] == [8, 9, 10]
    assert j.prune(3, 8) == 8


def test_paused_jobs_are_skipped_with_or_without_commands():
    step = [{"argv": ["x"]}]
    assert initial_state([], paused=True) == ("skipped", "paused: no action fired")
    assert initial_state(step, paused=True) == ("skipped", "paused: no action fired")
    assert initial_state([], paused=False) == ("done", None)
    assert initial_state(step, paused=False) == ("queued", None)


def test_enqueue_states_and_what_each_keeps(store):
    j = journal.Journal(store)
    queued = j.enqueue(t(), [STEP], ENV, now=100.0)
    nothing = j.enqueue(t(), [], ENV, now=101.0)
    paused = j.enqueue(t(), [STEP], ENV, now=102.0, paused=True)
    refused = j.enqueue(t(), [dict(STEP, argv=None, refused=True,
                                   error="sequence refused: w: 'x': %UP% has no value")],
                        ENV, now=103.0)
    assert row(store, queued, "state", "env", "finished", "note") == (
        "queued", json.dumps(ENV), None, None)
    assert row(store, nothing, "state", "env", "finished") == ("done", "{}", 101.0)
    assert row(store, paused, "state", "env", "finished", "note") == (
        "skipped", "{}", 102.0, "paused: no action fired")
    assert row(store, refused, "state", "env", "note") == (
        "failed", "{}", "not run: sequence refused: w: 'x': %UP% has no value")
    assert json.loads(row(store, queued, "plan")[0]) == [STEP]
    assert [(o["id"], o["state"]) for o in j.open_jobs()] == [(queued, "queued")]
    assert j.last_id() == refused


class Open:
    """A gate that lets every job begin (the runner's LocalGate without its lock file)."""

    @staticmethod
    def may_begin(job, records):
        return True


class Paused:
    @staticmethod
    def may_begin(job, records):
        return False


def finished(started, rc=0, error=None):
    return replace(started, finished=started.started + 0.1, rc=rc, duration=0.1, output="out",
                   error=error)


def test_the_runner_takes_the_oldest_open_job_with_its_progress(store):
    j = journal.Journal(store)
    assert j.next_job(Open) is None
    first = j.enqueue(t("a"), [STEP, STEP], ENV)
    second = j.enqueue(t("b", "down", "up"), [STEP], {"HA_DOWN": "b"})
    job = j.next_job(Open)
    assert (job.id, job.host, job.state, j.environment(job), j.records(job)) == (
        first, "a", State.QUEUED, ENV, {})
    assert j.next_job(Paused) is None  # a job not begun waits for the gate
    started = j.step_started(job, 0, None, resumed=False)
    assert j.step_finished(job, 0, started, finished(started))
    assert j.step_started(job, 1, None, resumed=False)
    job = j.next_job(Paused)  # one under way goes on whatever the gate says
    assert job.id == first and job.state is State.RUNNING
    records = j.records(job)
    assert sorted(records) == [0, 1]
    assert records[0].done and records[0].rc == 0 and not records[1].done
    assert next_step(job, records) == (1, None)
    j.mark_resumed(first)
    assert j.next_job(Open).resumed is True
    assert j.close(job, State.DONE)
    assert not j.is_open(first)
    job = j.next_job(Open)
    assert (job.id, job.host, job.source, j.environment(job)) == (second, "b", "down",
                                                                 {"HA_DOWN": "b"})


def test_a_finished_step_is_never_claimed_again(store):
    j = journal.Journal(store)
    j.enqueue(t(), [STEP], ENV)
    job = j.next_job(Open)
    started = j.step_started(job, 0, None, resumed=False)
    assert started is not None
    j.step_interrupted(job, 0, started, replace(started, duration=0.5, output="half",
                                                error="stopping"))
    again = j.step_started(job, 0, None, resumed=True)  # cut short: it may run again
    assert again is not None
    j.step_finished(job, 0, again, finished(again, rc=1, error="exit 1"))
    assert j.step_started(job, 0, None, resumed=True) is None
    assert store.conn.execute("SELECT rc, resumed FROM steps WHERE job = ?",
                              (job.id,)).fetchall() == [(1, 1)]


def test_finish_drops_the_environment_and_keeps_the_plan_and_note(store):
    j = journal.Journal(store)
    j.enqueue(t(), [STEP], ENV)
    job = j.next_job(Open)
    j.step_started(job, 0, None, resumed=False)  # queued -> running -> failed
    assert j.close(j.next_job(Open), State.FAILED, "stopped at command 1")
    state, env, plan, note, finished_at = row(store, job.id, "state", "env", "plan", "note",
                                              "finished")
    assert (state, env, note) == ("failed", "{}", "stopped at command 1")
    assert json.loads(plan) == [STEP] and finished_at is not None
    assert j.next_job(Open) is None and j.open_jobs() == []
    j2 = j.enqueue(t(), [STEP], ENV, note="manual")
    j.finish(j2, "done")  # no new note: the one it had stays
    assert row(store, j2, "note") == ("manual",)


def test_prune_never_removes_an_open_job_and_writes_nothing_when_the_floor_did_not_move(store):
    j = journal.Journal(store)
    ids = [j.enqueue(t(), [STEP], ENV) for _ in range(5)]
    assert j.prune(1) == 1  # job 1 is open: nothing below it
    assert j.prune(1, 1) == 1
    for i in ids:
        j.finish(i, "done")
    assert j.prune(2, 1) == 4
    assert [r[0] for r in store.conn.execute("SELECT id FROM jobs")] == [4, 5]
    changes = store.conn.total_changes
    assert j.prune(2, 4) == 4 and store.conn.total_changes == changes

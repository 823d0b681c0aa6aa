"""The job model: state edges, next_step, and the JSON shape both stores keep."""

import pytest

from hadaemon.job import (BadTransition, Job, State, Step, StepRecord, next_step,
                          transition)

ALLOWED = {(State.QUEUED, State.RUNNING), (State.RUNNING, State.RUNNING),
           (State.QUEUED, State.SUPERSEDED), (State.RUNNING, State.SUPERSEDED),
           (State.RUNNING, State.DONE), (State.RUNNING, State.FAILED)}


@pytest.mark.parametrize("current", list(State))
@pytest.mark.parametrize("new", list(State))
def test_only_the_commented_edges_are_allowed(current, new):
    if (current, new) in ALLOWED:
        assert transition(current, new) is new
    else:
        with pytest.raises(BadTransition):
            transition(current, new)


def test_final_states_are_not_open():
    assert {s for s in State if s.open} == {State.QUEUED, State.RUNNING}


def step(text, keep_going=False):
    return Step(text, (text,), "s", "actions.conf:1", 5.0, keep_going)


def job(*steps, state=State.RUNNING):
    return Job(7, "db1", "slave", "master", tuple(steps), state)


def ran(rc, error=None):
    return StepRecord(1.0, 2.0, rc, 1.0, "", error)


def test_next_step_is_the_first_unfinished_one():
    j = job(step("a"), step("b"), step("c"))
    assert next_step(j, {}) == (0, None)
    assert next_step(j, {0: ran(0)}) == (1, None)
    # started but never finished (a crash): run again
    assert next_step(j, {0: ran(0), 1: StepRecord(1.0)}) == (1, None)
    assert next_step(j, {0: ran(0), 1: ran(0), 2: ran(0)}) == (None, None)


def test_a_failure_stops_the_sequence_unless_keep_going():
    j = job(step("a"), step("b"))
    assert next_step(j, {0: ran(1)}) == (None, "stopped at command 1: a")
    assert next_step(j, {0: ran(None, "cannot start")}) == (None, "stopped at command 1: a")
    kept = job(step("a", keep_going=True), step("b"))
    assert next_step(kept, {0: ran(1)}) == (1, None)
    assert next_step(kept, {0: ran(1), 1: ran(0)}) == (None, None)


def test_moved_follows_the_edges_and_keeps_the_rest():
    j = job(step("a"), state=State.QUEUED)
    running = j.moved(State.RUNNING, holder="n1/1/ab")
    assert (running.state, running.holder, running.plan) == (State.RUNNING, "n1/1/ab", j.plan)
    assert j.state is State.QUEUED  # frozen: a new value, not a change
    with pytest.raises(BadTransition):
        j.moved(State.DONE)


def test_json_round_trip_of_a_cluster_job():
    d = {"id": 3, "kind": "fence", "host": "n2", "source": "leader", "target": "fenced",
         "manual": False, "created": 12.5, "state": "queued", "env": {"HA_FENCE_NODE": "n2"},
         "plan": [{"section": "fence", "text": "fence-it", "where": "[cluster] fence",
                   "keep_going": False, "timeout": 30, "argv": ["fence-it", "n2"],
                   "error": None, "node": "n1"}],
         "leader": "n1", "holder": "", "resumed": False, "note": None, "finished": None}
    j = Job.from_dict(d, stored=b"raw")
    assert j.stored == b"raw" and j.plan[0].argv == ("fence-it", "n2")
    assert j.to_dict() == d
    assert Job.from_dict(j.to_dict()) == j


def test_json_round_trip_of_a_refused_step_and_an_older_journals_step():
    refused = {"section": "s", "text": "x %MASTER%", "where": "actions.conf:3",
               "keep_going": False, "timeout": 5, "program": "/bin/x", "argv": None,
               "error": "sequence refused: no value", "refused": True}
    assert Step.from_dict(refused).to_dict() == refused
    older = {"section": "s", "text": "x", "where": "w", "keep_going": True, "timeout": 5,
             "argv": ["x"], "error": None}  # no program: the running config's is used
    assert Step.from_dict(older).to_dict() == older


def test_step_record_round_trip_and_outcome():
    started = StepRecord(1.0, resumed=True, node="n1")
    assert StepRecord.from_dict(started.to_dict()) == started
    assert not started.done
    assert ran(0).ok and not ran(2).ok and not ran(0, "killed by signal 9").ok

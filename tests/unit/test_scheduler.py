"""Which check is due when (hadaemon/scheduler.py): first runs spread over the interval, each
next run one interval after the last was due, never a check queued twice, a reload keeping the
deadlines of what did not change."""

from types import SimpleNamespace

from hadaemon.scheduler import Scheduler


def check(cid, interval=10.0):
    return SimpleNamespace(id=cid, interval=interval)


def due(s, now):
    return [(c.id, d) for c, d, _ in s.pop_due(now)]


def test_first_runs_are_spread_over_the_interval_and_come_due_in_order():
    s = Scheduler([check("a"), check("b"), check("c"), check("d")], now=100.0)
    assert len(s) == 4 and s.next_deadline() == 100.0
    assert due(s, 104.9) == [("a", 100.0), ("b", 102.5)]
    assert set(s.running) == {"a", "b"}
    assert due(s, 110.0) == [("c", 105.0), ("d", 107.5)]
    assert due(s, 1000.0) == [] and s.next_deadline() is None  # all running: none twice


def test_a_run_comes_back_one_interval_after_it_was_due_or_at_once_when_late():
    s = Scheduler([check("a", 5.0)], now=0.0)
    [(a, when, run)] = list(s.pop_due(0.0))
    s.done("a", run, when, now=1.0)  # took 1 s: next due at 5, no drift
    assert s.next_deadline() == 5.0
    [(a, when, run)] = list(s.pop_due(5.0))
    s.done("a", run, when, now=12.0)  # slower than its interval: back to back, not piled up
    assert s.next_deadline() == 12.0 and due(s, 12.0) == [("a", 12.0)]


def test_push_back_requeues_a_check_no_worker_took():
    s = Scheduler([check("a"), check("b")], now=0.0)
    [(a, when, run)] = list(s.pop_due(0.0))
    s.push_back(a, when)
    assert "a" not in s.running and due(s, 0.0) == [("a", 0.0)]


def test_a_reload_keeps_unchanged_deadlines_and_a_removed_check_s_run_is_ignored():
    s = Scheduler([check("a"), check("b"), check("c")], now=0.0)
    [(a, when_a, run_a)] = list(s.pop_due(0.0))  # a runs; b due at 3.33, c at 6.67
    b_due = 10.0 / 3
    s.replace([check("b"), check("c", 20.0), check("d")], now=1.0)
    assert "a" not in s.running and s.get("a") is None
    s.done("a", run_a, when_a, now=2.0)  # a's result after its removal: nothing queued
    # b kept its deadline; c changed its interval and d is new: spread again from now
    assert due(s, b_due) == [("b", b_due)]
    assert due(s, 100.0) == [("c", 1.0 + 20.0 / 3), ("d", 1.0 + 10.0 * 2 / 3)]


def test_a_check_running_during_a_reload_is_queued_by_its_result_only():
    s = Scheduler([check("a")], now=0.0)
    [(a, when, run)] = list(s.pop_due(0.0))
    s.replace([check("a")], now=1.0)
    assert due(s, 100.0) == []  # not queued a second time while it runs
    s.done("a", run, when, now=2.0)
    assert s.next_deadline() == 10.0

"""RateLog and Backoff: pure logic, on a clock the test moves."""

import logging

from hadaemon.backoff import Backoff
from hadaemon.ratelog import RateLog


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _rate_log(caplog):
    clock = Clock()
    caplog.set_level(logging.INFO, logger="test.ratelog")
    return RateLog(logging.getLogger("test.ratelog"), every=60.0, clock=clock), clock


def test_a_repeated_message_is_logged_once_a_minute_with_its_count(caplog):
    errors, clock = _rate_log(caplog)
    assert errors.report("k", logging.ERROR, "EMFILE")
    for _ in range(99):
        clock.now += 0.5
        assert not errors.report("k", logging.ERROR, "EMFILE")
    clock.now = 61.0
    assert errors.report("k", logging.ERROR, "EMFILE")
    assert [r.getMessage() for r in caplog.records] == [
        "EMFILE", "EMFILE (and 99 more time(s) since)"]
    assert caplog.records[0].levelno == logging.ERROR


def test_a_changed_message_is_logged_at_once_and_keys_are_independent(caplog):
    errors, clock = _rate_log(caplog)
    errors.report("a", logging.WARNING, "one")
    errors.report("a", logging.WARNING, "one")
    errors.report("b", logging.WARNING, "one")
    errors.report("a", logging.WARNING, "two")
    assert [r.getMessage() for r in caplog.records] == ["one", "one", "two"]


def test_clear_logs_recovery_only_after_a_failure_with_what_was_not_logged(caplog):
    errors, clock = _rate_log(caplog)
    assert not errors.clear("k", "works again")
    errors.report("k", logging.ERROR, "broken")
    errors.report("k", logging.ERROR, "broken")
    assert "k" in errors
    assert errors.clear("k", "works again")
    assert "k" not in errors
    assert [r.getMessage() for r in caplog.records] == [
        "broken", "works again (1 failure(s) since the last line)"]
    errors.report("k", logging.ERROR, "broken")  # a new episode starts with a line of its own
    assert caplog.records[-1].getMessage() == "broken"


def test_the_traceback_goes_with_the_logged_line_only(caplog):
    errors, clock = _rate_log(caplog)
    for _ in range(3):
        try:
            raise OSError(24, "Too many open files")
        except OSError:
            errors.report("k", logging.ERROR, "failed", exc_info=True)
    assert len(caplog.records) == 1 and caplog.records[0].exc_info[0] is OSError


def test_backoff_doubles_up_to_its_most_and_a_success_resets_it():
    b = Backoff(first=0.1, most=1.0)
    assert b.ready(0.0)
    assert [b.failed(10.0) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert not b.ready(10.5) and b.ready(11.0)
    b.succeeded()
    assert b.ready(10.0) and b.failed(10.0) == 0.1


def test_a_trouble_whose_message_changes_is_still_logged_once_a_period(caplog):
    """changes=False: a full disk fails every write, each about something else."""
    clock = Clock()
    r = RateLog(logging.getLogger("t"), every=60.0, clock=clock)
    with caplog.at_level(logging.INFO, "t"):
        for n in range(100):
            r.report("record", logging.ERROR, f"cannot record h{n}", changes=False)
            clock.now += 1.0  # 100 errors over 100 seconds
        r.clear("record", "works again")
        assert caplog.messages == ["cannot record h0", "cannot record h60 (and 59 more time(s) "
                                   "since)", "works again (39 failure(s) since the last line)"]

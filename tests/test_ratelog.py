"""RateLog: a recurring error is logged when it starts, then at most once a period with a count."""

import logging

from hadaemon.ratelog import RateLog


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_logged_once_then_once_a_period_with_the_count(caplog):
    clock = Clock()
    r = RateLog(logging.getLogger("t"), every=60.0, clock=clock)
    with caplog.at_level(logging.INFO, "t"):
        for _ in range(100):
            r.error("cannot write %s", "x")
            clock.now += 1.0  # 100 errors over 100 seconds
        assert caplog.messages == ["cannot write x", "cannot write x (and 59 more time(s) since)"]
        assert r.failing


def test_clear_says_so_once_and_the_next_error_is_logged_at_once(caplog):
    clock = Clock()
    r = RateLog(logging.getLogger("t"), every=60.0, clock=clock)
    with caplog.at_level(logging.INFO, "t"):
        r.clear("works again")  # nothing was failing: nothing to say
        r.error("full")
        r.error("full")
        r.clear("works again")
        r.clear("works again")
        r.error("full")
        assert caplog.messages == ["full", "works again", "full"]
        assert [rec.levelname for rec in caplog.records] == ["ERROR", "INFO", "ERROR"]

"""One recurring error, logged when it starts and then at most once per period with a count.

A full disk fails every write (every result, every retry): logging each would fill what little
room is left and bury everything else.
"""

import time

EVERY = 60.0  # seconds between two lines about the same recurring error


class RateLog:
    """Logs error() at once, then repeats at most once per `every` seconds, saying how many
    were not logged in between; clear() ends it, so the next error() is logged at once."""

    def __init__(self, logger, every=EVERY, clock=time.monotonic):
        self._log, self._every, self._clock = logger, every, clock
        self._last = None  # when the last line was logged; None while all is well
        self._repeats = 0  # errors since that line, not logged

    @property
    def failing(self):
        return self._last is not None

    def error(self, message, *args):
        now = self._clock()
        if self._last is not None and now - self._last < self._every:
            self._repeats += 1
            return
        if self._repeats:
            message, args = message + " (and %d more time(s) since)", args + (self._repeats,)
        self._log.error(message, *args)
        self._last, self._repeats = now, 0

    def clear(self, message=None, *args):
        """The error is over: log `message` (info) if one was logged, and reset."""
        if self._last is not None and message:
            self._log.info(message, *args)
        self._last, self._repeats = None, 0

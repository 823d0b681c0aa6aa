"""Log trouble that can repeat many times a second without burying the rest of the log.

A message is logged when it first comes and whenever it changes; the same message again is
counted, and logged at most once per `every` seconds, with how many times it came in between.
One RateLog holds any number of independent keys (a check, "accept", "workers", ...).

    errors = RateLog(log)
    errors.report("accept", logging.ERROR, f"control socket: cannot accept: {e}")
    errors.clear("accept", "control socket: accepting again")   # logged only if it was failing
"""

import logging
import time

EVERY = 60.0  # seconds


class RateLog:
    def __init__(self, logger, every=EVERY, clock=time.monotonic):
        self.logger, self.every, self.clock = logger, every, clock
        self.failing = {}  # key -> [message, when last logged, times since not logged]

    def report(self, key, level, message, exc_info=False, changes=True):
        """Log message for key unless the same one was logged less than `every` seconds ago;
        True if it was logged. exc_info: the current exception's traceback goes with it.
        changes=False: another message for the key is the same trouble (a full disk failing
        each write, whatever it was about), counted like a repeat."""
        now = self.clock()
        last = self.failing.get(key)
        same = last and (last[0] == message or not changes)
        if same and now - last[1] < self.every:
            last[2] += 1
            return False
        repeats = last[2] if same else 0
        again = f" (and {repeats} more time(s) since)" if repeats else ""
        self.logger.log(level, "%s%s", message, again, exc_info=exc_info)
        self.failing[key] = [message, now, 0]
        return True

    def clear(self, key, message=None, level=logging.INFO):
        """key works again: log message (if given) when it was failing; True if it was."""
        last = self.failing.pop(key, None)
        if last is None:
            return False
        if message:
            unlogged = f" ({last[2]} failure(s) since the last line)" if last[2] else ""
            self.logger.log(level, "%s%s", message, unlogged)
        return True

    def __contains__(self, key):
        return key in self.failing

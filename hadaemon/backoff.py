"""When to try again something that failed for want of a resource (file descriptors, memory):
soon after the first failure, then less and less often, and at once again after a success.
A loop that retried on every turn would spin, and spend on failing forks what it is short of."""

FIRST = 0.1  # seconds
MOST = 5.0


class Backoff:
    def __init__(self, first=FIRST, most=MOST):
        self.first, self.most = first, most
        self.delay = 0.0  # 0 while nothing fails
        self.due = 0.0  # monotonic time of the next try

    def ready(self, now):
        return now >= self.due

    def failed(self, now):
        """One more failure: the next try waits twice as long as the last (up to `most`);
        return that wait."""
        self.delay = min(self.most, self.delay * 2 or self.first)
        self.due = now + self.delay
        return self.delay

    def succeeded(self):
        self.delay, self.due = 0.0, 0.0

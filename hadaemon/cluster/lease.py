"""An etcd lease as its holder sees it: granted, renewed, and how long it surely lasts.

valid_until is on this process's monotonic clock and never later than etcd's own expiry: it
counts from the moment the grant or keepalive request was *sent*, so a slow answer shortens it,
never lengthens it. Safe to use from two threads (a runner renews from its own thread while its
loop reads time_left); each thread passes its own etcd client to renew().
"""

import threading
import time


def keepalive_every(ttl, poll):
    """Seconds between two keepalives of a lease of ttl, for the agent and the runner alike: a
    tenth of ttl (at least one look's poll), so an outage of etcd shorter than ttl minus this
    (and one request's timeout) never lets the lease expire, and the lease's time left stays
    well above a fencing margin (a third of ttl by default)."""
    return max(poll, ttl / 10.0)


class Lease:
    def __init__(self, etcd, ttl):
        self.etcd, self.ttl = etcd, ttl
        self.id = None  # None: no lease (not granted yet, expired, or revoked)
        self.valid_until = 0.0
        self._lock = threading.Lock()

    def grant(self):
        """A new lease (its id); the old one, if any, is forgotten, not revoked."""
        t0 = time.monotonic()
        lease = self.etcd.grant(self.ttl)
        with self._lock:
            self.id, self.valid_until = lease, t0 + self.ttl
        return lease

    def ensure(self):
        """The lease's id, granted first if there is none."""
        with self._lock:
            lease = self.id
        return lease if lease is not None else self.grant()

    def renew(self, etcd=None):
        """One keepalive (through `etcd`, default the lease's client): True if the lease lives,
        False if etcd says it expired (it is forgotten then; whatever hung on it is gone).
        Raises what the client raises when etcd cannot be reached."""
        with self._lock:
            lease = self.id
        if lease is None:
            return False
        t0 = time.monotonic()
        ttl = (etcd or self.etcd).keepalive(lease)
        with self._lock:
            if ttl <= 0:
                if self.id == lease:
                    self.id = None
                return False
            if self.id == lease:
                self.valid_until = max(self.valid_until, t0 + ttl)
        return True

    def time_left(self):
        """Seconds the lease surely lasts; -1.0 without one."""
        with self._lock:
            return self.valid_until - time.monotonic() if self.id is not None else -1.0

    def forget(self):
        """Drop the lease without revoking it: whatever hangs on it goes when it expires."""
        with self._lock:
            self.id = None

    def revoke(self):
        """Give the lease up now (whatever hangs on it goes at once) and forget it."""
        with self._lock:
            lease, self.id = self.id, None
        if lease is not None:
            self.etcd.revoke(lease)

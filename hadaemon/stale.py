"""Stale: a check without a result for longer than two intervals plus its timeout.

A check is run one interval after its last run was due and killed at its timeout, so a result
comes at least that often (the commit rule lets a result count that long: commit.py). A check
with no result for longer is not being run at all: its worker is frozen, or the pool is stuck
behind something. Its hosts are then stale: their status is no longer watched. `status` shows it
and exits 4, and systemd's watchdog is no longer fed (notify.py), so a daemon that stopped
watching is restarted.
"""

import logging

from .commit import result_lifetime
from .hostlog import log_hosts

log = logging.getLogger("hadaemon")


def limit(check):
    """Seconds a check may go without a result before it is stale: as long as the commit rule
    lets its last result count."""
    return result_lifetime(check)


def stale_checks(checks, last, now):
    """{check id: seconds since its last result} for every stale check of `checks`.

    `last` maps a check id to the monotonic time of its last result (or of the moment it began
    to be watched, before its first one); a check missing from it is not stale yet.
    """
    return {c.id: now - last[c.id] for c in checks
            if c.id in last and now - last[c.id] > limit(c)}


def stale_hosts(stale, hosts):
    """The hosts reported by a stale check: `hosts` maps a check id to the hosts it reports."""
    return sorted({h for cid in stale for h in hosts.get(cid, ())})


class Freshness:
    """When each check last gave a result and which hosts it reports; what is stale now, and a
    log line when that changes (once per host or host-less check, each way)."""

    def __init__(self):
        self.last = {}  # check id -> monotonic time of its last result (or first watched)
        self.hosts = {}  # check id -> hosts of its last result that named any
        self.checks = {}  # stale check id -> seconds without a result, at the last update
        self.stale = []  # the stale hosts, sorted, at the last update

    def result(self, check_id, hosts, now):
        self.last[check_id] = now
        if hosts:  # a failure without a host= names none: keep the hosts it reported before
            self.hosts[check_id] = set(hosts)

    def reporting(self, host):
        """The checks whose latest result named host (as of the last update), sorted."""
        return sorted(cid for cid, hosts in self.hosts.items() if host in hosts)

    def update(self, checks, entries, now):
        """Re-evaluate for the configured `checks`; `entries` (the host table) tells which check
        last reported each host, for checks without a result since the start."""
        ids = {c.id for c in checks}
        new = [c for c in checks if c.id not in self.last]
        if new:  # one pass over the table for all of them (100 000 hosts: tens of ms each)
            known = {c.id: {c.host} if c.host else set() for c in new}
            for h, e in entries.items():
                if e.get("check") in known:
                    known[e["check"]].add(h)
            for c in new:
                self.last[c.id] = now
                self.hosts[c.id] = known[c.id]
        for cid in set(self.last) - ids:  # removed by a reload
            self.last.pop(cid)
            self.hosts.pop(cid, None)
        checks_now = stale_checks(checks, self.last, now)
        hosts_now = stale_hosts(checks_now, self.hosts)
        by_id = {c.id: c for c in checks}
        by_check = {}  # stale check -> the hosts it makes stale now, each under its first check
        for host in sorted(set(hosts_now) - set(self.stale)):
            cid = min(c for c in checks_now if host in self.hosts.get(c, ()))
            by_check.setdefault(cid, []).append(host)
        for cid, hosts in sorted(by_check.items()):
            log_hosts(logging.WARNING, hosts, "%s: stale: check %s has had no result for %.1fs "
                      "(more than 2 x interval + timeout = %.1fs)", "%d hosts stale (%s): check "
                      "%s has had no result for %.1fs (more than 2 x interval + timeout = %.1fs)",
                      cid, checks_now[cid], limit(by_id[cid]))
        log_hosts(logging.INFO, sorted(set(self.stale) - set(hosts_now)), "%s: no longer stale",
                  "%d hosts no longer stale (%s)")
        for cid in sorted(set(checks_now) - set(self.checks)):
            if not self.hosts.get(cid):
                log.warning("check %s: stale: no result for %.1fs (more than 2 x interval + "
                            "timeout = %.1fs)", cid, checks_now[cid], limit(by_id[cid]))
        for cid in sorted(set(self.checks) - set(checks_now)):
            if not self.hosts.get(cid) and cid in ids:
                log.info("check %s: no longer stale", cid)
        self.checks, self.stale = checks_now, hosts_now
        return bool(checks_now)

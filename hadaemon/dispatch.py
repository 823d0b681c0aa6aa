"""Checks to workers and results back: the scheduler's due checks go to idle workers of the
pool, and what comes back is validated before it reaches the commit rule.

The supervisor trusts no worker: names are validated again and a status must be a declared one.
A worker that dies during a check, or holds it past its timeout plus STALL_MARGIN (stopped,
stuck in the kernel, broken), is replaced and its check reported as failed: without this its
check would never run again, and nothing would say so.
"""

import logging
import os
import selectors
import signal
import time

from . import leftovers, protocol
from .backoff import Backoff
from .names import valid_host, valid_status
from .pool import Pool
from .ratelog import RateLog
from .selection import unregister
from .sshmaster import Masters
from .statuses import undeclared

log = logging.getLogger("hadaemon")
STALL_MARGIN = 5.0  # seconds past a check's timeout before its worker counts as stalled


class Dispatcher:
    def __init__(self, home, sel, config, scheduler, finished, errors, stopping):
        self.home, self.sel, self.scheduler = home, sel, scheduler
        self.config, self.stopping = config, stopping  # () -> the running config; () -> bool
        # finished(meta, results, read_at, failed=): a check's end; failed: no usable result
        self.finished = finished
        self.errors = errors  # the loop's RateLog
        d = config().daemon
        self.pool = Pool(home.root, d.workers, d.max_jobs)
        self.pool_retry = Backoff()
        self.check_errors = RateLog(log)  # per check id
        self.jobs_sent = 0
        self.jobs = protocol.Jobs()
        # check id -> (the known statuses, the results' bytes, them validated) of its last run:
        # a run that says the same is not decoded and validated again.
        self.last_results = {}
        self.masters = Masters(home)  # the multiplexed connections of [ssh:HOST] scopes

    def fill(self):
        """Bring the pool back to size. Every turn of the loop does, not only a worker's death:
        a moment without descriptors or memory then costs checks for that moment only."""
        now = time.monotonic()
        if self.stopping() or not self.pool.missing() or not self.pool_retry.ready(now):
            return
        try:
            while self.pool.missing():
                w = self.pool.spawn()
                self.sel.register(w.sock, selectors.EVENT_READ, self._on_worker)
        except OSError as e:
            self.pool_retry.failed(now)
            self.errors.report("workers", logging.ERROR,
                               f"cannot start a worker: {e}; checks wait, trying again")
            return
        self.pool_retry.succeeded()
        self.errors.clear("workers", f"workers started again: {len(self.pool.workers)} run")

    def timeout(self, now, longest):
        """How long the loop may wait for events: the next check's deadline, if a worker is
        idle to run it."""
        deadline = self.scheduler.next_deadline()
        if deadline is not None and self.pool.idle():
            return min(longest, max(0.0, deadline - now))
        return longest

    def dispatch(self):
        if self.stopping():
            return
        idle = self.pool.idle()
        if not idle:
            return
        d = self.config().daemon
        now = time.monotonic()
        for check, due, run in self.scheduler.pop_due(now):
            if check.remote:
                self.masters.ensure(check.remote, now)
            w = idle.pop()
            self.jobs_sent += 1
            job, data = self.jobs.job(check, d, self.jobs_sent)
            if not self.pool.send(w, job, data, {"check": check.id, "due": due, "run": run,
                                           "spec": check, "sent": now,
                                           "deadline": now + job["timeout"] + STALL_MARGIN}):
                self.scheduler.push_back(check, due)
            if not idle:
                break

    def expire_stalled(self):
        now = time.monotonic()
        for w in list(self.pool.workers.values()):
            if w.job is not None and now >= w.meta["deadline"]:
                self._stalled(w)

    def _stalled(self, w):
        meta = w.meta
        self.pool.signal(w, signal.SIGKILL)
        # Forgotten now, not when reaped: a worker stuck in D state may take long to die, and
        # the pool must not wait for it.
        unregister(self.sel, w.sock)
        self.pool.lost(w.pid)
        try:  # the check runs in its own session and would outlive its worker
            killed = leftovers.kill(self.home.root, check=meta["check"])
        except OSError:
            killed = []
        why = (f"worker stalled: no result {w.job['timeout'] + STALL_MARGIN:g}s after the "
               f"check started (timeout {w.job['timeout']:g}s)")
        log.error("check %s: %s; killed worker %d%s", meta["check"], why, w.pid,
                  f" and the check's process(es) {' '.join(map(str, killed))}" if killed else "")
        self.finished(meta, protocol.failed(meta["spec"].host, why), failed=True)

    def exited(self, pid, status, how):
        """Reaped pid: if it was a worker, forget it and settle its check; True if it was (or
        an ssh master)."""
        w = self.pool.workers.get(pid)
        if w is None:
            return self.masters.exited(pid, status, time.monotonic())
        # It may have answered, then left (recycled) before the loop read the answer: read
        # it before the socket is closed.
        data = self.pool.receive(w) if w.job is not None else None
        unregister(self.sel, w.sock)
        self.pool.lost(pid)
        if w.job is None:
            if not self.stopping() and os.WIFSIGNALED(status):
                log.warning("worker %d %s", pid, how)
        elif self.stopping():
            pass  # cut short by our own SIGTERM: no observation, and nothing new commits
        elif data:
            self._on_result(w, data)
        else:
            meta = w.meta
            log.error("check %s: worker %d %s while running it", meta["check"], pid, how)
            self.finished(meta, protocol.failed(meta["spec"].host, f"worker {how}"),
                          failed=True)
        return True

    def _on_worker(self, sock, events):
        w = next((w for w in self.pool.workers.values() if w.sock is sock), None)
        if w is None:
            return
        data = self.pool.receive(w)
        if data is False:
            return
        if data is None:
            self.sel.unregister(sock)  # EOF: the worker left; reaping replaces it
            return
        self._on_result(w, data)

    def _on_result(self, w, data):
        meta = self.pool.finished(w)
        try:
            message, raw = protocol.split_result(data)
            results = self._checked_results(meta["check"], raw)
        except protocol.Rejected as e:
            # An undeclared status the worker let through (a reload since it took the job):
            # rejected like any unusable output, the check's error logged as such.
            results = protocol.failed(meta["spec"].host, str(e))
            message = {"error": str(e), "read_at": message.get("read_at")}
        except (ValueError, KeyError, TypeError) as e:
            log.error("check %s: garbled message from worker %d: %s", meta["check"], w.pid, e)
            results = protocol.failed(meta["spec"].host, "garbled worker message")
            message = {}
        self._log_check_error(meta["check"], message.get("error"))
        self.finished(meta, results, message.get("read_at"),
                      failed=bool(message.get("error")) or not message)

    def _checked_results(self, check_id, raw):
        """The results in raw, validated, or the last run's if raw is the same bytes under the
        same declared statuses (a reload makes them another set)."""
        known = self.config().daemon.known_statuses
        last = self.last_results.get(check_id)
        if last and last[0] is known and last[1] == raw:
            return last[2]
        items = protocol.decode_list(raw)
        results = [checked(r, known) for r in items]
        self.last_results[check_id] = (known, raw, results)
        return results

    def forget(self, check_ids):
        """A reload: keep what is kept of these checks only."""
        self.jobs.forget(check_ids)
        self.last_results = {c: v for c, v in self.last_results.items() if c in check_ids}

    def _log_check_error(self, check_id, error):
        """Log a check's error when it changes, then at most once a minute: a check failing every
        second must not bury everything else in the log."""
        if error:
            self.check_errors.report(check_id, logging.WARNING, f"check {check_id}: {error}")
        else:
            self.check_errors.clear(check_id, f"check {check_id}: works again")


def checked(r, known):
    """A worker's result, validated again before it touches the table; protocol.Rejected
    says which status is not declared."""
    if not (isinstance(r, dict) and valid_host(r.get("host")) and valid_status(r.get("status"))
            and isinstance(r.get("details", {}), dict)):
        raise ValueError("invalid result in worker message")
    if r["status"] not in known:
        raise protocol.Rejected(undeclared(r["status"], known))
    return {"host": r["host"], "status": r["status"], "details": r.get("details", {})}

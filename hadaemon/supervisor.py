"""The loop that wires it together: scheduler -> workers -> commit rule -> table + journal ->
runner.

The loop never blocks: one selector over the worker sockets, the runner socket, the control socket
and a wakeup pipe; signal handlers only queue the signal (set_wakeup_fd makes select return).
Children are reaped with waitpid(-1, WNOHANG) and replaced. The supervisor is the only writer
of the host table.
"""

import json
import logging
import os
import selectors
import signal
import sqlite3
import time
from dataclasses import replace

from . import actions, config as configmod, history, leftovers, logsetup, notify, protocol, runner
from .backoff import Backoff
from .commit import Committer, Transition
from .control import Server
from .fork import open_stdio
from .inifile import ConfigError
from .journal import Journal
from .names import UNKNOWN, valid_host, valid_status
from .pool import Pool
from .ratelog import RateLog
from .scheduler import Scheduler
from .statuses import undeclared
from .stale import Freshness
from .store import open_store
from .table import Table

log = logging.getLogger("hadaemon")
FLUSH_EVERY = 1.0  # seconds between batched writes of observations (statuses are written at once)
SEEN_EVERY = 60.0  # seconds between writes of hosts whose results only confirmed the last one
RUNNER_RESPAWN_DELAY = 1.0  # after a death; doubled while runners keep dying young
RUNNER_RESPAWN_MOST = 60.0
RUNNER_YOUNG = 60.0  # a runner that dies sooner counts as a crash loop
STALL_MARGIN = 5.0  # seconds past a check's timeout before its worker counts as stalled
ERROR_PAUSE = 0.1  # seconds the loop rests after a turn with an error: it never spins
EXIT_SOFTWARE = 70  # sysexits' EX_SOFTWARE: the loop itself failed
MAX_CLIENTS = 64  # control connections served at once; a client holding many cannot starve workers
ACCEPT_BATCH = 16  # clients accepted in one turn of the loop
HISTORY_MAX = 100000  # entries one history request may ask for (the CLI allows as many)
WATCH_EVERY = 0.5  # seconds between two looks for stale checks (and STATUS= updates)


class Supervisor:
    def __init__(self, home, config, foreground):
        self.home, self.config, self.foreground = home, config, foreground
        self.signals = []
        self.stopping = False
        self.started = time.time()
        self.jobs_sent = 0
        self.dirty = set()  # hosts whose observation changed: written within FLUSH_EVERY
        self.seen = set()  # hosts only seen again (last_seen moved): written within SEEN_EVERY
        self.next_seen = 0.0
        self.check_errors = RateLog(log)  # per check id
        self.errors = RateLog(log)  # the loop's own: internal errors, resources it lacked
        self.pool_retry = Backoff()
        self.accept_retry = Backoff()
        self.runner_retry = Backoff()  # the runner could not be started
        self.runner_deaths = Backoff(RUNNER_RESPAWN_DELAY, RUNNER_RESPAWN_MOST)
        self.runner_started = time.monotonic()
        self.next_flush = 0.0
        self.record_error = None  # the last write that failed, for status; None once one works
        self.runner_pid = None
        self.runner_sock = None
        self.paused = None  # while paused: {"since", "statuses" at pause time}
        self.manual_jobs = {}  # job id -> host held by a manual transition until the job ends
        self.freshness = Freshness()
        self.systemd = notify.Reporter(notify.Notifier.from_environment())
        self.next_watch = 0.0
        self.pruned_below = 0  # jobs under this id are pruned from the journal
        self.prune_due = True  # a job was queued or ended since the last prune

    # -- start and stop ---------------------------------------------------------------------

    def setup(self):
        open_stdio()  # every child inherits 0-2 open, whether started by run or start
        self.home.make_var()
        # No fsync per commit here: the runner's, before each command, covers ours (store.py).
        store, moved = open_store(self.home.state_db, self.config.daemon.corrupt_table,
                                  fsync_each=False)
        if moved:
            log.error("%s", moved)
        self.store, self.table, self.journal = store, Table(store), Journal(store)
        entries, broken = self.table.items()
        for b in broken:
            log.error("state table entry unreadable, dropped: %s", b)
        self.entries = dict(entries)
        now, wall = time.monotonic(), time.time()
        self.committer = Committer(
            {h: e["status"] for h, e in entries},
            {h: now - max(0.0, wall - e.get("since", wall)) for h, e in entries})
        self.scheduler = Scheduler(self.config.checks, now)
        self.paused = self._read_paused()
        # Jobs left open by an earlier run; only those may be superseded when the runner starts.
        self.resume_upto = self.journal.last_id()
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, self._queue_signal)
        self.sel.register(self.wake_r, selectors.EVENT_READ, self._on_wakeup)
        d = self.config.daemon
        self.control = Server(self.home.control_socket, d.socket_group)
        self.sel.register(self.control.sock, selectors.EVENT_READ, self._on_accept)
        # The pidfile lock makes this the only daemon of this home: any check of it still
        # running was left by one killed before (its hung checks would run for ever).
        left = leftovers.kill(self.home.root)
        if left:
            log.warning("killed %d process(es) that checks of a killed daemon left running: %s",
                        len(left), " ".join(map(str, left)))
        self.pool = Pool(self.home.root, d.workers, d.max_jobs)
        self._fill_pool()
        self._spawn_runner()
        log.info("hadaemon %d started in %s: %d check(s), %d worker(s), %d host(s) known",
                 os.getpid(), self.home.root, len(self.config.checks), d.workers, len(entries))
        self._warn()

    def run(self):
        self.setup()
        return self.serve()

    def serve(self):
        """Run the loop until a stop; the exit status: 0, or EXIT_SOFTWARE if the loop itself
        failed (logged with its traceback, never to be mistaken for a clean stop)."""
        code = 0
        try:
            while not self.stopping:
                self.step()
        except BaseException:
            log.critical("internal error: the loop failed; stopping", exc_info=True)
            code = EXIT_SOFTWARE
        try:
            self.shutdown()
        except BaseException:
            log.critical("internal error while stopping", exc_info=True)
            code = EXIT_SOFTWARE
        if code:
            log.critical("exiting with status %d after an internal error", code)
        return code

    def step(self):
        failed = False
        for key, events in self.sel.select(self._poll_timeout()):
            failed |= not self._guarded(key.data, key.fileobj, events)
        for chore in self._chores():
            failed |= not self._guarded(chore)
        now = time.monotonic()
        if now >= self.next_seen:
            self.dirty |= self.seen  # a daemon at rest writes (and fsyncs) once a minute
            self.seen.clear()
            self.next_seen = now + SEEN_EVERY
        if now >= self.next_flush:
            failed |= not self._guarded(self._flush)
            self.next_flush = now + FLUSH_EVERY
        if failed:  # the same error may come back at once (a readable socket): do not spin
            time.sleep(ERROR_PAUSE)

    def _chores(self):
        """What every turn of the loop does besides answering events, in this order."""
        return (self._handle_signals, self._reap, self._expire_stalled, self._fill_pool,
                self._dispatch, self._drop_stalled_clients, self._resume_accepting,
                self._respawn_runner, self._watch)

    def _guarded(self, function, *args):
        """A bug in one event or chore must not take the daemon down with it; its traceback
        is logged, then once a minute while it repeats. True if it went through."""
        try:
            function(*args)
            return True
        except Exception as e:
            name = function.__name__
            self.errors.report(("internal", name, type(e)), logging.ERROR,
                               f"internal error in {name} ({type(e).__name__}); carrying on",
                               exc_info=True)
            return False

    def _watch(self):
        """Look for stale checks; tell systemd how things are, and feed its watchdog only while
        the loop turns and no check is stale."""
        now = time.monotonic()
        summary = None
        if now >= self.next_watch:
            self.freshness.update(self.config.checks, self.entries, now)
            self.next_watch = now + WATCH_EVERY
            if self.systemd.enabled and not self.stopping:
                summary = self._summary()
        self.systemd.tick(now, not self.freshness.checks, self.stopping, summary)

    def _summary(self):
        """STATUS= for systemctl status: one line."""
        f = self.freshness
        stale = f"{len(f.stale)} stale" + (f" ({len(f.checks)} check(s) without results)"
                                           if f.checks else "")
        return (f"{len(self.entries)} host(s), {stale}, {len(self.journal.open_jobs())} "
                f"sequence(s) queued" + (", paused" if self.paused is not None else ""))

    def shutdown(self):
        log.info("stopping: no new checks or actions")
        self.stopping = True
        self.pool.stop()
        helpers = self._helpers()
        for pid, sock in helpers.items():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            sock.close()  # EOF wakes a helper that waits for work
        grace = self.config.daemon.grace
        deadline = time.monotonic() + grace + 5.0
        while (self.pool.workers or self._helpers()) and time.monotonic() < deadline:
            self._reap(block_for=0.05)
        for pid in list(self.pool.workers) + list(self._helpers()):
            log.warning("child %d did not stop in time: SIGKILL", pid)
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ChildProcessError, ProcessLookupError):
                pass
        self.dirty |= self.seen
        self._flush()
        self.control.close()
        self.store.close()
        signal.set_wakeup_fd(-1)
        os.close(self.wake_r)
        os.close(self.wake_w)
        log.info("stopped")

    # -- signals and children ---------------------------------------------------------------

    def _queue_signal(self, signum, frame):
        self.signals.append(signum)

    def _on_wakeup(self, fd, events):
        try:
            while os.read(fd, 4096):
                pass
        except BlockingIOError:
            pass

    def _handle_signals(self):
        while self.signals:
            sig = self.signals.pop(0)
            if sig in (signal.SIGTERM, signal.SIGINT):
                log.info("got %s", signal.Signals(sig).name)
                self.stopping = True
            elif sig == signal.SIGHUP:
                self.reload()

    def _reap(self, block_for=0.0):
        if block_for:
            time.sleep(block_for)
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            how = _exit_text(status)
            if self._helper_exited(pid, how):
                continue
            w = self.pool.workers.get(pid)
            if w is None:
                continue
            # It may have answered, then left (recycled) before the loop read the answer: read
            # it before the socket is closed.
            data = self.pool.receive(w) if w.job is not None else None
            if _registered(self.sel, w.sock):
                self.sel.unregister(w.sock)
            self.pool.lost(pid)
            if w.job is None:
                if not self.stopping and os.WIFSIGNALED(status):
                    log.warning("worker %d %s", pid, how)
            elif self.stopping:
                pass  # cut short by our own SIGTERM: no observation, and nothing new commits
            elif data:
                self._on_result(w, data)
            else:
                meta = w.meta
                log.error("check %s: worker %d %s while running it", meta["check"], pid, how)
                self._finish_check(meta, protocol.failed(meta["spec"].host, f"worker {how}"))

    def _helpers(self):
        """The long-lived children besides the workers, {pid: socket}, for shutdown."""
        return {self.runner_pid: self.runner_sock} if self.runner_pid else {}

    def _helper_exited(self, pid, how):
        """Reaped pid: if it is a helper, forget it and plan its successor; True if it was."""
        if pid != self.runner_pid:
            return False
        self.runner_pid = None
        self._close(self.runner_sock)
        if not self.stopping:
            now = time.monotonic()
            if now - self.runner_started > RUNNER_YOUNG:
                self.runner_deaths.succeeded()  # not a crash loop: the next one starts soon
            delay = self.runner_deaths.failed(now)
            log.error("action runner %d %s; a new one resumes the journal in %gs", pid, how,
                      delay)
        return True

    def _close(self, sock):
        if _registered(self.sel, sock):
            self.sel.unregister(sock)
        sock.close()

    def _fill_pool(self):
        """Bring the pool back to size. Every turn of the loop does, not only a worker's death:
        a moment without descriptors or memory then costs checks for that moment only."""
        now = time.monotonic()
        if self.stopping or not self.pool.missing() or not self.pool_retry.ready(now):
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

    def _spawn_runner(self):
        self.runner_pid, self.runner_sock = runner.spawn(self.home.root, self._runner_settings())
        self.sel.register(self.runner_sock, selectors.EVENT_READ, self._on_runner)

    def _respawn_runner(self):
        """A runner that died is replaced, after a delay; one that cannot be started (no
        descriptors, no memory) is tried again with back-off: the journal waits, nothing is
        lost."""
        now = time.monotonic()
        if (self.runner_pid is not None or self.stopping or not self.runner_retry.ready(now)
                or not self.runner_deaths.ready(now)):
            return
        try:
            self._spawn_runner()
        except OSError as e:
            self.runner_retry.failed(now)
            self.errors.report("runner", logging.ERROR,
                               f"cannot start the action runner: {e}; actions wait, trying again")
            return
        self.runner_started = now
        self.runner_retry.succeeded()
        self.errors.clear("runner", f"action runner {self.runner_pid} started")

    def _runner_settings(self):
        d = self.config.daemon
        return {"log": d.log, "log_level": d.log_level, "foreground": self.foreground,
                "grace": d.grace, "user": d.user, "action_timeout": d.action_timeout,
                "resume_upto": self.resume_upto, "programs": configmod.programs(self.config)}

    def _on_runner(self, sock, events):
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data.startswith(b"done "):  # a job's sequence has ended
            self.prune_due = True
            host = self.manual_jobs.pop(int(data.split()[1]), None)
            if host:
                self.committer.release(host)
            return
        if _registered(self.sel, sock):  # EOF: the runner is gone, _reap handles it
            self.sel.unregister(sock)

    def _wake_runner(self, data=b"wake"):
        if self.runner_pid:
            try:
                self.runner_sock.send(data)
            except (BlockingIOError, OSError):
                pass  # the runner is busy or restarting: it reads the journal anyway

    # -- checks -----------------------------------------------------------------------------

    def _poll_timeout(self):
        now = time.monotonic()
        timeout = min(1.0, max(0.0, self.next_flush - now))
        deadline = self.scheduler.next_deadline()
        if deadline is not None and self.pool.idle():
            timeout = min(timeout, max(0.0, deadline - now))
        return timeout

    def _dispatch(self):
        if self.stopping:
            return
        idle = self.pool.idle()
        if not idle:
            return
        d = self.config.daemon
        now = time.monotonic()
        for check, due, run in self.scheduler.pop_due(now):
            w = idle.pop()
            self.jobs_sent += 1
            job = protocol.check_job(check, d, self.jobs_sent)
            if not self.pool.send(w, job, {"check": check.id, "due": due, "run": run,
                                           "spec": check, "sent": now,
                                           "deadline": now + job["timeout"] + STALL_MARGIN}):
                self.scheduler.push_back(check, due)
            if not idle:
                break

    def _expire_stalled(self):
        """A worker that holds a job past its check's timeout (plus a margin) is stopped, stuck
        in the kernel, or broken: kill it and its check, report the check, replace the worker.
        Without this its check would never run again, and nothing would say so."""
        now = time.monotonic()
        for w in list(self.pool.workers.values()):
            if w.job is not None and now >= w.meta["deadline"]:
                self._stalled(w)

    def _stalled(self, w):
        meta = w.meta
        self.pool.signal(w, signal.SIGKILL)
        # Forgotten now, not when reaped: a worker stuck in D state may take long to die, and
        # the pool must not wait for it.
        if _registered(self.sel, w.sock):
            self.sel.unregister(w.sock)
        self.pool.lost(w.pid)
        try:  # the check runs in its own session and would outlive its worker
            killed = leftovers.kill(self.home.root, check=meta["check"])
        except OSError:
            killed = []
        why = (f"worker stalled: no result {w.job['timeout'] + STALL_MARGIN:g}s after the "
               f"check started (timeout {w.job['timeout']:g}s)")
        log.error("check %s: %s; killed worker %d%s", meta["check"], why, w.pid,
                  f" and the check's process(es) {' '.join(map(str, killed))}" if killed else "")
        self._finish_check(meta, protocol.failed(meta["spec"].host, why))

    def _on_worker(self, sock, events):
        w = next((w for w in self.pool.workers.values() if w.sock is sock), None)
        if w is None:
            return
        data = self.pool.receive(w)
        if data is False:
            return
        if data is None:
            self.sel.unregister(sock)  # EOF: the worker left; _reap replaces it
            return
        self._on_result(w, data)

    def _on_result(self, w, data):
        meta = self.pool.finished(w)
        try:
            message = protocol.decode(data)
            results = [_checked(r, self.config.daemon.known_statuses) for r in message["results"]]
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
        self._finish_check(meta, results, message.get("read_at"))

    def _log_check_error(self, check_id, error):
        """Log a check's error when it changes, then at most once a minute: a check failing every
        second must not bury everything else in the log."""
        if error:
            self.check_errors.report(check_id, logging.WARNING, f"check {check_id}: {error}")
        else:
            self.check_errors.clear(check_id, f"check {check_id}: works again")

    def _finish_check(self, meta, results, read_at=None):
        now = time.monotonic()
        self.scheduler.done(meta["check"], meta["run"], meta["due"], now)
        if self.scheduler.get(meta["check"]) is None:
            # A reload removed it while it ran: it no longer votes, and must not bring back a
            # host forgotten since.
            log.info("check %s: result dropped: the check was removed by a reload",
                     meta["check"])
            return
        self.freshness.result(meta["check"], [r["host"] for r in results], now)
        check = meta["spec"]
        transitions, notes = self.committer.observe(check, results, now)
        for n in notes:
            (log.warning if n.kind == "conflict" else log.info)("%s: %s", n.host, n.text)
        wall = time.time()
        for r in results:
            entry = self.entries.setdefault(r["host"], {"status": "unknown", "since": wall})
            same = (entry.get("observed"), entry.get("check"), entry.get("details")) == (
                r["status"], check.id, r["details"])
            entry.update(observed=r["status"], last_seen=wall, check=check.id,
                         details=r["details"])
            (self.seen if same else self.dirty).add(r["host"])
        for t in transitions:
            self.commit(t, now, read_at)

    # -- transitions ------------------------------------------------------------------------

    def commit(self, transition, now, observed_mono=None):
        """Write the status and queue its actions in one transaction, then tell the runner."""
        try:
            with self.store.transaction(durable=transition.manual):
                job, steps, entry = self._enqueue(transition, observed_mono)
        except sqlite3.Error as e:
            self._cannot_record(f"{transition.host}: {transition.source} -> {transition.target}",
                                e, "not committed, actions not started; the next result tries "
                                "again")
            return None
        self._recorded()
        self.committer.apply(transition, now)
        self.entries[transition.host] = entry
        run = self._queued(transition, job, steps)
        if run and transition.manual:
            # Its actions make the checks agree: hold contrary results until the sequence
            # ends (the runner says so) or could have ended by its timeouts.
            self.committer.hold(transition.host,
                                now + sum(s["timeout"] for s in steps) + FLUSH_EVERY)
            self.manual_jobs[job] = transition.host
        if run:
            self._wake_runner()
        return job

    def _enqueue(self, transition, observed_mono=None, note=None, write_table=True, plan=None):
        """Inside a transaction: the table row (unless write_table) and the job; returns
        (job id, its steps, the table entry). plan: the transition's, if made already."""
        steps, env = plan or self._plan(transition)
        wall = time.time()
        entry = dict(self.entries.get(transition.host, {}), status=transition.target, since=wall)
        if write_table:
            self.table.set(transition.host, entry)
        job = self.journal.enqueue(transition, steps, env, wall, observed_mono,
                                   paused=self.paused is not None, note=note)
        self.prune_due = True
        return job, steps, entry

    def _plan(self, transition):
        d = self.config.daemon
        return actions.plan(self.config.sections, transition, d.action_timeout, d.on_failure)

    def _queued(self, transition, job, steps):
        """Log a recorded transition; True if its actions are to run now."""
        run = bool(steps) and self.paused is None
        log.info("transition %s: %s -> %s%s, job #%d with %d command(s)%s", transition.host,
                 transition.source, transition.target, " (manual)" if transition.manual else "",
                 job, len(steps), " (paused: not run)" if steps and not run else "")
        return run

    def _cannot_record(self, what, error, consequence):
        self.record_error = str(error)
        self.errors.report("record", logging.ERROR, f"cannot record {what} in "
                           f"{self.home.state_db} ({error}): {consequence}", changes=False)

    def _recorded(self):
        """A write went through: whatever could not be recorded before is over."""
        self.record_error = None
        self.errors.clear("record", f"recording in {self.home.state_db} works again")

    def _flush(self):
        if self.prune_due:
            self._prune()
        if not self.dirty:
            return
        try:
            with self.store.transaction():
                for host in self.dirty:
                    self.table.set(host, self.entries[host])
        except sqlite3.Error as e:
            self._cannot_record("results", e, "checks go on")
            return
        self._recorded()
        self.dirty.clear()

    def _prune(self):
        """Old finished jobs go, at most once per flush (FLUSH_EVERY), off the path from a
        result to its commit, and only after a job was queued or ended since the last time (a
        daemon at rest does not ask); a failure only delays it."""
        try:
            self.pruned_below = self.journal.prune(self.config.daemon.keep_jobs,
                                                   self.pruned_below)
        except sqlite3.Error as e:
            self.errors.report("prune", logging.WARNING, f"cannot prune old jobs from "
                               f"{self.home.state_db} ({e}); tried again every {FLUSH_EVERY:g}s",
                               changes=False)
            return
        self.prune_due = False
        self.errors.clear("prune")

    # -- reload and control -----------------------------------------------------------------

    def reload(self):
        try:
            new = configmod.load(self.home)
        except ConfigError as e:
            log.error("reload refused, keeping the running config: %s", "; ".join(e.problems))
            return {"ok": False, "error": "config invalid, running config kept",
                    "problems": e.problems}
        new, later = _keep_start_only(self.config, new)
        d = new.daemon
        try:  # the one step that can fail comes first, so a failure changes nothing
            logsetup.configure(self.home, d.log, d.log_level, self.foreground)
        except OSError as e:
            log.error("reload refused, keeping the running config: log %s: %s", d.log, e)
            return {"ok": False, "error": f"cannot open log {d.log}: {e}; running config kept"}
        for what in later:
            log.warning("reload: %s changed: it takes effect at the next restart", what)
        old_ids = {c.id for c in self.config.checks}
        self.config = new
        for cid in old_ids - {c.id for c in new.checks}:
            self.committer.forget_check(cid)
        self.scheduler.replace(new.checks, time.monotonic())
        self.pool.resize(d.workers, d.max_jobs)
        self._fill_pool()
        self._wake_runner(json.dumps(self._runner_settings()).encode())
        log.info("reloaded: %d check(s), %d action section(s)", len(new.checks),
                 len(new.sections))
        self._warn()
        return {"ok": True, "checks": len(new.checks), "sections": len(new.sections),
                "restart_needed": later}

    def _warn(self):
        """What the config allows but is likely a mistake (no actions.conf): once per load."""
        for warning in self.config.warnings:
            log.warning("%s", warning)

    def _on_accept(self, sock, events):
        # Several per turn: a burst of clients must not wait one loop turn each.
        for _ in range(ACCEPT_BATCH):
            if not self._accept_one() or len(self.control.conns) >= MAX_CLIENTS:
                break
        if len(self.control.conns) >= MAX_CLIENTS and _registered(self.sel, self.control.sock):
            # Descriptors are for workers first: more clients wait in the listen queue.
            self.sel.unregister(self.control.sock)
            self.errors.report("clients", logging.WARNING,
                               f"control socket: {MAX_CLIENTS} clients at once; the next wait")

    def _accept_one(self):
        """Accept a pending client; False when none was (none pending, refused, or no
        descriptor: then the socket is left unwatched for the back-off)."""
        try:
            c = self.control.accept()
        except OSError as e:
            # Out of descriptors (or memory): the connection stays queued, so the socket stays
            # readable and select would return at once for ever. Stop listening for a while;
            # stalled clients are dropped meanwhile, which frees descriptors.
            self.sel.unregister(self.control.sock)
            self.accept_retry.failed(time.monotonic())
            self.errors.report("accept", logging.ERROR,
                               f"control socket: cannot accept a connection: {e}; "
                               "not listening for a moment")
            return False
        if c is None:
            return False
        if self.accept_retry.delay:
            self.accept_retry.succeeded()
            self.errors.clear("accept", "control socket: accepting connections again")
        self.sel.register(c.sock, selectors.EVENT_READ, self._on_control)
        return True

    def _resume_accepting(self):
        if (not _registered(self.sel, self.control.sock) and not self.stopping
                and len(self.control.conns) < MAX_CLIENTS
                and self.accept_retry.ready(time.monotonic())):
            self.sel.register(self.control.sock, selectors.EVENT_READ, self._on_accept)
            self.errors.clear("clients")

    def _drop_stalled_clients(self):
        for c in self.control.stalled(time.monotonic()):
            self._drop_client(c)

    def _drop_client(self, c):
        # Out of the selector before its fd is closed: a closed fd left registered would keep
        # the next client given that number from being registered.
        self.sel.unregister(c.sock)
        self.control.drop(c)

    def _on_control(self, sock, events):
        c = self.control.conns.get(sock)
        if c is None:
            return
        if events & selectors.EVENT_WRITE:
            if c.write():
                self._drop_client(c)
            return
        request = c.read()
        if request is None:
            return
        if request == "eof":
            self._drop_client(c)
            return
        try:
            answer = self.answer(request)
        except Exception as e:  # the client gets an answer, whatever the bug
            self.errors.report(("answer", type(e)), logging.ERROR,
                               f"internal error answering {str(request.get('cmd'))[:40]!r}",
                               exc_info=True)
            answer = {"ok": False, "error": f"internal error: {e}"}
        c.reply(answer)
        self.sel.modify(sock, selectors.EVENT_WRITE, self._on_control)

    def answer(self, request):
        cmd = request.get("cmd")
        if "error" in request:
            return {"ok": False, "error": request["error"]}
        if cmd == "status":
            return self.status()
        if cmd == "history":
            limit, host = request.get("limit", 100), request.get("host")
            if not (isinstance(limit, int) and 0 < limit <= HISTORY_MAX) or not (
                    host is None or valid_host(host)):
                return {"ok": False, "error": "bad history request: limit must be 1 to "
                        f"{HISTORY_MAX}, host a host name"}
            return {"ok": True, "history": history.read(self.store, limit, host)}
        if cmd == "reload":
            return self.reload()
        if cmd == "ping":
            return {"ok": True, "pid": os.getpid()}
        if cmd in ("pause", "resume"):
            return self.pause() if cmd == "pause" else self.resume()
        if cmd == "transition":
            return self.manual(request.get("host"), request.get("status"),
                               request.get("new") is True)
        if cmd == "forget":
            return self.forget(request.get("host"))
        return {"ok": False, "error": f"unknown command {cmd!r}"}

    # -- maintenance mode and manual transitions -------------------------------------------

    def _read_paused(self):
        """var/paused holds the maintenance state, so it survives a restart and is plain to see."""
        try:
            return json.loads(self.home.paused.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            log.error("%s unreadable (%s): staying paused to be safe", self.home.paused, e)
            return self._pause_record()

    def _pause_record(self):
        """What resume needs: when the pause began and every committed status then."""
        return {"since": time.time(), "statuses": dict(self.committer.committed)}

    def pause(self):
        if self.paused is not None:
            return {"ok": True, "note": "already paused"}
        paused = self._pause_record()
        tmp = self.home.paused.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(paused))
            os.replace(tmp, self.home.paused)
        except OSError as e:
            return {"ok": False, "error": f"cannot write {self.home.paused}: {e.strerror}"}
        self.paused = paused
        log.warning("paused: checks go on, no action fires until `hadaemon resume`")
        return {"ok": True}

    def resume(self):
        """Fire what changed during the pause. The jobs are committed before var/paused goes: a
        resume that cannot record them stays paused and says so, and can simply be asked again."""
        if self.paused is None:
            return {"ok": False, "error": "not paused"}
        fire = []
        if self.config.daemon.on_resume == "last":
            before = self.paused["statuses"]
            fire = [Transition(host, before.get(host, UNKNOWN), status,
                               dict(self.committer.committed))
                    for host, status in sorted(self.committer.committed.items())
                    if before.get(host, UNKNOWN) != status]
            # A net change with no section has nothing to fire: its transitions are in
            # history already (skipped while paused), and one entry is enough.
            fire = [(t, plan) for t, plan in ((t, self._plan(t)) for t in fire) if plan[0]]
        paused, self.paused = self.paused, None  # the jobs are queued, not skipped
        try:
            with self.store.transaction(durable=True):
                jobs = [self._enqueue(t, note="fired on resume", write_table=False, plan=plan)
                        for t, plan in fire]
        except sqlite3.Error as e:
            self.paused = paused
            self._cannot_record("the sequences to fire on resume", e, "still paused")
            return {"ok": False, "error": f"cannot record the sequences to fire in "
                    f"{self.home.state_db} ({e}): still paused, nothing fired; resume again "
                    f"once it can be written"}
        if fire:
            self._recorded()
        for (t, _), (job, steps, _) in zip(fire, jobs):
            self._queued(t, job, steps)
        try:
            self.home.paused.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            # The jobs wait (the runner starts none while var/paused exists); a second resume
            # must not queue them again: the pause now starts from the statuses just fired.
            self.paused = dict(paused, statuses=dict(self.committer.committed))
            return {"ok": False, "error": f"cannot remove {self.home.paused}: {e.strerror}; "
                    f"still paused, the sequences fired wait for the next resume"}
        fired = [f"{t.host}: {t.source} -> {t.target}" for t, _ in fire]
        log.warning("resumed; fired on resume (on_resume = %s): %s",
                    self.config.daemon.on_resume, ", ".join(fired) or "nothing")
        self._wake_runner()  # jobs queued before the pause waited for this
        return {"ok": True, "fired": fired}

    def refuse_transition(self, host, status):
        """Why a manual transition to status is refused out of hand, or None."""
        if not valid_host(host) or not valid_status(status):
            return f"invalid host or status: {host!r} {status!r}"
        if status not in self.config.daemon.known_statuses:
            return undeclared(status, self.config.daemon.known_statuses)
        return None

    def manual(self, host, status, new=False):
        """A status by hand. For a host no check reports only if asked for (new): a typo would
        otherwise stay in the table and in every %STATUS% for good."""
        refused = self.refuse_transition(host, status)
        if refused:
            return {"ok": False, "error": refused}
        if not new and not self._reporting(host):
            return unreported(host, status, "no check reports")
        if self.committer.status(host) == status:
            return {"ok": False, "error": f"{host} is {status} already"}
        job = self.commit(self.committer.force(host, status), time.monotonic())
        if job is None:
            return {"ok": False, "error": f"cannot record: {self.record_error}"}
        return {"ok": True, "job": job}

    def _reporting(self, host):
        """The checks whose latest result names host."""
        self.freshness.update(self.config.checks, self.entries, time.monotonic())
        return self.freshness.reporting(host)

    def forget(self, host):
        """Remove a host nobody reports (a typo, a host retired) from the table and from every
        %STATUS% to come. A host a check reports would only come back at its next result."""
        if not valid_host(host):
            return {"ok": False, "error": f"invalid host: {host!r}"}
        if host not in self.entries and host not in self.committer.committed:
            return {"ok": False, "error": f"{host}: no such host in the table"}
        reporting = self._reporting(host)
        if reporting:
            return {"ok": False, "error": f"{host} is still reported by check "
                    f"{', '.join(reporting)} (its latest result names it): take it out of "
                    f"that check first"}
        open_job = next((j["id"] for j in self.journal.open_jobs() if j["host"] == host), None)
        if open_job is not None:
            return {"ok": False, "error": f"{host}: its sequence (job #{open_job}) has not "
                    f"ended yet: forget it once it has"}
        try:
            with self.store.transaction(durable=True):
                self.table.forget(host)
        except sqlite3.Error as e:
            self._cannot_record(f"forgetting {host}", e, "host kept")
            return {"ok": False, "error": f"cannot record: {e}"}
        self._recorded()
        was = self.committer.status(host)
        self.committer.forget(host)
        self.entries.pop(host, None)
        self.dirty.discard(host)
        self.seen.discard(host)
        log.warning("forgot host %s (was %s; no check reports it): it is out of the table "
                    "and of every %%STATUS%% from now on", host, was)
        return {"ok": True, "was": was}

    def status(self):
        f = self.freshness
        f.update(self.config.checks, self.entries, time.monotonic())
        hosts = {host: dict(e, conflict=self.committer.in_conflict(host), stale=host in f.stale)
                 for host, e in sorted(self.entries.items())}
        return {"ok": True, "hosts": hosts,
                "daemon": {"pid": os.getpid(), "home": str(self.home.root),
                           "started": self.started, "checks": len(self.config.checks),
                           "workers": len(self.pool.workers), "runner": self.runner_pid,
                           "record_error": self.record_error,
                           "paused": self.paused is not None,
                           "stale": {"hosts": f.stale, "checks": {
                               cid: round(age, 1) for cid, age in sorted(f.checks.items())}}},
                "queue": self.journal.open_jobs()}


def unreported(host, status, why):
    """The refusal of a manual transition to a host no check reports (cluster mode's too)."""
    return {"ok": False, "error": f"{host}: {why} this host (`hadaemon status` lists them); "
            f"`transition --new {host} {status}` commits it anyway"}


def _checked(r, known):
    """The supervisor trusts no worker: names are validated again before they touch the table,
    and a status must be a declared one (protocol.Rejected says which is not)."""
    if not (isinstance(r, dict) and valid_host(r.get("host")) and valid_status(r.get("status"))
            and isinstance(r.get("details", {}), dict)):
        raise ValueError("invalid result in worker message")
    if r["status"] not in known:
        raise protocol.Rejected(undeclared(r["status"], known))
    return {"host": r["host"], "status": r["status"], "details": r.get("details", {})}


def _registered(sel, fileobj):
    try:
        sel.get_key(fileobj)
        return True
    except (KeyError, ValueError, RuntimeError):  # ValueError: a closed file; RuntimeError: a
        return False  # closed selector


def _exit_text(status):
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.WEXITSTATUS(status)}"


def _keep_start_only(running, new):
    """The new config with the settings only a start applies put back to the running ones
    (the control socket's group; the cluster, whose agent and runner hold etcd sessions), and
    what of those changed."""
    later = []
    if new.daemon.socket_group != running.daemon.socket_group:
        later.append("socket_group")
        new = replace(new, daemon=replace(new.daemon, socket_group=running.daemon.socket_group))
    if new.cluster != running.cluster:
        later.append("[cluster]")
        new = replace(new, cluster=running.cluster)
    return new, later

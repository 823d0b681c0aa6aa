"""The loop that wires it together: scheduler -> workers -> commit rule -> backend.

One Supervisor, composed with a backend chosen at start: LocalBackend (local.py: the SQLite
table and journal, the action runner) or, with a [cluster] section, ClusterBackend
(cluster/backend.py: the agent, the cluster runner, a mirror of the cluster's table). The
backend is never a subclass: it says what a transition of the commit rule means, which
children run, and serves the requests that are its own.

The loop never blocks: one selector over the worker sockets, the children's sockets, the control
socket and a wakeup pipe; signal handlers only queue the signal (set_wakeup_fd makes select
return). Children are reaped with waitpid(-1, WNOHANG) and replaced. The supervisor is the only
writer of the host table.
"""

import gc
import logging
import os
import selectors
import signal
import time

from . import children, config as configmod, leftovers, notify
from .control import Port, Server
from .dispatch import Dispatcher
from .fork import open_stdio
from .checkstats import Stats
from .ratelog import RateLog
from .recorder import FLUSH_EVERY, Hosts
from .requests import Requests
from .scheduler import Scheduler
from .stale import Freshness
from .store import open_store
from .table import Table

log = logging.getLogger("hadaemon")
ERROR_PAUSE = 0.1  # seconds the loop rests after a turn with an error: it never spins
EXIT_SOFTWARE = 70  # sysexits' EX_SOFTWARE: the loop itself failed
WATCH_EVERY = 0.5  # seconds between two looks for stale checks (and STATUS= updates)


def backend_for(sup):
    """The backend the config asks for: a [cluster] section makes it the cluster's."""
    if sup.config.cluster is None:
        from .local import LocalBackend
        return LocalBackend(sup)
    from .cluster.backend import ClusterBackend  # imported in cluster mode only
    return ClusterBackend(sup)


class Supervisor:
    def __init__(self, home, config, foreground):
        self.home, self.config, self.foreground = home, config, foreground
        self.signals = []
        self.stopping = False
        self.started = time.time()
        self.errors = RateLog(log)  # the loop's own: internal errors, resources it lacked
        self.next_flush = 0.0
        self.freshness = Freshness()
        self.stats = Stats()  # per check, for /metrics
        self.systemd = notify.Reporter(notify.Notifier.from_environment())
        self.next_watch = 0.0
        self.backend = backend_for(self)
        # The HTTP endpoint's server, in both modes; [http] is read at start only (reload).
        self.http = children.http_server(home, config.http) if config.http else None
        self.children = self.backend.children + ((self.http,) if self.http else ())
        self.requests = Requests(self)

    # -- start and stop ---------------------------------------------------------------------

    def setup(self):
        open_stdio()  # every child inherits 0-2 open, whether started by run or start
        self.home.make_var()
        # No fsync per commit here: the runner's, before each command, covers ours (store.py).
        store, moved = open_store(self.home.state_db, self.config.daemon.corrupt_table,
                                  fsync_each=False)
        if moved:
            log.error("%s", moved)
        self.store, table = store, Table(store)
        entries, broken = table.items()
        for b in broken:
            log.error("state table entry unreadable, dropped: %s", b)
        self.hosts = Hosts(self.home.state_db, store, table, entries, self.errors)
        self.committer = self.backend.setup(self.hosts)
        self.scheduler = Scheduler(self.config.checks, time.monotonic())
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, self._queue_signal)
        self.sel.register(self.wake_r, selectors.EVENT_READ, self._on_wakeup)
        d = self.config.daemon
        stopping = lambda: self.stopping  # noqa: E731
        self.control = Port(self.sel, Server(self.home.control_socket, d.socket_group),
                            self.requests.answer, self.errors, stopping)
        # The pidfile lock makes this the only daemon of this home: any check of it still
        # running was left by one killed before (its hung checks would run for ever).
        left = leftovers.kill(self.home.root)
        if left:
            log.warning("killed %d process(es) that checks of a killed daemon left running: %s",
                        len(left), " ".join(map(str, left)))
        # What setup made lives as long as the daemon (the table's entries above all): out of
        # the collector's sight, a full collection no longer walks 100 000 hosts' entries
        # (tens of ms of a held loop), and forked workers do not dirty those pages by it.
        gc.freeze()
        self.checks = Dispatcher(self.home, self.sel, lambda: self.config, self.scheduler,
                                 self._finish_check, self.errors, stopping)
        self.checks.fill()
        for child in self.children:
            child.spawn(self.sel, self.child_settings())
        log.info("hadaemon %d started in %s: %d check(s)%s, %d worker(s), %d host(s) known",
                 os.getpid(), self.home.root, len(self.config.checks),
                 configmod.elsewhere(len(self.config.elsewhere)), d.workers, len(entries))
        self.warn()

    def child_settings(self):
        return children.settings(self.config, self.foreground, self.backend.resume_upto)

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
        now = time.monotonic()
        timeout = self.checks.timeout(now, min(1.0, max(0.0, self.next_flush - now)))
        events = self.sel.select(timeout)
        # CPU time, not wall: the work a turn does, not how long others ran meanwhile.
        began = time.thread_time()
        for key, mask in events:
            failed |= not self._guarded(key.data, key.fileobj, mask)
        for chore in self._chores():
            failed |= not self._guarded(chore)
        now = time.monotonic()
        self.hosts.tick(now)  # a daemon at rest writes (and fsyncs) once a minute
        if now >= self.next_flush:
            failed |= not self._guarded(self._flush)
            self.next_flush = now + FLUSH_EVERY
        self.stats.turns.add(time.thread_time() - began)
        if failed:  # the same error may come back at once (a readable socket): do not spin
            time.sleep(ERROR_PAUSE)

    def _chores(self):
        """What every turn of the loop does besides answering events, in this order."""
        return (self._handle_signals, self._reap, self.checks.expire_stalled, self.checks.fill,
                self.checks.dispatch, self.control.drop_stalled, self.control.resume_accepting,
                self._respawn, self._watch)

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

    def _flush(self):
        self.backend.settle()
        self.hosts.flush()

    def _watch(self):
        """Look for stale checks; tell systemd how things are, and feed its watchdog only while
        the loop turns and no check is stale."""
        now = time.monotonic()
        summary = None
        if now >= self.next_watch:
            self.freshness.update(self.config.checks, self.hosts.entries, now)
            self.next_watch = now + WATCH_EVERY
            if self.systemd.enabled and not self.stopping:
                summary = self._summary()
        self.systemd.tick(now, not self.freshness.checks, self.stopping, summary)

    def _summary(self):
        """STATUS= for systemctl status: one line."""
        f = self.freshness
        stale = f"{len(f.stale)} stale" + (f" ({len(f.checks)} check(s) without results)"
                                           if f.checks else "")
        return (f"{len(self.hosts.entries)} host(s), {stale}, {len(self.backend.queue())} "
                f"sequence(s) queued" + (", paused" if self.backend.paused() else ""))

    def shutdown(self):
        log.info("stopping: no new checks or actions")
        self.stopping = True
        pool = self.checks.pool
        pool.stop()
        for child in self._running_children():
            try:
                os.kill(child.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            child.sock.close()  # EOF wakes a child that waits for work
        grace = self.config.daemon.grace
        deadline = time.monotonic() + grace + 5.0
        while (pool.workers or self._running_children()) and time.monotonic() < deadline:
            self._reap(block_for=0.05)
        for pid in list(pool.workers) + [c.pid for c in self._running_children()]:
            log.warning("child %d did not stop in time: SIGKILL", pid)
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ChildProcessError, ProcessLookupError):
                pass
        self.checks.masters.close()  # after the checks: none is cut short by it
        self.hosts.flush(everything=True)
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
                self.requests.reload()

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
            if not any(c.exited(self.sel, pid, how, self.stopping)
                       for c in self.children):
                self.checks.exited(pid, status, how)

    def _running_children(self):
        return [c for c in self.children if c.pid is not None]

    def _respawn(self):
        if not self.stopping:
            for child in self.children:
                child.respawn(self.sel, self.child_settings, self.errors)

    # -- results ----------------------------------------------------------------------------

    def _finish_check(self, meta, results, read_at=None, failed=False):
        now = time.monotonic()
        self.scheduler.done(meta["check"], meta["run"], meta["due"], now)
        self.stats.record(meta["check"], now - meta["sent"], meta["sent"] - meta["due"], failed)
        if self.scheduler.get(meta["check"]) is None:
            # A reload removed it while it ran: it no longer votes, and must not bring back a
            # host forgotten since.
            log.info("check %s: result dropped: the check was removed by a reload",
                     meta["check"])
            return
        self.freshness.result(meta["check"], [r["host"] for r in results], now)
        check = meta["spec"]
        self.backend.before_results()
        transitions, notes = self.committer.observe(check, results, now)
        for n in notes:
            (log.warning if n.kind == "conflict" else log.info)("%s: %s", n.host, n.text)
        self.hosts.observed(check.id, results)
        for t in transitions:
            self.backend.on_transition(t, now, read_at)

    def reporting(self, host):
        """The checks whose latest result names host."""
        self.freshness.update(self.config.checks, self.hosts.entries, time.monotonic())
        return self.freshness.reporting(host)

    # -- reload and control -----------------------------------------------------------------

    def warn(self):
        """What the config allows but is likely a mistake (no actions.conf): once per load."""
        for warning in self.config.warnings:
            log.warning("%s", warning)


def _exit_text(status):
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.WEXITSTATUS(status)}"

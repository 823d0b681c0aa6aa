"""The action runner: one loop for both modes, over a job store and a gate.

It takes the store's next job and runs its commands from the first unfinished one (job.next_step)
in order, writing each command's start *before* it starts and its end *after*: a command whose
end is recorded never runs again, whatever crashes. Before each command it asks the gate whether
it may start it now (go, hold, hand on, fenced). The store and the gate come in pairs: the
journal (journal.py) with LocalGate below, or etcd (cluster/store.py) with the cluster's gate
(cluster/runner.py: claims, lease, which node runs which command).

A runner is started with fork+exec (python -m hadaemon.runner, `spawn`), never a bare fork:
SQLite keeps its POSIX lock bookkeeping per process, and a child forked from the supervisor's
open connection would believe it holds locks it does not, so another process could checkpoint
and drop the WAL under it and its commits would vanish. Settings come as one JSON dict (the
cluster's under "cluster"); later the supervisor sends a wake-up or new settings (wire.py).

Only one runner works a journal at a time (an flock on var/runner.lock): after a crash of the
supervisor, a runner left behind finishes and records its current command, then leaves; the next
one takes the lock and carries on from the first unfinished command.

The runner never leaves on a store error (a full disk, a locked or unwritable journal, etcd out
of reach): it retries with back-off, and nothing else starts meanwhile. The end of a command is
known only here, so it is held until written; were it dropped, the next runner would run that
command again. The runner says nothing back about jobs: whoever needs to know reads the store.
"""

import fcntl
import json
import logging
import os
import select
import signal
import socket
import sys
import time
from pathlib import Path

from . import actions, execute, listfiles, logsetup, wire
from .backoff import Backoff
from .fork import exec_module, open_stdio
from .home import Home
from .job import Fenced, State, StepRecord, Verdict, next_step
from .journal import Journal
from .ratelog import RateLog
from .store import Store
from .table import Table

log = logging.getLogger("hadaemon.runner")
OUTPUT_KEEP = 4096  # bytes of a command's output kept in history
LOG_ARGV = 400  # characters of a command line the log shows


class GaveUp(Exception):
    """A store write was abandoned: the runner is stopping or orphaned."""


class Runner:
    def __init__(self, home, settings, sock, execute=None):
        """execute: what starts a planned command and waits for it (Runner.execute's
        arguments and result); the unit tests pass a fake."""
        self.home = Home(Path(home))
        self.run_command = execute or self.execute
        self.settings = settings
        self.sock = sock
        self.parent = os.getppid()
        self.stop_at = None  # monotonic deadline once SIGTERM arrived
        self.woken = None  # the read end of the signal wake-up pipe (main)
        self.trouble = RateLog(log)  # store writes that fail
        self.store = self.gate = None
        self.announced = None  # the job whose start was logged (a held job is not again)

    def main(self):
        logsetup.configure_child(self.home, self.settings)
        signal.signal(signal.SIGTERM, self._terminate)
        # An idle runner sleeps in select(), which Python resumes after a handler returns: the
        # handler's byte on this pipe is what ends the wait, so a SIGTERM stops it while idle.
        self.woken, wakeup = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wakeup, warn_on_full_buffer=False)
        os.chdir(self.home.root)  # commands run in the home: no per-run cwd, so posix_spawn
        try:
            if "cluster" in self.settings:
                from .cluster.runner import open_cluster as open_backend
            else:
                open_backend = open_local
            self.store, self.gate = open_backend(self)
            while not self.stopping() and not self.orphaned():
                if not self.work() and not self.wait_for_work(self.gate.poll):
                    return
        except GaveUp:
            pass  # stopping or orphaned: what was not written, the next runner finds undone
        finally:
            if self.gate:
                self.gate.close()

    def durably(self, what, call, *args, give_up=None):
        """call(*args) until it raises no store error; its result. Retried with back-off,
        logged once (then once a minute); the caller holds its place meanwhile, so nothing runs
        out of order. GaveUp once give_up() (default: stopping or orphaned) says so."""
        give_up = give_up or (lambda: self.stopping() or self.orphaned())
        retry = Backoff()
        while True:
            try:
                result = call(*args)
            except self.store.errors as e:
                self.trouble.report("journal", logging.ERROR, self.store.trouble(what, e),
                                    changes=False)
                if give_up():
                    raise GaveUp(what) from None
                retry.failed(time.monotonic())
                while not retry.ready(time.monotonic()) and not self.stopping():
                    time.sleep(0.1)  # slices: a SIGTERM must not wait for the back-off
                continue
            self.trouble.clear("journal", self.store.recovered(what))
            return result

    def work(self):
        """Take the store's next job and run it; False if there was none or the gate holds
        it (the loop waits then)."""
        job = self.durably("read the journal", self.store.next_job, self.gate)
        return job is not None and self.run_job(job)

    def wait_for_work(self, timeout=None):
        """Until the supervisor says something (or `timeout` passed); False when it is gone."""
        try:
            waits = [self.sock] if self.woken is None else [self.sock, self.woken]
            ready = select.select(waits, [], [], timeout)[0]
            if self.woken is not None and self.woken in ready:
                os.read(self.woken, 512)  # a signal: the loop looks at stopping() again
                return True
            if not ready:
                return True
            message = wire.receive(self.sock, log, 65536)
        except InterruptedError:
            return True
        except EOFError:
            return False
        if isinstance(message, wire.Settings):  # after a reload
            self.settings.update(message.values)
        return True

    def run_job(self, job):
        """Run the job's commands from its first unfinished one; False if the gate holds it."""
        if self.announced != job.id:
            log.info("job #%d %s: %s -> %s: %d command(s)%s", job.id, job.host, job.source,
                     job.target, len(job.plan), " (resumed)" if job.resumed else "")
            self.announced = job.id
        while True:
            records = self.durably(f"read the commands of job #{job.id}", self.store.records,
                                   job)
            idx, failed = next_step(job, records)
            if idx is None:
                if self.durably(f"record the end of job #{job.id}", self.store.close, job,
                                State.FAILED if failed else State.DONE, failed):
                    log.info("job #%d %s", job.id, failed or "done")
                return True
            if self.stopping() or self.orphaned():
                return True
            verdict = self.durably(f"ask whether command {idx + 1} of job #{job.id} may start",
                                   self.gate.check, job, idx)
            if verdict is Verdict.HAND_ON:
                self.durably(f"hand job #{job.id} on", self.store.release, job)
            if verdict is not Verdict.GO:
                return verdict is not Verdict.HOLD
            verdict = self.run_step(job, idx, records.get(idx))
            if verdict is not Verdict.GO:
                return verdict is not Verdict.HOLD
            if job.state is State.QUEUED:
                job = job.moved(State.RUNNING)

    def run_step(self, job, idx, seen):
        """Start step idx and record its end. GO: go on with the job; HOLD: not now, the job
        stays this runner's; FENCED: leave it (claim lost, cut short by a stop)."""
        step = job.plan[idx]
        variables = self.durably(f"read the environment of job #{job.id}",
                                 self.store.environment, job)
        try:
            started = self.durably(f"record the start of {step.text!r} (job #{job.id})",
                                   self.store.step_started, job, idx, seen, job.resumed)
        except Fenced:
            log.error("job #%d: claim lost before %r: not started", job.id, step.text)
            return Verdict.FENCED
        if started is None:  # finished, or restarted by another runner: read it again
            log.warning("job #%d: command %d was finished or started meanwhile: not run again",
                        job.id, idx + 1)
            return Verdict.GO
        verdict = self.durably(f"ask whether {step.text!r} may start", self.gate.confirm, job,
                               idx)
        if verdict is not Verdict.GO:
            return verdict
        outcome, error = self.run_command(job, step, job.resumed, variables=variables,
                                          extra_env=self.gate.env, pass_fds=self.gate.pass_fds,
                                          on_start=lambda pid: self.note_pid(job, idx, pid))
        if outcome is None:
            return self.record_end(job, idx, step, started, None, 0.0, "", error)
        output = outcome.output.decode("utf-8", "replace")
        if self.stop_at is not None and outcome.timed_out:
            # Cut short by shutdown: left unfinished so the next start resumes it.
            log.warning("job #%d: %s interrupted by shutdown after %.1fs; it will be resumed",
                        job.id, step.text, outcome.duration)
            why = StepRecord(started.started, None, None, outcome.duration, output,
                             "interrupted by shutdown; resumed at the next start", job.resumed)
            try:  # only the reason: the step stays unfinished whether this is written or not
                self.durably(f"record why {step.text!r} was cut short",
                             self.store.step_interrupted, job, idx, started, why)
            except GaveUp:
                pass
            return Verdict.FENCED
        return self.record_end(job, idx, step, started, outcome.rc, outcome.duration, output,
                               outcome.reason())

    def record_end(self, job, idx, step, started, rc, duration, output, error):
        """Write a command's end, however long that takes: held here, it is the only thing that
        keeps the next runner from running the command again. An orphaned runner holds it too
        (the next one waits on runner.lock); only a stop gives up, at the end of its grace.
        FENCED then (the command stays unfinished and the next start resumes it with
        HA_RESUMED=1), or when another runner restarted the command meanwhile."""
        done = StepRecord(started.started, time.time(), rc, duration, output, error,
                          started.resumed, started.node)
        try:
            recorded = self.durably(
                f"record the end of {step.text!r} (job #{job.id})", self.store.step_finished,
                job, idx, started, done,
                give_up=lambda: self.stopping() and time.monotonic() >= self.stop_at)
        except GaveUp:
            log.error("job #%d: stopping before the end of %s could be recorded: the next "
                      "start runs it again with HA_RESUMED=1", job.id, step.text)
            return Verdict.FENCED
        if not recorded:
            log.error("job #%d: %r finished after another node took the job over", job.id,
                      step.text)
            return Verdict.FENCED
        if rc is None:
            log.error("job #%d: %s: %s", job.id, step.text, error)
        else:
            (log.info if done.ok else log.error)("job #%d: %s exited %s in %.2fs%s", job.id,
                                                 step.text, rc, duration,
                                                 f" ({error})" if error else "")
        return Verdict.GO

    def note_pid(self, job, idx, pid):
        """For the operator and the latency bench only: a command never waits for it. Its
        trouble is logged under a key of its own: under the journal's, it would stand for the
        same trouble and keep the line that matters out of the log (the command's end that
        cannot be recorded)."""
        try:
            self.store.step_pid(job, idx, pid)
        except self.store.errors as e:
            self.trouble.report("pid", logging.ERROR,
                                f"cannot record the pid of job #{job.id}'s command {idx + 1}: "
                                f"{self.store.trouble('record it', e)}", changes=False)
        else:
            self.trouble.clear("pid")

    def execute(self, job, step, resumed, variables, extra_env=(), **options):
        """Start one planned command with the job's HA_* variables and wait for it: (outcome,
        None), or (None, why it could not start). `options` go to execute.run."""
        if step.error:
            return None, f"{step.error} ({step.where})"
        try:
            argv = [self.home.resolved(self.gate.program(step), step.argv[0]),
                    *step.argv[1:]]
        except LookupError as e:
            return None, str(e)
        inline, files = actions.spill(variables)
        line = " ".join(step.argv)  # a host list can make it hundreds of KiB: not in the log
        log.info("job #%d: running %s", job.id,
                 line if len(line) <= LOG_ARGV else f"{line[:LOG_ARGV]}... ({len(line)} bytes)")
        with listfiles.opened(files) as (file_env, fds):
            env = dict(inline)
            env.update(file_env)  # over a status named `<s>-file`: the daemon's names win
            env.update(HA_RESUMED="1" if resumed else "0", HA_JOB=str(job.id))
            env = execute.base_environment(self.home.root, dict(env, **dict(extra_env)))
            options["pass_fds"] = tuple(options.get("pass_fds", ())) + fds
            return execute.run(argv, step.timeout, OUTPUT_KEEP, env, merge_output=True,
                               kill_leftovers=False, user=self.settings.get("user") or None,
                               deadline_hook=lambda: self.stop_at, **options), None

    def stopping(self):
        return self.stop_at is not None

    def orphaned(self):
        return os.getppid() != self.parent

    def _terminate(self, signum, frame):
        self.stop_at = time.monotonic() + self.settings["grace"]


class LocalGate:
    """The single-node gate: one runner works the journal, so every command is its own. Only a
    command a killed runner left running holds the next one back (wait_for_leftover)."""

    poll = None  # nothing is ever held: wait until the supervisor wakes us
    env = {}

    def __init__(self, runner):
        self.runner, self.settings, self.home = runner, runner.settings, runner.home
        self.paused = str(self.home.paused)
        # Every command inherits this descriptor and its lock: the lock outlives a killed runner
        # for as long as the command it started runs, which is how the next runner knows.
        self.command_lock = open(self.home.command_lock, "a")
        os.set_inheritable(self.command_lock.fileno(), True)
        self.pass_fds = (self.command_lock.fileno(),)
        # Not held: a command of a killed runner still runs. Whatever job comes next, its first
        # command waits for that one (wait_for_leftover).
        self.leftover = not _try_lock(self.command_lock)

    def may_begin(self, job, records):
        """Maintenance (var/paused): a sequence under way finishes, no new one starts."""
        return not os.path.exists(self.paused)  # a str: asked on every job's way to its start

    def check(self, job, idx):
        if self.leftover:
            self.wait_for_leftover()
        return Verdict.GO

    def confirm(self, job, idx):
        return Verdict.GO

    def program(self, step):
        """The path resolved at load, journalled with the step (an older journal's step has
        none: the running config's)."""
        return step.program or self.settings["programs"].get(step.argv[0])

    def wait_for_leftover(self):
        """A command of a dead runner may still run: never let two copies overlap.

        It holds command.lock through the descriptor it inherited, from its first instruction
        on (a pid recorded after the spawn could be missing). Waiting is bounded by
        action_timeout: a daemon an action started that kept the descriptor must not block the
        journal for ever.
        """
        self.leftover = False  # from here on the lock is ours, or waiting for it was given up
        if _try_lock(self.command_lock):
            return
        limit = self.settings["action_timeout"]
        log.warning("a command of the previous runner still runs: waiting for it (at most %gs)",
                    limit)
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if _try_lock(self.command_lock):
                return
            time.sleep(0.1)
        log.error("%s still held after %gs (by a process an action left behind?): going on",
                  self.home.command_lock, limit)

    def close(self):
        pass  # the locks go with the process


def open_local(runner):
    """(journal, LocalGate) for the runner, once it holds var/runner.lock; the jobs a previous
    run left open are resumed or superseded first."""
    home = runner.home
    lock = open(home.runner_lock, "a")
    if not _try_lock(lock):
        log.warning("waiting for the previous action runner to finish its command")
        fcntl.flock(lock, fcntl.LOCK_EX)
    runner.runner_lock = lock  # held for the runner's life
    gate = LocalGate(runner)
    runner.store = Journal(None, home.state_db)  # not open yet: its errors and messages
    store = runner.durably("open the journal", Store, home.state_db)
    journal, table = Journal(store), Table(store)
    runner.store = journal
    runner.durably("record the jobs left open", resume_left_open, journal, table,
                   runner.settings["resume_upto"])
    return journal, gate


def resume_left_open(journal, table, upto):
    """After a restart: jobs left open by the previous run (ids up to `upto`) whose transition
    no longer holds are superseded, not run. Jobs committed by this run always run, in order,
    however late this runner starts."""
    for job in journal.open_jobs():
        now = table.status(job["host"])
        if job["id"] <= upto and now != job["target"]:
            journal.finish(job["id"], "superseded",
                           f"{job['host']} is {now} now, not {job['target']}")
            log.warning("job #%d %s -> %s superseded: host is %s now", job["id"],
                        job["host"], job["target"], now)
        elif job["state"] == "running":
            journal.mark_resumed(job["id"])
            log.warning("job #%d for %s interrupted earlier: resuming", job["id"], job["host"])


def spawn(home, settings):
    """Start a runner process (either mode: the cluster's settings under "cluster"); return
    (pid, the supervisor's end of its socket)."""
    return exec_module("hadaemon.runner", home, settings, site=False)  # stdlib only


def main():
    open_stdio()  # before any file is opened: command.lock must not land on 0-2
    home, fd, settings = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    sock = socket.socket(fileno=fd)
    os.set_inheritable(fd, False)
    try:
        Runner(home, settings, sock).main()
    except Exception:
        # To the log (configured first thing in main, else stderr): a daemon's stderr is
        # /dev/null. The supervisor starts the next runner.
        log.critical("action runner failed", exc_info=True)
        sys.exit(1)


def _try_lock(f):
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


if __name__ == "__main__":
    main()

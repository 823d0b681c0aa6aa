"""The action runner's main: one sequence at a time, FIFO, journalled, resumable.

It is started with fork+exec (python -m hadaemon.runner), never a bare fork: SQLite keeps its
POSIX lock bookkeeping per process, and a child forked from the supervisor's open connection
would believe it holds locks it does not, so another process could checkpoint and drop the WAL
under it and its commits would vanish.

Only one runner works a journal at a time (an flock on var/runner.lock): after a crash of the
supervisor, a runner left behind finishes and records its current command, then leaves; the next
one takes the lock and carries on from the first unfinished command.

The runner never leaves on a database error (a full disk, a locked or unwritable journal): it
retries the write with back-off, and nothing else starts meanwhile. The end of a command is known
only here, so it is held until written; were it dropped, the next runner would run that command
again.
"""

import fcntl
import json
import logging
import os
import signal
import socket
import sqlite3
import sys
import time
from pathlib import Path

from . import actions, execute, listfiles, logsetup
from .backoff import Backoff
from .fork import open_stdio, with_socket
from .home import Home
from .journal import Journal
from .ratelog import RateLog
from .store import Store
from .table import Table

log = logging.getLogger("hadaemon.runner")
OUTPUT_KEEP = 4096  # bytes of a command's output kept in history
LOG_ARGV = 400  # characters of a command line the log shows


class GaveUp(Exception):
    """A journal write was abandoned: the runner is stopping or orphaned."""


class Runner:
    def __init__(self, home, settings, sock):
        self.home = Home(Path(home))
        self.settings = settings
        self.sock = sock
        self.parent = os.getppid()
        self.stop_at = None  # monotonic deadline once SIGTERM arrived
        self.trouble = RateLog(log)  # journal writes that fail

    def main(self):
        logsetup.configure(self.home, self.settings["log"], self.settings["log_level"],
                           self.settings["foreground"])
        signal.signal(signal.SIGTERM, self._terminate)
        os.chdir(self.home.root)  # commands run in the home: no per-run cwd, so posix_spawn
        lock = open(self.home.runner_lock, "a")
        if not _try_lock(lock):
            log.warning("waiting for the previous action runner to finish its command")
            fcntl.flock(lock, fcntl.LOCK_EX)
        # Every command inherits this descriptor and its lock: the lock outlives a killed runner
        # for as long as the command it started runs, which is how the next runner knows.
        self.command_lock = open(self.home.command_lock, "a")
        os.set_inheritable(self.command_lock.fileno(), True)
        # Not held: a command of a killed runner still runs. Whatever job comes next, its first
        # command waits for that one (wait_for_leftover).
        self.leftover = not _try_lock(self.command_lock)
        try:
            store = self.durably("open the journal", Store, self.home.state_db)
            self.journal, self.table = Journal(store), Table(store)
            self.durably("record the jobs left open", self.resume_check)
            while not self.stopping() and not self.orphaned():
                job = self.durably("read the journal", self.journal.next_job)
                if job is not None and job["state"] != "running" and self.home.paused.exists():
                    job = None  # maintenance: a sequence under way finishes, no new one starts
                if job is None:
                    if not self.wait_for_work():
                        return
                    continue
                self.run_job(job)
        except GaveUp:
            pass  # stopping or orphaned: what was not written, the next runner finds undone

    def durably(self, what, call, *args, give_up=None):
        """call(*args) until it raises no database error; its result. Retried with back-off,
        logged once (then once a minute); the caller holds its place meanwhile, so nothing runs
        out of order. GaveUp once give_up() (default: stopping or orphaned) says so."""
        give_up = give_up or (lambda: self.stopping() or self.orphaned())
        retry = Backoff()
        while True:
            try:
                result = call(*args)
            except sqlite3.Error as e:
                self.trouble.report("journal", logging.ERROR,
                                    f"cannot {what} in {self.home.state_db} ({e}): retrying; no "
                                    "command starts meanwhile", changes=False)
                if give_up():
                    raise GaveUp(what) from None
                retry.failed(time.monotonic())
                while not retry.ready(time.monotonic()) and not self.stopping():
                    time.sleep(0.1)  # slices: a SIGTERM must not wait for the back-off
                continue
            self.trouble.clear("journal", f"the journal can be written again; done: {what}")
            return result

    def resume_check(self):
        """After a restart: jobs left open by the previous run whose transition no longer holds
        are superseded, not run. Jobs committed by this run always run, in order, however late
        this runner starts."""
        for job in self.journal.open_jobs():
            now = self.table.status(job["host"])
            if job["id"] <= self.settings["resume_upto"] and now != job["target"]:
                self.journal.finish(job["id"], "superseded",
                                    f"{job['host']} is {now} now, not {job['target']}")
                log.warning("job #%d %s -> %s superseded: host is %s now", job["id"],
                            job["host"], job["target"], now)
            elif job["state"] == "running":
                self.journal.mark_resumed(job["id"])
                log.warning("job #%d for %s interrupted earlier: resuming", job["id"], job["host"])

    def wait_for_work(self):
        """Block until the supervisor says something; False when it is gone or says stop."""
        try:
            data = self.sock.recv(65536)
        except InterruptedError:
            return True
        except OSError:
            return False
        if not data:
            return False
        if data.startswith(b"{"):  # new settings after a reload
            self.settings.update(json.loads(data))
        return True

    def run_job(self, job):
        log.info("job #%d %s: %s -> %s: %d command(s)%s", job["id"], job["host"], job["source"],
                 job["target"], len(job["steps"]), " (resumed)" if job["resumed"] else "")
        failed = None
        for idx, step in enumerate(job["steps"]):
            progress = job["progress"].get(idx)
            if progress and progress[1] is not None:
                continue  # finished before a crash: never again
            if self.stopping() or self.orphaned():
                return
            resumed = job["resumed"]
            if self.leftover:
                self.wait_for_leftover()
            result = self.run_step(job, idx, step, resumed)
            if result == "interrupted":
                return
            if result != "ok" and not step["keep_going"]:
                failed = f"stopped at command {idx + 1}: {step['text']}"
                break
        self.durably(f"record the end of job #{job['id']}", self.journal.finish, job["id"],
                     "failed" if failed else "done", failed)
        log.info("job #%d %s", job["id"], failed or "done")
        try:
            self.sock.send(f"done {job['id']}".encode())
        except OSError:
            pass  # the supervisor is gone or busy: a manual hold then ends by its deadline

    def run_step(self, job, idx, step, resumed):
        if not self.durably(f"record the start of {step['text']!r} (job #{job['id']})",
                            self.journal.step_started, job["id"], idx, resumed):
            log.error("job #%d: command %d was already finished: not run again", job["id"],
                      idx + 1)
            return "ok"
        outcome, error = self.execute(
            job, step, resumed, pass_fds=(self.command_lock.fileno(),),
            on_start=lambda pid: self.note_pid(job["id"], idx, pid))
        if outcome is None:
            if not self.record_end(job, idx, step, None, 0.0, "", error):
                return "interrupted"
            log.error("job #%d: %s: %s", job["id"], step["text"], error)
            return "error"
        output = outcome.output.decode("utf-8", "replace")
        if self.stop_at is not None and outcome.timed_out:
            # Cut short by shutdown: left unfinished so the next start resumes it.
            log.warning("job #%d: %s interrupted by shutdown after %.1fs; it will be resumed",
                        job["id"], step["text"], outcome.duration)
            try:  # only the reason: the step stays unfinished whether this is written or not
                self.durably(f"record why {step['text']!r} was cut short",
                             self.journal.step_interrupted, job["id"], idx, outcome.duration,
                             output, "interrupted by shutdown; resumed at the next start")
            except GaveUp:
                pass
            return "interrupted"
        error = outcome.reason()
        if not self.record_end(job, idx, step, outcome.rc, outcome.duration, output, error):
            return "interrupted"
        ok = outcome.rc == 0 and not error
        (log.info if ok else log.error)("job #%d: %s exited %s in %.2fs%s", job["id"],
                                        step["text"], outcome.rc, outcome.duration,
                                        f" ({error})" if error else "")
        return "ok" if ok else "failed"

    def record_end(self, job, idx, step, rc, duration, output, error):
        """Write a command's end, however long that takes: held here, it is the only thing that
        keeps the next runner from running the command again. An orphaned runner holds it too
        (the next one waits on runner.lock); only a stop gives up, at the end of its grace. False
        then: the command stays unfinished and the next start resumes it (HA_RESUMED=1)."""
        finished = time.time()
        try:
            self.durably(f"record the end of {step['text']!r} (job #{job['id']})",
                         self.journal.step_finished, job["id"], idx, rc, duration, output, error,
                         finished, give_up=lambda: self.stopping()
                         and time.monotonic() >= self.stop_at)
            return True
        except GaveUp:
            log.error("job #%d: stopping before the end of %s could be recorded: the next "
                      "start runs it again with HA_RESUMED=1", job["id"], step["text"])
            return False

    def note_pid(self, job_id, idx, pid):
        """For the operator and the latency bench only: a command never waits for it."""
        try:
            self.journal.step_pid(job_id, idx, pid)
        except sqlite3.Error as e:
            self.trouble.report("journal", logging.ERROR,
                                f"cannot record the pid of job #{job_id}'s command {idx + 1} in "
                                f"{self.home.state_db} ({e})", changes=False)

    def execute(self, job, step, resumed, extra_env=(), **options):
        """Start one planned command and wait for it: (outcome, None), or (None, why it could
        not start). The same for both runners; `options` go to execute.run."""
        if step["error"]:
            return None, f"{step['error']} ({step['where']})"
        try:
            argv = [self.home.resolved(self.program(step), step["argv"][0])] + step["argv"][1:]
        except LookupError as e:
            return None, str(e)
        inline, files = actions.spill(job["env"])
        line = " ".join(step["argv"])  # a host list can make it hundreds of KiB: not in the log
        log.info("job #%d: running %s", job["id"],
                 line if len(line) <= LOG_ARGV else f"{line[:LOG_ARGV]}... ({len(line)} bytes)")
        with listfiles.opened(files) as (file_env, fds):
            env = dict(inline)
            env.update(file_env)  # over a status named `<s>-file`: the daemon's names win
            env.update(HA_RESUMED="1" if resumed else "0", HA_JOB=str(job["id"]))
            env = execute.base_environment(self.home.root, dict(env, **dict(extra_env)))
            options["pass_fds"] = tuple(options.get("pass_fds", ())) + fds
            return execute.run(argv, step["timeout"], OUTPUT_KEEP, env, merge_output=True,
                               kill_leftovers=False, user=self.settings.get("user") or None,
                               deadline_hook=lambda: self.stop_at, **options), None

    def program(self, step):
        """The path resolved at load, journalled with the step (an older journal's step has
        none: the running config's)."""
        return step.get("program") or self.settings["programs"].get(step["argv"][0])

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

    def stopping(self):
        return self.stop_at is not None

    def orphaned(self):
        return os.getppid() != self.parent

    def _terminate(self, signum, frame):
        self.stop_at = time.monotonic() + self.settings["grace"]


def spawn(home, settings):
    """Start a runner process; return (pid, the supervisor's end of its socket)."""
    def start(child):
        os.set_inheritable(child.fileno(), True)
        argv = [sys.executable, "-m", "hadaemon.runner", str(home), str(child.fileno()),
                json.dumps(settings)]
        return os.posix_spawn(sys.executable, argv, os.environ,
                              setsigdef=(signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD))
    return with_socket(start)


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

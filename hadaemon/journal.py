"""The durable action queue: one job per committed transition, one row per command started.

It is one of the two job stores the runner loop (runner.py) works through the same methods
(next_job, records, step_started, step_pid, step_finished, step_interrupted, close, release);
cluster/store.py is the other.

The supervisor enqueues (in the same transaction as the table write); the runner takes jobs in
id order, writes a step row *before* it starts a command and completes it *after*, so after any
crash the first unfinished command is known and a finished one is never run again.

What a job stores: its plan (expanded arguments: what history shows and a resume runs again)
and, while it is open, its environment (every status's hosts: a resumed command must get the
same). The environment is kept by reference: every host's status is written now and then as a
base (envbases), and a job stores the base's id and the hosts changed since ({"base": id,
"changes": {host: status, or null once forgotten}}); the runner rebuilds the variables from
them (environment()). So a commit writes what changed, not a copy of a 100 000-host table. A job
that will not run (nothing to run, paused, refused) stores no environment, and a finished one
drops it in the transaction that finishes it: it never runs again and history does not show it.
prune() keeps the newest `keep_jobs` finished jobs and the bases an open job still refers to.
SQLite reuses the pages freed: the file stops growing, it does not shrink.
"""

import json
import logging
import math
import sqlite3
import time

from . import actions
from .commit import Transition
from .job import Job, State, StepRecord

log = logging.getLogger("hadaemon")

OPEN = ("queued", "running")


def initial_state(steps, paused, note=None):
    """A new job's state and note (this journal's and cluster mode's): a transition with no
    actions, or committed while paused, is history only; a sequence refused at planning
    (actions.plan) fails before any of its commands runs. Committed while paused it is
    skipped, with actions or without: resume fires only a net change that has some."""
    refused = next((s["error"] for s in steps if s.get("refused")), None)
    if refused:
        return "failed", f"not run: {refused}"
    state = "skipped" if paused else "queued" if steps else "done"
    return state, (note or "paused: no action fired") if state == "skipped" else note


def rebase_after(hosts):
    """Hosts changed since the base above which a new base is written: about the square root
    of the table, so that bases (the whole table) and changes (a job each) cost alike."""
    return 16 + math.isqrt(hosts)


def environment(conn, job, stored):
    """The job's HA_* variables from what its row stores: a reference to a base, or the
    variables themselves (a job queued by a version before references)."""
    if "base" not in stored:
        return stored
    row = conn.execute("SELECT statuses FROM envbases WHERE id = ?",
                       (stored["base"],)).fetchone()
    if row is None:  # written with the job, pruned only once no open job needs it
        log.error("job #%d: its environment's base #%d is missing from the journal: its "
                  "commands get no HA_<STATUS> variables", job.id, stored["base"])
        statuses = {}
    else:
        statuses = json.loads(row[0])
    for host, status in stored["changes"].items():
        if status is None:
            statuses.pop(host, None)
        else:
            statuses[host] = status
    return actions.environment(Transition(job.host, job.source, job.target, statuses,
                                          job.manual))


def records(conn, job_id):
    """{index: StepRecord} of a job's commands started (the runner's and history's read)."""
    return {r[0]: StepRecord(*r[1:7], bool(r[7])) for r in conn.execute(
        "SELECT idx, started, finished, rc, duration, output, error, resumed FROM steps"
        " WHERE job = ?", (job_id,))}


class Journal:
    def __init__(self, store, path=None):
        """path: the file's, for messages (default the store's: a Journal can say why it
        cannot be opened before its store is)."""
        self._store = store
        self.path = path or store.path
        self._env = (None, None)  # (job id, its variables rebuilt)

    def transaction(self):
        return self._store.transaction()

    def enqueue(self, transition, steps, env, now=None, observed_mono=None, paused=False,
                note=None):
        state, note = initial_state(steps, paused, note)
        with self._store.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO jobs (host, source, target, manual, created, state, plan, env,"
                " finished, observed_mono, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (transition.host, transition.source, transition.target, int(transition.manual),
                 now or time.time(), state, json.dumps(steps),
                 json.dumps(env if state == "queued" else {}),
                 None if state == "queued" else (now or time.time()), observed_mono, note))
        if state == "failed":
            log.error("job #%d %s: %s -> %s: %s", cur.lastrowid, transition.host,
                      transition.source, transition.target, note)
        return cur.lastrowid

    def write_base(self, statuses):
        """Inside the caller's transaction: every host's status, for jobs to refer to."""
        return self._store.conn.execute("INSERT INTO envbases (statuses) VALUES (?)",
                                        (json.dumps(statuses),)).lastrowid

    def has_base(self, base_id):
        """The base is in the file (a transaction that wrote it may have been rolled back)."""
        return self._store.conn.execute("SELECT 1 FROM envbases WHERE id = ?",
                                        (base_id,)).fetchone() is not None

    def last_id(self):
        return self._store.conn.execute("SELECT max(id) FROM jobs").fetchone()[0] or 0

    def open_jobs(self):
        rows = self._store.conn.execute(
            "SELECT id, host, target, state FROM jobs WHERE state IN ('queued', 'running')"
            " ORDER BY id").fetchall()
        return [dict(id=r[0], host=r[1], target=r[2], state=r[3]) for r in rows]

    def mark_resumed(self, job_id):
        with self._store.transaction() as conn:
            conn.execute("UPDATE jobs SET resumed = 1 WHERE id = ?", (job_id,))

    def is_open(self, job_id):
        """False once the job ended (or was pruned): a manual hold on its host may end."""
        row = self._store.conn.execute("SELECT state FROM jobs WHERE id = ?",
                                       (job_id,)).fetchone()
        return row is not None and row[0] in OPEN

    def finish(self, job_id, state, note=None):
        with self._store.transaction() as conn:
            conn.execute("UPDATE jobs SET state = ?, finished = ?, note = COALESCE(?, note),"
                         " env = '{}' WHERE id = ?",
                         (state, time.time(), note, job_id))

    def prune(self, keep, below=0):
        """Delete the jobs (and their steps) under the newest `keep` ids and under the oldest
        open job, as cluster mode does with its records, and the environment bases no open
        job refers to. Returns the first id kept; `below`: the one returned last time (no
        write at all while nothing is to go)."""
        conn = self._store.conn
        floor = (conn.execute("SELECT max(id) FROM jobs").fetchone()[0] or 0) - keep + 1
        oldest_open = conn.execute("SELECT min(id) FROM jobs WHERE state IN ('queued',"
                                   " 'running')").fetchone()[0]
        floor = min(floor, oldest_open or floor)
        base_floor = self._first_base_needed(conn)
        if floor <= below and base_floor is None:
            return below
        with self._store.transaction() as conn:  # ids only grow: a job added since is above
            if floor > below:
                conn.execute("DELETE FROM steps WHERE job < ?", (floor,))
                conn.execute("DELETE FROM jobs WHERE id < ?", (floor,))
            if base_floor is not None:
                conn.execute("DELETE FROM envbases WHERE id < ?", (base_floor,))
        return max(floor, below)

    @staticmethod
    def _first_base_needed(conn):
        """The oldest base to keep, if an older one is in the file: the newest (the next
        jobs refer to it) or an open job's."""
        needed = [json.loads(env).get("base") for (env,) in conn.execute(
            "SELECT env FROM jobs WHERE state IN ('queued', 'running')")]
        oldest, newest = conn.execute("SELECT min(id), max(id) FROM envbases").fetchone()
        keep = min([b for b in needed if b is not None] + [newest or 0])
        return keep if oldest is not None and oldest < keep else None

    # -- the runner's side: the job store protocol (cluster/store.py EtcdJournal has the same) --

    errors = (sqlite3.Error,)  # what a write may fail with for a while: the runner retries

    def trouble(self, what, e):
        return (f"cannot {what} in {self.path} ({e}): retrying; no command starts "
                "meanwhile")

    def recovered(self, what):
        return f"the journal can be written again; done: {what}"

    def next_job(self, gate):
        """The first open job, in id order (one runner works the journal), or None; None also
        while the gate says it may not begin (a job under way always goes on)."""
        row = self._store.conn.execute(
            "SELECT id, host, source, target, manual, created, plan, env, state, resumed, note"
            " FROM jobs WHERE state IN ('queued', 'running') ORDER BY id LIMIT 1").fetchone()
        if row is None:
            return None
        job = Job.from_dict(dict(zip(("id", "host", "source", "target", "manual", "created"),
                                     row), plan=json.loads(row[6]), state=row[8],
                                 resumed=row[9], note=row[10],
                                 env=json.loads(row[7])))  # as stored: environment() reads it
        if job.state is State.QUEUED and not gate.may_begin(job, {}):
            return None
        return job

    def environment(self, job):
        """The job's HA_* variables, rebuilt from what its row stores (next_job): the runner
        asks before every command, so the last job's are kept. A job's stored environment does
        not change while it is open."""
        if self._env[0] != job.id:
            self._env = (job.id, environment(self._store.conn, job, job.env))
        return self._env[1]

    def records(self, job):
        """{index: StepRecord} of the job's commands started."""
        return records(self._store.conn, job.id)

    def step_started(self, job, idx, seen, resumed):
        """Record a command's start before it starts: its StepRecord, or None if it is
        finished already (checked under the write lock, so a finished command can never be
        started again, whatever the caller read before). seen: unused (one runner)."""
        record = StepRecord(time.time(), resumed=resumed)
        with self._store.transaction() as conn:
            row = conn.execute("SELECT finished FROM steps WHERE job = ? AND idx = ?",
                               (job.id, idx)).fetchall()
            if row and row[0][0] is not None:
                return None
            conn.execute("UPDATE jobs SET state = 'running' WHERE id = ?", (job.id,))
            conn.execute(
                "INSERT OR REPLACE INTO steps (job, idx, started, resumed) VALUES (?, ?, ?, ?)",
                (job.id, idx, record.started, int(resumed)))
        return record

    def step_pid(self, job, idx, pid):
        """The command runs: its pid (for the operator) and when it started (CLOCK_MONOTONIC)."""
        started_mono = time.monotonic()
        with self._store.transaction() as conn:
            conn.execute("UPDATE steps SET pid = ?, started_mono = ?"
                         " WHERE job = ? AND idx = ?",
                         (pid, started_mono, job.id, idx))

    def step_finished(self, job, idx, started, record):
        """Complete the step's record (record.finished: when it ended, which may be well
        before this write, after a full disk); True: one runner, nobody restarts it."""
        with self._store.transaction() as conn:
            conn.execute(
                "UPDATE steps SET finished = ?, rc = ?, duration = ?, output = ?, error = ?"
                " WHERE job = ? AND idx = ?",
                (record.finished, record.rc, record.duration, record.output, record.error,
                 job.id, idx))
        return True

    def step_interrupted(self, job, idx, started, record):
        """Cut short on purpose: the reason is kept, the step stays unfinished (to resume)."""
        with self._store.transaction() as conn:
            conn.execute("UPDATE steps SET duration = ?, output = ?, error = ? WHERE job = ? AND"
                         " idx = ?", (record.duration, record.output, record.error, job.id, idx))

    def close(self, job, state, note=None):
        """The job ends in `state` (an allowed edge from its own); True (nobody else could)."""
        self.finish(job.id, job.moved(state).state.value, note)
        return True

    def release(self, job):
        """Nothing to hand on: one runner works this journal, every command is its own."""

"""The durable action queue: one job per committed transition, one row per command started.

The supervisor enqueues (in the same transaction as the table write); the runner takes jobs in
id order, writes a step row *before* it starts a command and completes it *after*, so after any
crash the first unfinished command is known and a finished one is never run again.

What a job stores: its plan (expanded arguments: what history shows and a resume runs again)
and, while it is open, its environment (every status's hosts: a resumed command must get the
same). A job that will not run (nothing to run, paused, refused) stores no environment, and a
finished one drops it in the transaction that finishes it: it never runs again and history does
not show it. So only open jobs hold a copy of the host lists, and prune() keeps the newest
`keep_jobs` finished ones. SQLite reuses the pages freed: the file stops growing, it does not
shrink.
"""

import json
import logging
import time

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


class Journal:
    def __init__(self, store):
        self._store = store

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

    def last_id(self):
        return self._store.conn.execute("SELECT max(id) FROM jobs").fetchone()[0] or 0

    def open_jobs(self):
        rows = self._store.conn.execute(
            "SELECT id, host, target, state FROM jobs WHERE state IN ('queued', 'running')"
            " ORDER BY id").fetchall()
        return [dict(id=r[0], host=r[1], target=r[2], state=r[3]) for r in rows]

    def next_job(self):
        row = self._store.conn.execute(
            "SELECT id, host, source, target, manual, plan, env, state, resumed FROM jobs"
            " WHERE state IN ('queued', 'running') ORDER BY id LIMIT 1").fetchone()
        if row is None:
            return None
        done = {r[0]: r for r in self._store.conn.execute(
            "SELECT idx, finished FROM steps WHERE job = ?", (row[0],))}
        return dict(id=row[0], host=row[1], source=row[2], target=row[3], manual=bool(row[4]),
                    steps=json.loads(row[5]), env=json.loads(row[6]), state=row[7],
                    resumed=bool(row[8]), progress=done)

    def mark_resumed(self, job_id):
        with self._store.transaction() as conn:
            conn.execute("UPDATE jobs SET resumed = 1 WHERE id = ?", (job_id,))

    def step_started(self, job_id, idx, resumed):
        """Claim a step; False if it is already finished (checked under the write lock, so a
        finished command can never be started again, whatever a caller read before)."""
        with self._store.transaction() as conn:
            row = conn.execute("SELECT finished FROM steps WHERE job = ? AND idx = ?",
                               (job_id, idx)).fetchall()
            if row and row[0][0] is not None:
                return False
            conn.execute("UPDATE jobs SET state = 'running' WHERE id = ?", (job_id,))
            conn.execute(
                "INSERT OR REPLACE INTO steps (job, idx, started, resumed) VALUES (?, ?, ?, ?)",
                (job_id, idx, time.time(), int(resumed)))
        return True

    def step_pid(self, job_id, idx, pid):
        """The command runs: its pid (for the operator) and when it started (CLOCK_MONOTONIC)."""
        started_mono = time.monotonic()
        with self._store.transaction() as conn:
            conn.execute("UPDATE steps SET pid = ?, started_mono = ?"
                         " WHERE job = ? AND idx = ?",
                         (pid, started_mono, job_id, idx))

    def step_finished(self, job_id, idx, rc, duration, output, error, finished=None):
        """finished: when it ended, if that is written later (after a full disk)."""
        with self._store.transaction() as conn:
            conn.execute(
                "UPDATE steps SET finished = ?, rc = ?, duration = ?, output = ?, error = ?"
                " WHERE job = ? AND idx = ?",
                (finished or time.time(), rc, duration, output, error, job_id, idx))

    def step_interrupted(self, job_id, idx, duration, output, why):
        """Cut short on purpose: the reason is kept, the step stays unfinished (to resume)."""
        with self._store.transaction() as conn:
            conn.execute("UPDATE steps SET duration = ?, output = ?, error = ? WHERE job = ? AND"
                         " idx = ?", (duration, output, why, job_id, idx))

    def finish(self, job_id, state, note=None):
        with self._store.transaction() as conn:
            conn.execute("UPDATE jobs SET state = ?, finished = ?, note = COALESCE(?, note),"
                         " env = '{}' WHERE id = ?",
                         (state, time.time(), note, job_id))

    def prune(self, keep, below=0):
        """Delete the jobs (and their steps) under the newest `keep` ids and under the oldest
        open job, as cluster mode does with its records. Returns the first id kept; `below`:
        the one returned last time (nothing to do unless it moved: no write at all)."""
        conn = self._store.conn
        floor = (conn.execute("SELECT max(id) FROM jobs").fetchone()[0] or 0) - keep + 1
        oldest_open = conn.execute("SELECT min(id) FROM jobs WHERE state IN ('queued',"
                                   " 'running')").fetchone()[0]
        floor = min(floor, oldest_open or floor)
        if floor <= below:
            return below
        with self._store.transaction() as conn:  # ids only grow: a job added since is above
            conn.execute("DELETE FROM steps WHERE job < ?", (floor,))
            conn.execute("DELETE FROM jobs WHERE id < ?", (floor,))
        return floor

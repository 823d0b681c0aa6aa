"""The one crash-safe file behind the state table and the action journal.

SQLite in WAL mode: a kill at any moment leaves the last committed transaction in place. The
host table and the journal share the file so that committing a status and queueing its actions
is one transaction (WAL makes transactions atomic per file only).

Against power loss: the action runner commits with synchronous=FULL, so the WAL is fsync'd
before every command starts. The supervisor commits with NORMAL (no fsync of its own). What a
power cut keeps of a WAL is always a prefix of its commits, and the runner's fsync covers every
frame before its own, so the commit that queued a job is on disk before the job's first command
starts. A cut before that loses only commits whose actions never started; the checks see the
same again after the reboot and commit it again. Manual transitions are fsync'd at once: the
operator was told they were taken.
"""

import contextlib
import os
import sqlite3
import time

SCHEMA = """
CREATE TABLE IF NOT EXISTS hosts (key BLOB PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    host TEXT NOT NULL, source TEXT NOT NULL, target TEXT NOT NULL, manual INTEGER NOT NULL,
    created REAL NOT NULL, state TEXT NOT NULL, plan TEXT NOT NULL, env TEXT NOT NULL,
    resumed INTEGER NOT NULL DEFAULT 0, finished REAL, note TEXT,
    observed_mono REAL);  -- CLOCK_MONOTONIC when a worker read the deciding result
CREATE TABLE IF NOT EXISTS envbases (id INTEGER PRIMARY KEY AUTOINCREMENT, statuses TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_open ON jobs (state) WHERE state IN ('queued', 'running');
CREATE TABLE IF NOT EXISTS steps (
    job INTEGER NOT NULL, idx INTEGER NOT NULL, started REAL NOT NULL, finished REAL,
    rc INTEGER, duration REAL, output TEXT, error TEXT, resumed INTEGER NOT NULL DEFAULT 0,
    pid INTEGER, started_mono REAL, PRIMARY KEY (job, idx));
"""


class StoreError(Exception):
    pass


class Store:
    def __init__(self, path, timeout=5.0, readonly=False, fsync_each=True):
        """readonly: for readers beside (or without) the daemon, which never write or create.
        fsync_each: synchronous=FULL (else NORMAL; see the module's note for who may)."""
        self.path = str(path)
        target, uri = (f"file:{self.path}?mode=ro", True) if readonly else (self.path, False)
        self.conn = sqlite3.connect(target, timeout=timeout, isolation_level=None,
                                    check_same_thread=False, uri=uri)
        self.fsync_each = fsync_each
        if not readonly:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self._sync(fsync_each)
        self._depth = 0

    def _sync(self, full):
        self.conn.execute(f"PRAGMA synchronous={'FULL' if full else 'NORMAL'}")

    @contextlib.contextmanager
    def transaction(self, durable=False):
        """Nestable: only the outermost level begins and commits. durable: fsync this commit
        even where commits are not fsync'd each."""
        outer = self._depth == 0
        raise_sync = outer and durable and not self.fsync_each
        if raise_sync:
            self._sync(True)
        if outer:
            self.conn.execute("BEGIN IMMEDIATE")
        self._depth += 1
        try:
            try:
                yield self.conn
            except BaseException:
                self._depth -= 1
                if outer:
                    self.conn.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                try:
                    self.conn.execute("COMMIT")
                except sqlite3.Error:
                    # A failed COMMIT (a full disk) may leave the transaction open; the next
                    # BEGIN would fail for ever after.
                    if self.conn.in_transaction:
                        self.conn.execute("ROLLBACK")
                    raise
        finally:
            if raise_sync:
                self._sync(False)

    def blank(self):
        """No table yet: a file the daemon has only just created (its schema comes in one
        transaction), which a reader shows as empty rather than as an error."""
        return self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0

    def close(self):
        self.conn.close()


def open_store(path, corrupt="moveaside", fsync_each=True):
    """Open (or create) the store; a corrupt file is moved aside or refused, never half-read.

    Returns (store, message); message names the moved file when that happened.
    """
    message = None
    try:
        store = Store(path, fsync_each=fsync_each)
        _verify(store)
    except sqlite3.DatabaseError as e:
        with contextlib.suppress(Exception):
            store.close()
        if corrupt == "refuse":
            raise StoreError(f"{path}: state file unreadable ({e}); refusing to start "
                             f"(corrupt_table = refuse); move it away to start from empty"
                             ) from None
        aside = f"{path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(f"{path}{suffix}"):
                os.replace(f"{path}{suffix}", f"{aside}{suffix}")
        message = f"{path}: state file unreadable ({e}); moved aside to {aside}, starting empty"
        store = Store(path, fsync_each=fsync_each)
        _verify(store)
    return store, message


def _verify(store):
    row = store.conn.execute("PRAGMA quick_check").fetchone()
    if row[0] != "ok":
        raise sqlite3.DatabaseError(f"quick_check: {row[0]}")
    # One transaction, so a reader beside a starting daemon sees all tables or none.
    store.conn.executescript(f"BEGIN IMMEDIATE;{SCHEMA}COMMIT;")
    for table in ("hosts", "jobs", "steps"):
        store.conn.execute(f"SELECT count(*) FROM {table}").fetchone()

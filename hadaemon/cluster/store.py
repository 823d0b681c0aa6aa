"""The host table and the action journal of cluster mode, kept in etcd.

EtcdTable has the methods of table.Table (get, status, set, items, transaction); EtcdJournal
holds what journal.Journal holds (jobs, one record per command started), plus what a cluster
needs on top: claims. For the runner loop it is a job store with journal.Journal's methods
(next_job, records, step_started, step_pid, step_finished, step_interrupted, close, release);
its gate (cluster/runner.py) says which jobs are this node's.

Writes made inside `store.transaction(guard)` go to etcd as one
transaction at the end of the block, applied only if every compare of the guard holds (the
leader key for commits, the claim for a job's records); otherwise nothing is written and Refused
is raised. Outside a transaction each write is applied alone.
"""

import contextlib
import json
import logging
import time
from dataclasses import replace

from .. import history
from ..job import Fenced, Job, State, StepRecord, next_step
from ..names import UNKNOWN
from .etcd import (EtcdCompacted, EtcdUnavailable, absent, delete, delete_range, jput, put,
                   read_keys, value_is)
from .jobs import AT_COMMIT, environment
from .keys import json_or_empty


log = logging.getLogger("hadaemon.runner")


class Refused(Exception):
    """A guard compare did not hold: nothing of the transaction was written."""


class EtcdStore:
    def __init__(self, etcd, keys):
        self.etcd, self.keys = etcd, keys
        self._ops = None
        self.answer = None  # etcd's answer to the last transaction (its revision, for one)

    @contextlib.contextmanager
    def transaction(self, guard=()):
        if self._ops is not None:  # nested: the outermost block commits
            yield self
            return
        self._ops, self._compares = [], list(guard)
        try:
            yield self
            ops, compares = self._ops, self._compares
        finally:
            self._ops = None
        ok, self.answer = self.etcd.txn_full(compares, ops)
        if not ok:
            raise Refused()

    def require(self, *compares):
        """Inside a transaction: more compares that must hold for it to apply."""
        self._compares.extend(compares)

    def write(self, *ops):
        if self._ops is None:
            self.etcd.txn([], list(ops))
        else:
            self._ops.extend(ops)


def table_stamp(keys):
    """The op that moves the table's stamp: in every transaction that changes table/ (a look
    reads table/ only when it moved: sync.py), the leader's and cluster-init's alike."""
    return put(keys.table_stamp, "")


class EtcdTable:
    def __init__(self, store):
        self._store, self._keys = store, store.keys

    def get(self, host):
        raw = self._store.etcd.get(self._keys.table + host)
        return json.loads(raw) if raw else None

    def status(self, host):
        entry = self.get(host)
        return entry["status"] if entry else UNKNOWN

    def set(self, host, entry):
        self._store.write(jput(self._keys.table + host, entry))

    def stamp(self):
        return table_stamp(self._keys)

    def items(self):
        """(host, entry) sorted by host, and the entries that could not be read."""
        return self.parse(self._store.etcd.range(self._keys.table))

    def parse(self, kvs):
        """items() of a range of table/ read already."""
        result, broken = [], []
        for key, (value, *_) in sorted(kvs.items()):
            try:
                result.append((key[len(self._keys.table):], json.loads(value)))
            except ValueError as e:
                broken.append(f"{key}: {e}")
        return result, broken

    def transaction(self, guard=()):
        return self._store.transaction(guard)


class EtcdJournal:
    def __init__(self, store, node=None):
        """node: the node whose runner works through it (named in each step record)."""
        self._store, self._keys, self.node = store, store.keys, node
        self._env = (None, None)  # (job id, its variables rebuilt)

    @property
    def _etcd(self):
        return self._store.etcd

    # -- the leader's side --------------------------------------------------------------------

    def enqueue(self, *jobs):
        """Queue jobs (their ids follow `seq`, which is written once: etcd refuses a
        transaction that writes one key twice) in a transaction; open only those with
        something to run. Each id must be free: a leader whose count fell behind (a commit that
        landed but whose answer was lost) is refused instead of overwriting a job."""
        for job in jobs:
            self._store.require(absent(self._keys.job(job["id"])))
            self._store.write(jput(self._keys.job(job["id"]), job))
            if job["state"] == "queued":
                self._store.write(put(self._keys.open_job(job["id"]), ""))
        if jobs:
            self._store.write(put(self._keys.seq, str(max(j["id"] for j in jobs))))

    def forget_below(self, floor):
        """Delete the job and command records of every id below floor."""
        self._store.write(delete_range(self._keys.job(0), self._keys.job(floor)),
                          delete_range(self._keys.steps + f"{0:012d}",
                                       self._keys.steps + f"{floor:012d}"))

    def last_id(self):
        raw = self._etcd.get(self._keys.seq)
        return raw, int(raw) if raw else 0

    # -- the runners' side: the job store protocol (journal.Journal has the same) -------------

    errors = (EtcdUnavailable,)  # etcd out of reach, or refusing: the runner retries

    def trouble(self, what, e):
        return f"etcd unreachable: cannot {what} ({e}): retrying; no command starts meanwhile"

    def recovered(self, what):
        return f"etcd reachable again: jobs go on (done: {what})"

    def open_jobs(self, open_ids):
        """[(stored bytes, job dict)] of the given open ids: fence jobs first, then in id
        order."""
        found = read_keys(self._etcd, [self._keys.job(job_id) for job_id in open_ids])
        jobs = [(raw, json.loads(raw)) for raw, *_ in found.values()]
        return sorted(jobs, key=lambda j: (j[1].get("kind") != "fence", j[1]["id"]))

    def next_job(self, gate):
        """The job this runner holds already (a command was held back), else the first open
        one (fence jobs first) the gate lets begin whose next command is this node's, claimed
        for it; None if there is none."""
        open_ids = gate.open_ids()
        if not open_ids:
            return None  # the usual case: no claim/ read on every poll
        claims = {k: v.decode() for k, (v, *_) in self._etcd.range(self._keys.claims).items()}
        mine = gate.holder()
        for raw, d in self.open_jobs(open_ids):
            job = Job.from_dict(d, raw)
            holder = claims.get(self._keys.claim(job.id))
            if holder is not None:
                if holder == mine == job.holder:
                    return job  # ours already: the claim outlived a command held back
                continue
            records = self.records(job)
            if not gate.may_begin(job, records) or not gate.ours(job, next_step(job,
                                                                                records)[0]):
                continue
            claimed = self.claim(job, mine, gate.lease.id)
            if claimed:
                return claimed
        return None

    def claim(self, job, holder, lease):
        """Take an unclaimed job, unchanged since it was read: the job as claimed, or None if
        someone was first, or if its runner vanished and its host moved on (superseded)."""
        taken_over = bool(job.holder)  # its holder's claim vanished without a release
        claimed = job.moved(State.RUNNING, holder=holder, resumed=job.resumed or taken_over)
        job_key, claim = self._keys.job(job.id), self._keys.claim(job.id)
        if not self._etcd.txn([absent(claim), value_is(job_key, job.stored)],
                              [put(claim, holder, lease), jput(job_key, claimed.to_dict())]):
            return None
        if taken_over:
            log.warning("job #%d for %s: its runner is gone: taking it over", job.id, job.host)
            raw = self._etcd.get(self._keys.table + job.host)
            status = json.loads(raw)["status"] if raw else UNKNOWN
            if job.kind == "transition" and status != job.target:
                note = f"{job.host} is {status} now, not {job.target}"
                if self.close(claimed, State.SUPERSEDED, note):
                    log.info("job #%d %s -> %s: superseded (%s)", job.id, job.host, job.target,
                             note)
                return None
        return claimed

    def environment(self, job):
        """The job's HA_* variables. A transition job's (jobs.AT_COMMIT) are the table as the
        transaction that created the job left it: read at the job key's create revision (the
        runner asks before every command, so the last job's are kept). A fence job, and a job
        queued by a version before AT_COMMIT, carry theirs."""
        if job.env != AT_COMMIT:
            return job.env
        if self._env[0] != job.id:
            self._env = (job.id, environment(job, self._statuses_at_commit(job)))
        return self._env[1]

    def _statuses_at_commit(self, job):
        key = self._keys.job(job.id)
        found = read_keys(self._etcd, [key])
        revision = found[key][2] if key in found else 0
        try:
            if not revision:  # pruned meanwhile: it will not run
                raise EtcdCompacted(f"job #{job.id} is no longer in etcd")
            kvs = self._etcd.range(self._keys.table, revision)
        except EtcdCompacted as e:
            log.error("job #%d: the table its commit left (etcd revision %d) cannot be read "
                      "(%s): its commands get the HA_<STATUS> variables of the table as it is "
                      "now", job.id, revision, e)
            kvs = self._etcd.range(self._keys.table)
        return {k[len(self._keys.table):]: json_or_empty(v).get("status", UNKNOWN)
                for k, (v, *_) in kvs.items()}

    def records(self, job):
        """{index: StepRecord} of the job's commands started, each with its stored bytes."""
        prefix = f"{self._keys.steps}{job.id:012d}/"
        return {int(k[len(prefix):]): StepRecord.from_dict(json.loads(v), v)
                for k, (v, *_) in self._etcd.range(prefix).items()}

    def _guard(self, job):
        return [value_is(self._keys.claim(job.id), job.holder)]

    def step_started(self, job, idx, seen, resumed):
        """Write a command's start record, if its record is still `seen` and our claim holds:
        the record; None if the record changed (read it again); Fenced if the claim is gone."""
        key = self._keys.step(job.id, idx)
        record = StepRecord(time.time(), resumed=resumed, node=self.node)
        ok, answer = self._etcd.txn_full(
            [value_is(key, seen.stored) if seen is not None else absent(key)],
            [{"request_txn": {"compare": self._guard(job),
                              "success": [jput(key, record.to_dict())]}}])
        if not ok:
            return None
        if not answer["responses"][0]["response_txn"].get("succeeded"):
            raise Fenced(job.id)
        return record

    def step_pid(self, job, idx, pid):
        """Not kept in etcd: the pid means something on one node only."""

    def step_finished(self, job, idx, started, record):
        """Complete the record we started; False if another runner restarted the command.
        Guarded by our own start record, not the claim: if nobody restarted the command, its
        outcome is true and recording it late still saves a second run."""
        key = self._keys.step(job.id, idx)
        return self._etcd.txn([value_is(key, json.dumps(started.to_dict(), sort_keys=True))],
                              [jput(key, record.to_dict())])

    def step_interrupted(self, job, idx, started, record):
        """Not written: the record stays as started, and whoever takes the job next resumes
        the command (HA_RESUMED=1)."""

    def close(self, job, state, note=None):
        """The job ends in `state` (an allowed edge from its own), if our claim holds: True;
        False if it is no longer ours."""
        closed = job.moved(state, note=note, finished=time.time(), holder="")
        return self._etcd.txn(self._guard(job), [
            jput(self._keys.job(job.id), closed.to_dict()),
            delete(self._keys.open_job(job.id)), delete(self._keys.claim(job.id))])

    def release(self, job):
        """Hand the job on: its claim goes, its next runner claims it again."""
        self._etcd.txn(self._guard(job), [jput(self._keys.job(job.id),
                                               replace(job, holder="").to_dict()),
                                          delete(self._keys.claim(job.id))])


def read_history(etcd, keys, limit=100, host=None):
    """Jobs in etcd in the shape of history.read(), oldest first."""
    jobs = [json_or_empty(v) for v, *_ in etcd.range(keys.jobs).values()]
    jobs = sorted((j for j in jobs if j and (not host or j.get("host") == host)),
                  key=lambda j: j["id"])[-int(limit):]
    steps = {}
    if jobs:
        for key, (value, *_) in etcd.range(keys.steps).items():
            job_id, idx = key[len(keys.steps):].split("/")
            steps.setdefault(int(job_id), {})[int(idx)] = json_or_empty(value)
    return [history.entry(j, steps.get(j["id"], {})) for j in jobs]

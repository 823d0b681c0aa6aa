"""The host table and the action journal of cluster mode, kept in etcd.

EtcdTable has the methods of table.Table (get, status, set, items, transaction); EtcdJournal
holds what journal.Journal holds (jobs, one record per command started), plus what a cluster
needs on top: claims. Writes made inside `store.transaction(guard)` go to etcd as one
transaction at the end of the block, applied only if every compare of the guard holds (the
leader key for commits, the claim for a job's records); otherwise nothing is written and Refused
is raised. Outside a transaction each write is applied alone.
"""

import contextlib
import json

from .. import history
from ..names import UNKNOWN
from .etcd import absent, delete, delete_range, jput, put, value_is
from .keys import json_or_empty


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

    def items(self):
        """(host, entry) sorted by host, and the entries that could not be read."""
        return self.parse(self._store.etcd.range(self._keys.table))

    def parse(self, kvs):
        """items() of a range of table/ read already."""
        result, broken = [], []
        for key, (value, _, _) in sorted(kvs.items()):
            try:
                result.append((key[len(self._keys.table):], json.loads(value)))
            except ValueError as e:
                broken.append(f"{key}: {e}")
        return result, broken

    def transaction(self, guard=()):
        return self._store.transaction(guard)


class EtcdJournal:
    def __init__(self, store):
        self._store, self._keys = store, store.keys

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

    # -- the runners' side ----------------------------------------------------------------------

    def open_jobs(self, open_ids):
        """[(stored bytes, job)] of the given open ids: fence jobs first, then in id order."""
        jobs = []
        for job_id in open_ids:
            raw = self._etcd.get(self._keys.job(job_id))
            if raw is not None:
                jobs.append((raw, json.loads(raw)))
        return sorted(jobs, key=lambda j: (j[1].get("kind") != "fence", j[1]["id"]))

    def claims(self):
        """{claim key: holder} of every claimed job."""
        return {k: v.decode() for k, (v, _, _) in self._etcd.range(self._keys.claims).items()}

    def holder(self, claims, job_id):
        """Who holds job_id per `claims`, or None."""
        return claims.get(self._keys.claim(job_id))

    def progress(self, job_id, raw=False):
        """Command records by index: parsed, or as stored (bytes, for compares)."""
        prefix = f"{self._keys.steps}{job_id:012d}/"
        return {int(k[len(prefix):]): v if raw else json.loads(v)
                for k, (v, _, _) in self._etcd.range(prefix).items()}

    def claim(self, raw, job, holder, lease):
        """Take an unclaimed job, unchanged since it was read as `raw`; False if someone was
        first."""
        job_key, claim = self._keys.job(job["id"]), self._keys.claim(job["id"])
        return self._etcd.txn([absent(claim), value_is(job_key, raw)],
                              [put(claim, holder, lease), jput(job_key, job)])

    def _guard(self, job):
        return [value_is(self._keys.claim(job["id"]), job["holder"])]

    def step_started(self, job, idx, seen, record):
        """Write a command's start record: 'ok'; 'changed' if its record is no longer `seen`;
        'lost' if our claim is gone."""
        key = self._keys.step(job["id"], idx)
        ok, answer = self._etcd.txn_full(
            [value_is(key, seen) if seen is not None else absent(key)],
            [{"request_txn": {"compare": self._guard(job), "success": [jput(key, record)]}}])
        if not ok:
            return "changed"
        return "ok" if answer["responses"][0]["response_txn"].get("succeeded") else "lost"

    def step_finished(self, job, idx, started, record):
        """Complete the record we started; False if another runner restarted the command."""
        key = self._keys.step(job["id"], idx)
        return self._etcd.txn([value_is(key, json.dumps(started, sort_keys=True))],
                              [jput(key, record)])

    def finish(self, job, state, note, now):
        guard = self._guard(job)
        job.update(state=state, note=note, finished=now, holder="")
        return self._etcd.txn(guard, [jput(self._keys.job(job["id"]), job),
                                      delete(self._keys.open_job(job["id"])),
                                      delete(self._keys.claim(job["id"]))])

    def release(self, job):
        guard = self._guard(job)
        job.update(holder="")
        self._etcd.txn(guard, [jput(self._keys.job(job["id"]), job),
                               delete(self._keys.claim(job["id"]))])


def read_history(etcd, keys, limit=100, host=None):
    """Jobs in etcd in the shape of history.read(), oldest first."""
    jobs = [json_or_empty(v) for v, _, _ in etcd.range(keys.jobs).values()]
    jobs = sorted((j for j in jobs if j and (not host or j.get("host") == host)),
                  key=lambda j: j["id"])[-int(limit):]
    steps = {}
    if jobs:
        for key, (value, _, _) in etcd.range(keys.steps).items():
            job_id, idx = key[len(keys.steps):].split("/")
            steps.setdefault(int(job_id), {})[int(idx)] = json_or_empty(value)
    return [history.entry(j, steps.get(j["id"], {})) for j in jobs]

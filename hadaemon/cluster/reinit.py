"""`hadaemon cluster-init`: put a cluster back into an etcd that lost its data or went back.

What etcd holds is read (survey) and set against what the nodes know: the refusals they keep in
live/refusal/NODE (marker, highest job id, mirror of the table, pause) and this node's own
var/cluster.json and mirror, read from disk so that it works with the daemon stopped too. plan()
decides what to write, describe() says it, write() writes it: the statuses of the freshest
mirror, the job counter above every id any node has seen, open jobs of an older snapshot closed
as abandoned, and last the marker with a higher generation, which releases the nodes.
"""

import sqlite3
import time

from . import clusterid
from .keys import json_or_empty
from .parts import pause_writes, refusal_report
from .store import table_stamp
from .etcd import (TXN_OPS as BATCH, absent, delete, delete_range, jput, prefix_end, put,
                   read_keys, value_is)
from ..names import UNKNOWN



class NotDone(Exception):
    """Nothing to re-initialise, or not safely: the message says why."""


def survey(etcd, keys):
    """What etcd holds now: clusterid.found() plus what a re-initialisation rewrites."""
    live, seen = clusterid.look(etcd, keys)
    # Read apart, in pages or by key, not in the look's one answer: at 100 000 hosts the table
    # alone outlasts a request's timeout. What the write relies on (the marker and the job
    # counter, as the look saw them) guards it.
    open_ids = sorted(int(k[len(keys.open):]) for k in live if k.startswith(keys.open))
    records = {}
    for value, *_ in read_keys(etcd, [keys.job(i) for i in open_ids]).values():
        job = json_or_empty(value)
        if isinstance(job.get("id"), int):
            records[job["id"]] = job
    last = (etcd.last(keys.jobs) or keys.jobs)[len(keys.jobs):]
    top_job = max([*records, int(last) if last.isdigit() else 0])
    hosts = sorted(k[len(keys.table):] for k in etcd.range(keys.table))
    parts = {k[len(keys.refusal_parts):]: v
             for k, (v, *_) in etcd.range(keys.refusal_parts).items()}
    for node, header in sorted(seen["refusals"].items()):
        seen["refusals"][node] = refusal_report(node, header, parts)
        if seen["refusals"][node] is None:
            raise NotDone(f"node {node}'s refusal is being written, or went with its lease: "
                          "run cluster-init again")
    seen.update(marker_raw=live.get(keys.marker, (None,))[0],
                top_job=top_job, hosts=hosts, open={i: records.get(i) for i in open_ids})
    return seen


def local_source(home, name, me, seen):
    """This node as a source, from its files: None if it knows nothing or trusts etcd."""
    memory = clusterid.load(home, name)
    if not memory:
        return None
    what, reason = clusterid.verdict(memory, seen, me)
    if what != "refuse":
        return None
    memory = clusterid.refused(name, memory, reason, seen) if not memory.get("refused") \
        else memory
    return dict(clusterid.report(me, memory, mirror(home), None), local=True)


def mirror(home):
    """The committed statuses in this node's state file; {} if it cannot be read."""
    from ..store import Store
    from ..table import Table
    if not home.state_db.is_file():
        return {}
    try:
        store = Store(home.state_db, readonly=True)
        try:
            return {h: e for h, e in Table(store).items()[0]
                    if e.get("status", UNKNOWN) != UNKNOWN}
        finally:
            store.close()
    except (sqlite3.Error, OSError):
        return {}


def plan(seen, sources):
    """What to write, from what etcd holds (survey) and what the refusing nodes know
    ({node: clusterid.report()}); NotDone if there is nothing to re-initialise."""
    marker = seen["marker"]
    if not sources:
        if marker is None:
            raise NotDone("no node has seen this cluster in etcd and none refuses it: the "
                          "nodes initialise a new cluster themselves when they start")
        raise NotDone(f"nothing to re-initialise: etcd holds marker {marker['id']} "
                      f"generation {marker['generation']} and no node refuses it")
    ids = {s["marker"] for s in sources.values() if s.get("marker")}
    if len(ids) > 1:
        raise NotDone("the nodes remember different clusters (" + ", ".join(
            f"{n}: marker {s['marker']}" for n, s in sorted(sources.items()) if s.get("marker"))
            + "): stop the node(s) of the other cluster, or remove their var/cluster.json")
    generation = 1 + max([marker["generation"] if marker else 0] + [
        max(s.get("generation", 0), s.get("refused_generation", 0)) for s in sources.values()])
    freshest = max(sources, key=lambda n: (sources[n].get("seq", 0),
                                           sources[n].get("revision", 0), n))
    new_marker = {"id": ids.pop() if ids else (marker or {}).get("id") or
                  clusterid.new_marker("", seen)["id"], "generation": generation,
                  "created": time.time(), "etcd_cluster": seen["etcd_cluster"]}
    return {"marker": new_marker,
            "seq": max([seen["seq"], seen["top_job"]] + [s.get("seq", 0)
                                                         for s in sources.values()]),
            "table": sources[freshest].get("table") or {}, "table_from": freshest,
            "paused": sources[freshest].get("paused"),
            "abandon": sorted(seen["open"])}


def describe(endpoints, seen, sources, p):
    """What etcd holds, what the nodes know, and what plan p writes: for the operator."""
    marker = seen["marker"]
    lines = [f"etcd {endpoints}: cluster id {seen['etcd_cluster']}, revision {seen['revision']}"
             f", job counter #{seen['seq']}; the cluster's marker: " +
             (f"{marker['id']} generation {marker['generation']} (created at revision "
              f"{seen['marker_rev']})" if marker else "MISSING"),
             "what the nodes know:"]
    for node, s in sorted(sources.items()):
        lines.append(f"  {node}{' (this node, from its files)' if s.get('local') else ''}: "
                     f"marker {s.get('marker')} generation {s.get('generation')}, cluster id "
                     f"{s.get('etcd_cluster')}, revision {s.get('revision')}, job "
                     f"#{s.get('seq')}, {len(s.get('table') or {})} status(es); refuses: "
                     f"{s.get('reason')}")
    m = p["marker"]
    statuses = ", ".join(f"{h}={e['status']}" for h, e in sorted(p["table"].items()))
    lines += ["cluster-init will:",
              f"  - set the job counter to #{p['seq']}: job ids go on from #{p['seq'] + 1}, "
              f"above every id etcd or any node above has seen",
              f"  - replace the {len(seen['hosts'])} status(es) in etcd with the "
              f"{len(p['table'])} of {p['table_from']}'s mirror (the freshest): "
              f"{statuses or 'none'}"]
    if p["abandon"]:
        lines.append(f"  - close {len(p['abandon'])} job(s) open in etcd as abandoned, never run "
                     f"(they may have run before etcd went back): "
                     + ", ".join(f"#{i}" for i in p["abandon"]))
    if p["paused"]:
        lines.append(f"  - pause the cluster again, as {p['table_from']} knew it")
    lines += [f"  - write marker {m['id']} generation {m['generation']}: the nodes that refuse "
              f"take it for the re-initialisation and act again, without firing anything for "
              f"the statuses above; what changed since is committed then, as usual",
              "  (history lost with etcd's data is not restored)"]
    return lines


def write(etcd, keys, seen, p):
    """Write plan p, guarded by the marker and job counter as surveyed; NotDone if either
    changed meanwhile (another cluster-init, or a node initialising)."""
    guard = [value_is(keys.marker, seen["marker_raw"]) if seen["marker_raw"] is not None
             else absent(keys.marker),
             value_is(keys.seq, seen["seq_raw"]) if seen["seq_raw"] is not None
             else absent(keys.seq)]
    now = time.time()
    ops = [jput(keys.table + h, e) for h, e in sorted(p["table"].items())]
    for job_id in p["abandon"]:
        job = seen["open"].get(job_id)
        if job:
            ops.append(jput(keys.job(job_id), dict(
                job, state="abandoned", holder="", finished=now,
                note="open in etcd when the cluster was re-initialised: may have run; not run")))
        ops += [delete(keys.open_job(job_id)), delete(keys.claim(job_id))]
    last = [jput(keys.marker, p["marker"]), put(keys.seq, str(p["seq"])), delete(keys.leader)]
    first, pause = [delete_range(keys.table, prefix_end(keys.table))], []
    if p["paused"]:  # its statuses in parts (parts.py), its header with the marker
        *pause, header = pause_writes(keys, p["paused"])[0]
        first.append(delete_range(keys.pause, prefix_end(keys.pause)))
        last += header
    # What is replaced is deleted first, on its own: etcd refuses a delete and a put of one
    # key in a transaction. The marker goes last: it is what releases the nodes.
    batches = [first] + [ops[i:i + BATCH] for i in range(0, len(ops), BATCH)] + pause + [last]
    for batch in batches:  # each moves the table's stamp: the nodes read table/ again
        if not etcd.txn(guard, batch + [table_stamp(keys)]):
            raise NotDone("etcd changed while cluster-init wrote (another cluster-init, or a "
                          "node initialising a new cluster): nothing more written; run it again")

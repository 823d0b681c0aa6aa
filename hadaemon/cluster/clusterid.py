"""Whether etcd still holds this cluster: its marker, what each node remembers, the verdict.

An etcd that lost its data (wiped, or a new one) or was restored from an older snapshot answers
like any other, and a node that trusted it would take its empty or old table for the truth:
commit `unknown -> master` again, reuse job ids, run finished jobs again. So the first node of a
new cluster writes a marker (live/marker: a random id and a generation), and every node
remembers in var/cluster.json the marker, the marker's create revision, etcd's cluster id, and
the highest revision and job id it has seen. verdict() compares what etcd shows with that; a
node that refuses keeps refusing (the refusal is remembered too) until an operator runs
`hadaemon cluster-init`, which writes the marker again with a higher generation.
"""

import json
import os
import time
import uuid

from .keys import json_or_empty

FILE = "cluster.json"  # in var/
UNREADABLE = "(unreadable)"  # the id of a marker that is not one
SAVE_EVERY = 10.0  # seconds between two writes of the highest revision seen (job ids: at once)


# -- what etcd shows ----------------------------------------------------------------------------

def found(keys, live, header, seq_raw=None, seq_known=False):
    """What one look at etcd shows: live is a range of live/ (it holds the marker and the
    nodes' refusals), header the answer's header; seq_raw the job counter's value, when read."""
    raw = live.get(keys.marker)
    marker = None
    if raw is not None:
        marker = _object(raw[0])
        if not (isinstance(marker.get("id"), str) and isinstance(marker.get("generation"), int)):
            marker = {"id": UNREADABLE, "generation": 0}
    refusals = {k[len(keys.refusals):]: _object(v) for k, (v, *_) in live.items()
                if k.startswith(keys.refusals)}
    return {"marker": marker, "marker_rev": raw[2] if raw else 0,
            "etcd_cluster": str(header.get("cluster_id", "")),
            "revision": int(header.get("revision", 0)),
            "seq": (int(seq_raw) if seq_raw else 0) if seq_known else None, "seq_raw": seq_raw,
            "refusals": refusals}


def look(etcd, keys):
    """One read of live/ and the job counter: (the range of live/, found() of it)."""
    (live,), (seq,), header = etcd.read([keys.live], [keys.seq])
    return live, found(keys, live, header, seq.get(keys.seq, (None,))[0], True)


def _object(raw):
    value = json_or_empty(raw)
    return value if isinstance(value, dict) else {}


# -- the verdict ----------------------------------------------------------------------------------

def verdict(memory, seen, me):
    """("ok" | "init" | "adopt" | "refuse", reason or None).

    memory: what this node remembers ({} if it has never seen a marker); seen: found().
    init: a brand-new cluster (no marker, and no node remembers one): write it. adopt: remember
    the marker found (a node new to the cluster, or a re-initialisation). A node that refuses
    stays refusing until the marker it knew comes back with a higher generation.
    """
    marker = seen["marker"]
    if memory.get("refused"):
        if marker and memory.get("marker") in (None, marker["id"]) \
                and marker["generation"] > memory.get("refused_generation", 0):
            return _job_counter(memory, seen) or ("adopt", None)
        return "refuse", memory["refused"]
    if marker and marker["id"] == UNREADABLE:
        return "refuse", "the cluster's marker in etcd is unreadable: written by someone else"
    if not memory.get("marker"):
        return _other_refusal(seen, me) or (("adopt", None) if marker else ("init", None))
    return (_compare(memory, seen) or _job_counter(memory, seen) or _other_refusal(seen, me)
            or ("ok" if marker["generation"] == memory["generation"] else "adopt", None))


def _compare(memory, seen):
    """("refuse", why) at the first difference that a healthy etcd cannot show, else None."""
    marker, known = seen["marker"], f"marker {memory['marker']} generation {memory['generation']}"
    if marker is None:
        return "refuse", (f"the cluster's marker is missing from etcd (this node knows {known}, "
                          f"created at revision {memory['marker_rev']}): etcd lost its data, "
                          f"or it is another etcd")
    same = marker["generation"] == memory["generation"]  # higher: re-initialised, adopted
    for different, why in (
            (marker["id"] != memory["marker"],
             f"etcd holds marker {marker['id']}, this node knows {known}: etcd holds another "
             f"cluster's data"),
            (marker["generation"] < memory["generation"],
             f"etcd holds generation {marker['generation']} of the marker, this node knows "
             f"{known}: etcd was restored from a snapshot older than the last "
             f"re-initialisation"),
            (same and seen["marker_rev"] != memory["marker_rev"],
             f"the marker in etcd was created at revision {seen['marker_rev']}, this node "
             f"knows revision {memory['marker_rev']}: it was deleted and written again"),
            (same and seen["etcd_cluster"] != memory["etcd_cluster"],
             f"etcd's cluster id is {seen['etcd_cluster']}, this node knows "
             f"{memory['etcd_cluster']}: it is another etcd cluster"),
            (same and seen["revision"] < memory["revision"],
             f"etcd is at revision {seen['revision']}, this node has seen revision "
             f"{memory['revision']}: etcd was restored from an older snapshot")):
        if different:
            return "refuse", why
    return None


def _job_counter(memory, seen):
    if seen["seq"] is not None and seen["seq"] < memory.get("seq", 0):
        return "refuse", (f"etcd's job counter is at #{seen['seq']}, this node has seen job "
                          f"#{memory['seq']}: job ids would be used twice")
    return None


def _other_refusal(seen, me):
    """Another node refuses this very marker generation: the cluster is suspect for all."""
    marker = seen["marker"]
    for node, report in sorted(seen["refusals"].items()):
        if node == me:
            continue
        if marker is None or (report.get("marker") in (None, marker["id"]) and
                              report.get("refused_generation", 0) >= marker["generation"]):
            return "refuse", f"node {node} refuses this etcd: {report.get('reason')}"
    return None


# -- what a node remembers ----------------------------------------------------------------------

def new_marker(me, seen):
    return {"id": uuid.uuid4().hex[:16], "generation": 1, "created": time.time(), "by": me,
            "etcd_cluster": seen["etcd_cluster"]}


def adopted(name, seen, memory):
    """What a node remembers once it accepts the marker seen."""
    return {"name": name, "marker": seen["marker"]["id"],
            "generation": seen["marker"]["generation"], "marker_rev": seen["marker_rev"],
            "etcd_cluster": seen["etcd_cluster"], "revision": seen["revision"],
            "seq": max(seen["seq"] or 0, memory.get("seq", 0))}


def refused(name, memory, reason, seen):
    """memory, refusing from now on. refused_generation: a re-initialisation must go above it,
    so neither the marker refused nor a brand-new cluster's first one releases the node."""
    marker = seen["marker"]
    generation = max(memory.get("generation", 0), marker["generation"] if marker else 0)
    return dict(memory, name=name, refused=reason, refused_generation=generation)


def noted(memory, seen):
    """memory with the highest revision and job id seen; True if the job id grew (saved at
    once: a job id must never be used twice)."""
    grew = (seen["seq"] or 0) > memory.get("seq", 0)
    memory["revision"] = max(memory.get("revision", 0), seen["revision"])
    memory["seq"] = max(memory.get("seq", 0), seen["seq"] or 0)
    return grew


def path(home):
    return home.var / FILE


def load(home, name, problems=None):
    """What this node remembers of cluster `name`; {} if nothing (or another cluster's name).
    An unreadable file is reported in problems and read as nothing."""
    try:
        text = path(home).read_text()
    except FileNotFoundError:
        return {}
    except OSError as e:
        if problems is not None:
            problems.append(f"{path(home)}: {e.strerror}")
        return {}
    memory = _object(text)
    if memory.get("marker") and not all(isinstance(memory.get(k), t) for k, t in REMEMBERED):
        memory = {}
    if not memory and problems is not None:
        problems.append(f"{path(home)}: not what this node remembers of its cluster (a JSON "
                        f"object with {', '.join(k for k, _ in REMEMBERED)})")
    return memory if memory.get("name") == name else {}


REMEMBERED = (("name", str), ("marker", str), ("generation", int), ("marker_rev", int),
              ("etcd_cluster", str), ("revision", int), ("seq", int))


def save(home, memory):
    """Written whole (a temporary file renamed over the old one, fsync'd): a crash leaves the
    old memory or the new one."""
    target = path(home)
    tmp = target.with_name(target.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(memory, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)


def report(me, memory, table, paused):
    """This node's refusal, for live/refusal/NODE: what it knows, for `hadaemon cluster-init`."""
    return {"node": me, "reason": memory.get("refused"), "marker": memory.get("marker"),
            "generation": memory.get("generation", 0),
            "refused_generation": memory.get("refused_generation", 0),
            "seq": memory.get("seq", 0), "revision": memory.get("revision", 0),
            "etcd_cluster": memory.get("etcd_cluster"),
            "table": {h: {k: e.get(k) for k in ("status", "since", "manual")}
                      for h, e in table.items()},
            "paused": paused}

"""Records that grow with the hosts, kept as a small header in live/ and parts outside it.

live/ is read at every look, so no key in it may grow with the fleet (at 100 000 hosts one
such value passes etcd's 1.5 MiB request limit). Two records do grow: the pause (every host's
status at the pause, what resume compares with) and a refusing node's report (its mirror of
the table, for `hadaemon cluster-init`). Each keeps its small fields in live/ with `parts`, the
number of parts that are its own, and the rest under a prefix of its own, written before the
header: parts beyond the count (left by an interrupted write) are never read as its.

The pause's parts are {host: status} read in order, a later one over an earlier one: a resume
cut short appends the statuses it fired as one more part, in the transaction that queues them.
A refusal's parts are the text of its large fields, cut in pieces, with a digest in the header.
"""

import hashlib
import json

from .etcd import delete, delete_range, jput, prefix_end, put

PART_HOSTS = 2000  # statuses per part of the pause record (about 60 KiB)
PART_BYTES = 256 * 1024  # characters per part of a refusal's text
BIG = ("table", "paused")  # a refusal's fields that grow with the hosts


# -- the pause -----------------------------------------------------------------------------------

def pause_writes(keys, record):
    """The transactions that store pause record {at, by, statuses}, in order: each part on its
    own, then the header. -> ([ops of each transaction], the record as stored)."""
    statuses = sorted(record.get("statuses", {}).items())
    parts = [dict(statuses[i:i + PART_HOSTS]) for i in range(0, len(statuses), PART_HOSTS)]
    header = dict({k: v for k, v in record.items() if k != "statuses"}, parts=len(parts))
    return ([[jput(keys.pause_part(n), part)] for n, part in enumerate(parts)]
            + [[jput(keys.paused, header)]], dict(header, statuses=dict(statuses)))


def fired_writes(keys, record, fired):
    """Ops marking {host: status} as fired by a resume (they become the statuses at the pause),
    to go in the transaction that queues their jobs; -> (ops, the record after them)."""
    after = dict(record, statuses=dict(record.get("statuses", {}), **fired))
    if "parts" not in after:  # stored whole in live/paused by an older version: kept so
        return [jput(keys.paused, after)], after
    header = dict({k: v for k, v in after.items() if k != "statuses"}, parts=after["parts"] + 1)
    return ([jput(keys.pause_part(record["parts"]), fired), jput(keys.paused, header)],
            dict(after, parts=header["parts"]))


def pause_end(keys):
    """Ops that end the pause: the header and every part."""
    return [delete(keys.paused), delete_range(keys.pause, prefix_end(keys.pause))]


def pause_from(header, parts):
    """The pause record from its header in live/paused and its parts ({part key below the
    prefix: value bytes}); None when not paused. Parts missing (read while a resume ended)
    leave statuses out: the next look reads them again, the header having moved."""
    if not header:
        return None
    if "parts" not in header:
        return header
    statuses = {}
    for n in range(header["parts"]):
        try:
            statuses.update(json.loads(parts.get(f"{n:06d}", b"{}")))
        except (ValueError, TypeError):
            pass
    return dict(header, statuses=statuses)


# -- a refusal -----------------------------------------------------------------------------------

def refusal_writes(keys, me, report, lease):
    """The transactions that store a refusing node's report: its large fields as text in
    parts, then the header in live/refusal/NODE, all on the node's lease. -> (transactions,
    the header's text)."""
    text = json.dumps({k: report.get(k) for k in BIG}, sort_keys=True)
    pieces = [text[i:i + PART_BYTES] for i in range(0, len(text), PART_BYTES)] or [""]
    header = dict({k: v for k, v in report.items() if k not in BIG}, parts=len(pieces),
                  digest=_digest(text))
    header = json.dumps(header, sort_keys=True)
    return ([[put(keys.refusal_part(me, n), piece, lease)] for n, piece in enumerate(pieces)]
            + [[put(keys.refusal(me), header, lease)]], header)


def refusal_report(node, header, parts):
    """A node's whole report from its header and the parts under refusal/ ({key: value}):
    None if they do not match its digest (being rewritten, or gone with its lease)."""
    if "digest" not in header:  # an older version kept the report whole in live/
        return header
    text = "".join(parts.get(f"{node}/{n:06d}", b"").decode("utf-8", "replace")
                   for n in range(header.get("parts", 0)))
    if _digest(text) != header["digest"]:
        return None
    return dict(header, **json.loads(text))


def _digest(text):
    return hashlib.sha256(text.encode()).hexdigest()[:32]

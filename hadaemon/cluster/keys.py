"""Where cluster mode keeps things in etcd (Keys) and how the live/ range reads back."""

import json
from collections import namedtuple

# A range of live/, split (split_live); a stamp is (create, mod revision) of its key.
Live = namedtuple("Live", "nodes stamps table_stamp leader paused paused_stamp handover "
                         "requests open_ids")


class Keys:
    """Everything under /NAME/. live/ is read every poll and stays small (no key in it grows
    with the hosts); the rest grows, and is read only where a stamp in live/ shows a change
    (sync.py)."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.live = prefix + "live/"
        self.leader = self.live + "leader"
        self.paused = self.live + "paused"  # the pause's header; its statuses in pause/ (parts.py)
        self.pause = prefix + "pause/"
        self.handover = self.live + "handover"
        self.requests = self.live + "request/"
        self.answers = self.live + "answer/"  # answer/ID: the leader's answer to request ID
        self.open = self.live + "open/"
        self.hold = self.live + "hold/"  # hold/HOST: hold-down, on a lease of its own
        self.marker = self.live + "marker"  # which cluster this etcd holds (clusterid.py)
        self.refusals = self.live + "refusal/"  # refusal/NODE: a node refusing etcd's data
        self.refusal_parts = prefix + "refusal/"  # refusal/NODE/N: its mirror (parts.py)
        self.table = prefix + "table/"
        self.table_stamp = self.live + "table-stamp"  # written with every change to table/
        self.jobs = prefix + "job/"
        self.steps = prefix + "step/"
        self.claims = prefix + "claim/"
        self.seq = prefix + "seq"
        self.last_leader = prefix + "last-leader"

    def node(self, name):
        return f"{self.live}node/{name}"

    def stamp(self, name):
        """Written, on the node's lease, with every change to its opinions."""
        return f"{self.live}stamp/{name}"

    def opinions(self, name):
        """opinion/NODE/HOST = the status node NODE sees, on its lease: outside live/."""
        return f"{self.prefix}opinion/{name}/"

    def job(self, job_id):
        return f"{self.jobs}{job_id:012d}"

    def step(self, job_id, idx):
        return f"{self.steps}{job_id:012d}/{idx:04d}"

    def claim(self, job_id):
        return f"{self.claims}{job_id:012d}"

    def refusal(self, name):
        return f"{self.refusals}{name}"

    def refusal_part(self, name, n):
        return f"{self.refusal_parts}{name}/{n:06d}"

    def pause_part(self, n):
        return f"{self.pause}{n:06d}"

    def open_job(self, job_id):
        return f"{self.open}{job_id:012d}"


def split_live(keys, kvs):
    """A range of live/ -> Live: nodes, {node: its stamp}, the table's stamp (None if
    absent), leader, the pause's header and its stamp, handover, requests, open ids.
    (live/result/NODE, the opinions of a version before stamps, is ignored.)"""
    nodes, stamps, requests, open_ids = {}, {}, {}, []
    leader = paused = paused_stamp = handover = table_stamp = None
    for key, (value, lease, rev, mod) in kvs.items():
        rest = key[len(keys.live):]
        if rest.startswith("node/"):
            nodes[rest[5:]] = json_or_empty(value)
        elif rest.startswith("stamp/"):
            stamps[rest[6:]] = (rev, mod)
        elif key == keys.table_stamp:
            table_stamp = (rev, mod)
        elif rest.startswith("request/"):
            requests[key] = json_or_empty(value)
        elif rest.startswith("open/"):
            open_ids.append(int(rest[5:]))
        elif key == keys.leader:
            leader = (value.decode(), lease, rev)
        elif key == keys.paused:
            paused, paused_stamp = json_or_empty(value), (rev, mod)
        elif key == keys.handover:
            handover = json_or_empty(value)
    return Live(nodes, stamps, table_stamp, leader, paused, paused_stamp, handover, requests,
                sorted(open_ids))


def json_or_empty(value):
    """A stored JSON value, or {} when it is missing or unreadable."""
    if not value:
        return {}
    try:
        return json.loads(value)
    except ValueError:
        return {}

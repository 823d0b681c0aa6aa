"""Ranges of etcd kept in step by reading only what changed (docs/cluster.md, "How a look reads").

Every writer of a range (a node's opinions, the table) puts a small stamp key in live/ in the
same transaction as each change to it. A look reads live/ only; for a range whose stamp moved
it reads the keys written since the revision it is complete up to (min_mod_revision). etcd
counts the whole range in that answer, so a deletion shows as a count below what the reader
knew plus what is new: that range is then read whole, once. At rest a look reads live/ alone,
whatever the number of hosts.
"""

NEVER = object()  # the stamp of a range never read


def apply_changes(known, changed, count):
    """Take in `changed` ({key: value} written since known was complete) if `count` (keys in
    the range now) shows that none was deleted: {key: value} of what differs, known updated.
    None if keys were deleted (known untouched): read the range whole."""
    new = sum(1 for k in changed if k not in known)
    if len(known) + new != count:
        return None
    diff = {k: v for k, v in changed.items() if known.get(k) != v}
    known.update(diff)
    return diff


def replace_all(known, fresh):
    """known becomes fresh: {key: value, or None if gone} of what differs."""
    diff = {k: None for k in known if k not in fresh}
    diff.update((k, v) for k, v in fresh.items() if known.get(k) != v)
    known.clear()
    known.update(fresh)
    return diff


class Synced:
    """One range as this reader knows it: {key below the prefix: value bytes}, complete up to
    revision `synced`, read when its stamp was `stamp` ((create, mod revision) or None)."""

    def __init__(self, prefix):
        self.prefix, self.known, self.synced, self.stamp = prefix, {}, 0, NEVER
        self.read = 0  # keys read by the last refresh

    def refresh(self, etcd, stamp):
        """{key: value or None} of what changed, if the stamp moved; {} if not (nothing read).
        Only the keys written since are read while the stamp is the same key (its create
        revision): a stamp created again (a node that joined again) means a range read whole."""
        self.read = 0
        if stamp == self.stamp:
            return {}
        diff = None
        if stamp is not None and self.stamp not in (NEVER, None) and stamp[0] == self.stamp[0]:
            kvs, count, revision = etcd.changes(self.prefix, self.synced)
            self.read += len(kvs)
            if revision >= self.synced:  # else etcd went back: read whole
                diff = apply_changes(self.known, self._values(kvs), count)
        if diff is None:
            kvs, _, revision = etcd.changes(self.prefix)
            self.read += len(kvs)
            diff = replace_all(self.known, self._values(kvs))
        self.stamp, self.synced = stamp, revision
        return diff

    def gone(self):
        """The range's writer is gone (its stamp vanished with its lease): all of it, as None."""
        diff = dict.fromkeys(self.known)
        self.known, self.stamp = {}, None
        return diff

    def _values(self, kvs):
        n = len(self.prefix)
        return {k[n:]: v[0] for k, v in kvs.items()}


class Ranges:
    """What a node keeps in step: every live node's opinions, the table and the pause's
    parts."""

    def __init__(self, keys):
        self.keys = keys
        self.table = Synced(keys.table)
        self.pause = Synced(keys.pause)  # its stamp: live/paused, the header
        self.nodes = {}  # node -> Synced of opinion/NODE/
        self.read_by = {}  # keys read by the last refresh, by range: opinions, table, pause
        # What was read but not yet handed on: a refresh cut short by etcd hands it on later.
        self.opinions, self.entries = {}, {}

    @property
    def read(self):
        """Keys read by the last refresh, in all."""
        return sum(self.read_by.values())

    def reset(self):
        """Read every range whole at the next look, and compare with what was known (etcd was
        re-initialised: its revisions may have gone back)."""
        for synced in [self.table, self.pause, *self.nodes.values()]:
            synced.stamp = NEVER

    def refresh(self, etcd, stamps, table_stamp, paused_stamp=None):
        """stamps: {node: stamp} of live/stamp/; -> ({node: {host: status or None}} and
        {host: entry bytes or None} of what changed since the last refresh. The pause's parts
        are in self.pause.known while live/paused exists."""
        opinions = self.opinions
        for node in [n for n in self.nodes if n not in stamps]:
            opinions.setdefault(node, {}).update(self.nodes.pop(node).gone())
        read = dict(opinions=0, table=0, pause=0)
        for node, stamp in sorted(stamps.items()):
            synced = self.nodes.setdefault(node, Synced(self.keys.opinions(node)))
            diff = synced.refresh(etcd, stamp)
            read["opinions"] += synced.read
            if diff:
                opinions.setdefault(node, {}).update(
                    (h, v.decode() if v is not None else None) for h, v in diff.items())
        self.entries.update(self.table.refresh(etcd, table_stamp))
        read["table"] = self.table.read
        if paused_stamp is not None:
            self.pause.refresh(etcd, paused_stamp)
            read["pause"] = self.pause.read
        elif self.pause.stamp is not None:
            self.pause.gone()
        self.read_by = read
        done = opinions, self.entries
        self.opinions, self.entries = {}, {}
        return done

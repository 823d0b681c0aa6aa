"""The state table: host -> {status, since, observed, last_seen, check, details}.

A shelve.Shelf over a mapping that keeps one SQLite row per key, so the shelve API stays while the
file stays crash-safe (plain shelve.open would fall back to dbm.dumb here). The supervisor is the
only writer. Another backend (etcd in cluster mode) provides the same four methods.
"""

import shelve
from collections.abc import MutableMapping

from .names import UNKNOWN


class SqliteMapping(MutableMapping):
    """bytes -> bytes over the store's hosts table."""

    def __init__(self, store):
        self._store = store

    def __getitem__(self, key):
        row = self._store.conn.execute("SELECT value FROM hosts WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return row[0]

    def __setitem__(self, key, value):
        with self._store.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO hosts (key, value) VALUES (?, ?)", (key, value))

    def __delitem__(self, key):
        with self._store.transaction() as conn:
            if conn.execute("DELETE FROM hosts WHERE key = ?", (key,)).rowcount == 0:
                raise KeyError(key)

    def __iter__(self):
        return iter([row[0] for row in self._store.conn.execute("SELECT key FROM hosts")])

    def __len__(self):
        return self._store.conn.execute("SELECT count(*) FROM hosts").fetchone()[0]


class Table:
    def __init__(self, store):
        self._store = store
        self._shelf = shelve.Shelf(SqliteMapping(store), protocol=4)

    def get(self, host):
        return self._shelf.get(host)

    def status(self, host):
        entry = self.get(host)
        return entry["status"] if entry else UNKNOWN

    def set(self, host, entry):
        self._shelf[host] = entry

    def forget(self, host):
        """Remove host's row; False if there was none."""
        try:
            del self._shelf[host]
        except KeyError:
            return False
        return True

    def items(self):
        """(host, entry) sorted by host; an entry that cannot be read is reported, not fatal."""
        result, broken = [], []
        for raw in sorted(self._shelf.dict.keys(), key=repr):
            try:
                key = raw.decode("utf-8")
                result.append((key, self._shelf[key]))
            except Exception as e:  # a damaged key or pickle: report it, keep the rest
                broken.append(f"{raw!r}: {e}")
        return sorted(result), broken

    def transaction(self):
        return self._store.transaction()

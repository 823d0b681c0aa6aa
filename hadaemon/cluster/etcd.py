"""The only module that talks to etcd (its v3 JSON API over the HTTP gateway, /v3/).

Everything cluster mode needs is here and small: ranges, one transaction call, leases. Calls
block for at most `timeout` per endpoint (a page of a range read, `range_timeout`); the caller is
never the supervisor loop (see agent.py and cluster/runner.py).

The HTTP is the standard library's, one kept-alive connection per endpoint: through etcd3gw and
requests a request cost about 2 ms of CPU, through http.client 0.4 ms (bench/etcd_client.py), and
the agent and the runner make several every poll on every node, all year.
"""

import base64
import http.client
import json
import select


# Operations per transaction we write or read in batches of: etcd refuses more than
# --max-txn-ops (128 by default), and the batch leaves room for a stamp or a guard.
TXN_OPS = 100
PAGE = 2000  # keys per answer of a range read (Etcd._pages)


class EtcdUnavailable(Exception):
    """No endpoint answered in time: nothing is known about what etcd holds."""


class EtcdRefused(EtcdUnavailable):
    """etcd answered that this request is wrong (a bug of ours, or a lease that expired): it
    was not applied. Handled like an outage, but said as what it is."""


class EtcdCompacted(EtcdRefused):
    """A read at a revision etcd has compacted away: asking again will not help."""


def _b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def _unb64(text):
    return base64.b64decode(text) if text else b""


def prefix_end(prefix):
    """The range end that covers every key starting with prefix."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return bytes(raw)


# -- transaction pieces: plain dicts of the v3 JSON API ---------------------------------------

def value_is(key, value):
    return {"key": _b64(key), "target": "VALUE", "result": "EQUAL", "value": _b64(value)}


def absent(key):
    return {"key": _b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": 0}


def created_at(key, revision):
    return {"key": _b64(key), "target": "CREATE", "result": "EQUAL",
            "create_revision": revision}


def put(key, value, lease=None):
    op = {"key": _b64(key), "value": _b64(value)}
    if lease:
        op["lease"] = lease
    return {"request_put": op}


def delete(key):
    return {"request_delete_range": {"key": _b64(key)}}


def delete_range(start, end):
    """Every key from start (included) to end (excluded)."""
    return {"request_delete_range": {"key": _b64(start), "range_end": _b64(end)}}


def read_keys(etcd, keys):
    """{key: (value, lease, create, mod revision)} of those of keys that exist, TXN_OPS keys
    per read-only transaction (one request per key made a burst of n jobs cost n² requests)."""
    found = {}
    for i in range(0, len(keys), TXN_OPS):
        for kvs in etcd.read(keys=keys[i:i + TXN_OPS])[1]:
            found.update(kvs)
    return found


def jput(key, obj, lease=None):
    return put(key, json.dumps(obj, sort_keys=True), lease)


class EtcdError(Exception):
    """An answer other than 200 OK: (HTTP status, reason, etcd's error text)."""

    def __init__(self, status, reason, text):
        super().__init__(f"{status} {reason}: {text}")
        self.status, self.text = status, text


# What another member may answer differently: a server error, a timeout, no quorum.
MOVE_ON = {408, 500, 502, 503, 504}


class Endpoint:
    """One member's gateway: a kept-alive connection, opened again when it was lost."""

    def __init__(self, scheme, host, port):
        self.scheme, self.host, self.port = scheme, host, port
        self.conn = None

    def post(self, path, body, timeout):
        """The answer's JSON; EtcdError for a status other than 200; OSError, HTTPException
        or ValueError when the member did not answer (in time, or whole)."""
        if self.conn is not None and _dropped(self.conn.sock):
            self.close()  # etcd closed it while idle: nothing was sent on it
        if self.conn is None:
            kind = http.client.HTTPSConnection if self.scheme == "https" \
                else http.client.HTTPConnection
            self.conn = kind(self.host, self.port, timeout=timeout)
        else:
            self.conn.timeout = timeout
            if self.conn.sock is not None:
                self.conn.sock.settimeout(timeout)
        try:
            self.conn.request("POST", "/v3" + path, body,
                              {"Content-Type": "application/json"})
            answer = self.conn.getresponse()
            data = answer.read()
        except BaseException:
            self.close()  # an answer left half-read would be taken for the next one's
            raise
        if answer.will_close:
            self.close()
        if answer.status != 200:
            raise EtcdError(answer.status, answer.reason, _error_text(data))
        return json.loads(data)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _dropped(sock):
    """A kept-alive socket the server closed (or wrote to unasked) is readable while idle."""
    if sock is None:
        return True
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def _error_text(data):
    """etcd's own error text from an error answer ('requested lease not found')."""
    text = data.decode("utf-8", "replace")
    try:
        doc = json.loads(text)
        text = doc.get("error") or doc.get("message") or text
    except (ValueError, AttributeError):
        pass
    return text.strip().splitlines()[0][:200] if text.strip() else ""


class Etcd:
    def __init__(self, endpoints, timeout=1.0, range_timeout=None):
        self._endpoints = [Endpoint(s, h, p) for s, h, p in endpoints]
        self._current = 0
        self.timeout, self.range_timeout = timeout, max(timeout, range_timeout or 0)

    def _post(self, path, payload, timeout=None):
        """POST to the current endpoint, moving on to the next ones when it does not answer
        within `timeout` (the client's, if None)."""
        body = json.dumps(payload)
        last = None
        for _ in range(len(self._endpoints)):
            endpoint = self._endpoints[self._current]
            try:
                return endpoint.post(path, body, timeout or self.timeout)
            except EtcdError as e:
                if e.status not in MOVE_ON:
                    # etcd refused this request itself (400 InvalidArgument, 404 lease not
                    # found): another member would too.
                    raise (EtcdCompacted if "compacted" in e.text else EtcdRefused)(
                        f"{path}: {e.text or e}") from None
                last = e  # e.g. 'etcdserver: request timed out' from a member without quorum
            except (OSError, http.client.HTTPException, ValueError) as e:
                # no connection, no answer in time, a member that died in mid-answer, an
                # answer cut short
                last = e
            self._current = (self._current + 1) % len(self._endpoints)
        raise EtcdUnavailable(f"{path}: {_short(last)}")

    def range(self, prefix, revision=None):
        """Every key under prefix: {key: (value bytes, lease id, create revision, mod
        revision)}; as it was at `revision` if given (EtcdCompacted once etcd no longer keeps
        that revision)."""
        return self._pages(prefix, revision=revision)[0]

    def changes(self, prefix, since=None):
        """The keys under prefix written after revision `since` (all of them if None):
        ({key: (value, lease, create, mod revision)}, how many keys the range holds in all,
        the revision read). etcd counts the whole range, not only the keys returned: a count
        below what the reader knows plus what is new means keys were deleted."""
        return self._pages(prefix, since=since)

    def _pages(self, prefix, revision=None, since=None):
        """A range read PAGE keys per answer, every page at the first one's revision: one
        answer for 100 000 keys outlasts the client's timeout, and etcd 3.5.1 panics on a read
        its client gave up on. -> (kvs, count of the whole range, revision read)."""
        request = {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix)), "limit": PAGE}
        if revision:
            request["revision"] = revision
        if since is not None:
            request["min_mod_revision"] = since + 1
        found, count = {}, None
        while True:
            answer = self._post("/kv/range", request, self.range_timeout)
            page = answer.get("kvs", [])
            found.update(_kvs(answer))
            if count is None:  # later pages start further on: only the first counts it all
                count = int(answer.get("count", 0))
                revision = revision or int(answer.get("header", {}).get("revision", 0))
            if not answer.get("more") or not page:
                return found, count, revision
            request = dict(request, key=_b64(_unb64(page[-1]["key"]) + b"\0"),
                           revision=revision)

    def last(self, prefix):
        """The highest key under prefix, or None if there is none."""
        answer = self._post("/kv/range", {
            "key": _b64(prefix), "range_end": _b64(prefix_end(prefix)), "limit": 1,
            "sort_order": "DESCEND", "sort_target": "KEY", "keys_only": True})
        kvs = answer.get("kvs") or []
        return _unb64(kvs[0]["key"]).decode() if kvs else None

    def read(self, prefixes=(), keys=()):
        """Several prefixes and keys in one linearizable look (a read-only transaction):
        ([range(prefix) of each prefix], [{key: ...} of each key, empty if absent], header).
        The header holds etcd's cluster id and the revision the look saw."""
        ranges = [{"request_range": {"key": _b64(p), "range_end": _b64(prefix_end(p))}}
                  for p in prefixes] + [{"request_range": {"key": _b64(k)}} for k in keys]
        answer = self._post("/kv/txn", {"compare": [], "success": ranges, "failure": []})
        found = [_kvs(r.get("response_range", {})) for r in answer.get("responses", [])]
        if len(found) != len(ranges):
            raise EtcdUnavailable(f"/kv/txn: {len(found)} answers to {len(ranges)} reads")
        return found[:len(prefixes)], found[len(prefixes):], answer.get("header", {})

    def get(self, key):
        answer = self._post("/kv/range", {"key": _b64(key)})
        kvs = answer.get("kvs", [])
        return _unb64(kvs[0].get("value")) if kvs else None

    def txn(self, compare, success, failure=()):
        """True if every compare held and success was applied, False if not (nothing applied)."""
        answer = self._post("/kv/txn", {"compare": list(compare), "success": list(success),
                                        "failure": list(failure)})
        return bool(answer.get("succeeded"))

    def txn_full(self, compare, success, failure=()):
        """Like txn, also the raw responses (for a put's revision or a failure branch's read)."""
        answer = self._post("/kv/txn", {"compare": list(compare), "success": list(success),
                                        "failure": list(failure)})
        return bool(answer.get("succeeded")), answer

    def grant(self, ttl):
        return int(self._post("/lease/grant", {"TTL": int(ttl), "ID": 0})["ID"])

    def keepalive(self, lease):
        """The lease's new TTL in seconds; <= 0 when the lease is gone."""
        answer = self._post("/lease/keepalive", {"ID": lease})
        return int(answer.get("result", {}).get("TTL", -1))

    def revoke(self, lease):
        try:
            self._post("/kv/lease/revoke", {"ID": lease})
        except EtcdUnavailable:
            pass

    def status(self):
        return self._post("/maintenance/status", {})


def _kvs(answer):
    return {_unb64(kv["key"]).decode(): (_unb64(kv.get("value")), int(kv.get("lease", 0)),
                                         int(kv.get("create_revision", 0)),
                                         int(kv.get("mod_revision", 0)))
            for kv in answer.get("kvs", [])}


def _short(e):
    """One line saying why a request failed."""
    text = str(e) if e else "no endpoint"
    return text.splitlines()[0][:200] if text.strip() else type(e).__name__

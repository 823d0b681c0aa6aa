"""What a check says, and how processes talk.

A check prints one JSON object {"host": ..., "status": ...} or an array of them; without JSON its
exit code is read the Nagios way for the host named in its settings. Everything here is pure:
bytes in, results or one clear reason out.
"""

import json

from .names import UNKNOWN, valid_host, valid_status
from .statuses import undeclared

NAGIOS = {0: "up", 1: "warning", 2: "down"}  # anything else: unknown
MAX_RESULTS = 1000  # one check reporting more hosts than this is broken, not big
MAX_DEPTH = 32  # details nested deeper are a broken check; deep nesting costs every reader
MAX_MESSAGE = 1 << 20  # one datagram between processes; checks are capped well below this


class Rejected(ValueError):
    """The output of a check cannot be used; the text says why."""


def parse_output(stdout, exit_code, host="", statuses=None):
    """Return a list of {"host", "status", "details"}; raise Rejected with the reason.
    statuses: the declared ones (None: any safe name); a result naming another is rejected."""
    try:
        text = stdout.decode("utf-8").strip()
    except UnicodeDecodeError as e:
        raise Rejected(f"output is not UTF-8 (byte {e.start})") from None
    if text[:1] in ("{", "["):
        try:
            data = json.loads(text, parse_constant=_no_constant)
        except ValueError as e:
            raise Rejected(f"invalid JSON: {e}") from None
        except RecursionError:
            raise Rejected(f"JSON nested deeper than {MAX_DEPTH} levels") from None
        if _depth(data) > MAX_DEPTH:
            raise Rejected(f"JSON nested deeper than {MAX_DEPTH} levels")
        items = data if isinstance(data, list) else [data]
        if len(items) > MAX_RESULTS:
            raise Rejected(f"{len(items)} results in one output (at most {MAX_RESULTS})")
        if not items:
            raise Rejected("empty JSON array")
        statuses = None if statuses is None else frozenset(statuses)
        results = [validate(item, i if isinstance(data, list) else None, statuses)
                   for i, item in enumerate(items)]
        hosts = [r["host"] for r in results]
        if len(set(hosts)) != len(hosts):
            twice = sorted({h for h in hosts if hosts.count(h) > 1})[0]
            raise Rejected(f"host {twice!r} reported more than once in one output")
        return results
    if not host:
        raise Rejected(f"no JSON on stdout and no host= setting to apply exit code {exit_code} to")
    first = text.splitlines()[0][:200] if text else ""
    return [{"host": host, "status": NAGIOS.get(exit_code, UNKNOWN),
             "details": {"exit": exit_code, "output": first}}]


def _no_constant(name):
    # NaN and Infinity are not JSON: what reads `status --json` must not choke on them.
    raise ValueError(f"{name} is not a JSON value")


def _depth(value, level=0):
    """How deeply lists and objects nest in value (counting stops past MAX_DEPTH)."""
    if not isinstance(value, (dict, list)) or level > MAX_DEPTH:
        return level
    children = value.values() if isinstance(value, dict) else value
    return max((_depth(c, level + 1) for c in children), default=level + 1)


def validate(item, index=None, statuses=None):
    at = "" if index is None else f"result {index}: "
    if not isinstance(item, dict):
        raise Rejected(f"{at}expected a JSON object, got {type(item).__name__}")
    host, status = item.get("host"), item.get("status")
    if not isinstance(host, str):
        raise Rejected(f"{at}missing or non-string 'host'")
    if not isinstance(status, str):
        raise Rejected(f"{at}missing or non-string 'status'")
    if not valid_host(host):
        raise Rejected(f"{at}unsafe host name {host[:80]!r}")
    status = status.lower()
    if not valid_status(status):
        raise Rejected(f"{at}unsafe status {status[:80]!r} (letters, digits and '-', "
                       f"starting with a letter)")
    if statuses is not None and status not in statuses:
        raise Rejected(f"{at}{undeclared(status, statuses)}")
    details = {k: v for k, v in item.items() if k not in ("host", "status")}
    return {"host": host, "status": status, "details": details}


def check_job(check, daemon, number):
    """The message that asks a worker to run `check` once (config.CheckSpec, DaemonSettings)."""
    job = {"job": number, "check": check.id, "argv": list(check.argv), "timeout": check.timeout,
           "limit": daemon.output_limit, "host": check.host, "user": daemon.user,
           "statuses": sorted(daemon.known_statuses)}
    if check.remote:
        # The check's timeout is enforced on the remote host; past the local ssh's (longer, to
        # connect and to hear of it), nothing was heard from the host.
        job["remote"] = {"host": check.remote.host, "timeout": check.remote_timeout,
                         "local_timeout": check.timeout}
        job["stdin"] = check.send or None
    return job


class Jobs:
    """Each check's job message, encoded once per config: from one run to the next only the
    job number changes, and encoding the whole job was the supervisor's largest cost per check
    after the system calls (bench/instructions.py)."""

    def __init__(self):
        self._made = {}  # check id -> (check, daemon, the job without number, its JSON after it)

    def job(self, check, daemon, number):
        """(the job as check_job makes it, without "job"; the message carrying `number`)."""
        made = self._made.get(check.id)
        if made is None or made[0] is not check or made[1] is not daemon:  # new, or reloaded
            job = check_job(check, daemon, number)
            del job["job"]
            made = self._made[check.id] = (check, daemon, job, encode(job)[1:])
        return made[2], b'{"job":%d,' % number + made[3]

    def forget(self, keep):
        """A reload: drop the messages of checks whose ids are not in keep."""
        self._made = {cid: made for cid, made in self._made.items() if cid in keep}


def failed(host, reason):
    """The results of a check that could not produce any: unknown for its host, if it has one."""
    return [{"host": host, "status": UNKNOWN, "details": {"error": reason}}] if host else []


def encode(message):
    data = json.dumps(message, separators=(",", ":")).encode()
    if len(data) > MAX_MESSAGE:
        raise ValueError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE}")
    return data


def encode_result(result):
    """A worker's result: its results as their own JSON document after a newline (JSON as
    encode writes it has none), so the supervisor can tell a run that says what the last one
    said by its bytes alone (split_result)."""
    head = {k: v for k, v in result.items() if k != "results"}
    data = encode(head) + b"\n" + encode(result["results"])
    if len(data) > MAX_MESSAGE:
        raise ValueError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE}")
    return data


def split_result(data):
    """(the result without its results, the results' JSON bytes) of encode_result's message."""
    head, newline, results = data.partition(b"\n")
    if not newline:
        raise ValueError("no results in worker message")
    return decode(head), results


def decode(data):
    message = json.loads(data.decode("utf-8"))
    if not isinstance(message, dict):
        raise ValueError("message is not a JSON object")
    return message


def decode_list(data):
    items = json.loads(data.decode("utf-8"))
    if not isinstance(items, list):
        raise ValueError("results are not a JSON array")
    return items

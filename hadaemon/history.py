"""Reading the journal back as history: transitions and each command's outcome, oldest first."""

import json
import time

from . import journal


COLUMNS = ("id", "host", "source", "target", "manual", "created", "state", "plan", "resumed",
           "finished", "note")
PAGE = 20  # jobs read in one query, each with its own query for its steps


def read(store, limit=100, host=None):
    """The newest `limit` entries (of host's only, if given), oldest first."""
    return [e for page in pages(store, limit, host) for e in page]


def pages(store, limit=100, host=None):
    """read's entries a page at a time: the control socket sends a page per slice of its
    answer (stream.py), so a long history never holds the supervisor's loop. The range is
    fixed by the first page: the jobs queued after it are not in this answer."""
    where, args = ("WHERE host = ?", [host]) if host else ("", [])
    conn = store.conn
    top = conn.execute(f"SELECT max(id) FROM jobs {where}", args).fetchone()[0]
    if top is None:
        return
    row = conn.execute(f"SELECT id FROM jobs {where} ORDER BY id DESC LIMIT 1 OFFSET ?",
                       [*args, int(limit) - 1]).fetchone()
    low = row[0] if row else 0
    and_host = "AND host = ?" if host else ""
    while low <= top:
        rows = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM jobs WHERE id >= ? AND id <= ?"
                            f" {and_host} ORDER BY id LIMIT ?", [low, top, *args, PAGE]
                            ).fetchall()
        if not rows:
            return
        yield [_entry(store, dict(zip(COLUMNS, r))) for r in rows]
        low = rows[-1][0] + 1


def _entry(store, job):
    steps = {i: s.to_dict() for i, s in journal.records(store.conn, job["id"]).items()}
    try:
        return entry(dict(job, plan=json.loads(job["plan"])), steps)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        # A damaged record is shown as such; the others still are.
        return entry(dict(job, plan=[], state="unreadable",
                          note=f"record unreadable ({type(e).__name__}: {e})"), {})


def entry(job, steps):
    """One history entry from a job record and its steps ({index: step}), whichever store
    holds them: the single-node journal and the cluster's etcd keep the same shape (job.py's
    Job.to_dict and StepRecord.to_dict)."""
    commands = []
    for i, planned in enumerate(job["plan"]):
        s = steps.get(i) or {}
        commands.append({
            "command": planned["text"], "argv": planned["argv"], "section": planned["section"],
            "node": s.get("node") or planned.get("node"), "outcome": outcome(s),
            "started": s.get("started"), "finished": s.get("finished"), "exit": s.get("rc"),
            "duration": s.get("duration"), "output": s.get("output"), "error": s.get("error"),
            "resumed": bool(s.get("resumed"))})
    return {"id": job["id"], "host": job["host"], "from": job["source"], "to": job["target"],
            "manual": bool(job.get("manual")), "time": job["created"], "state": job["state"],
            "resumed": bool(job.get("resumed")), "finished": job.get("finished"),
            "note": job.get("note"), "leader": job.get("leader"), "commands": commands}


def outcome(step):
    if not step:
        return "not run"
    if step.get("finished") is None:
        return "interrupted" if step.get("error") else "running"
    if step.get("error"):
        return "error"
    return "ok" if step.get("rc") == 0 else "failed"


def format_text(entries):
    lines = []
    for e in entries:
        try:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["time"]))
        except (TypeError, ValueError, OverflowError, OSError):
            when = "(no time)"
        how = " (manual)" if e["manual"] else ""
        note = f" - {e['note']}" if e["note"] else ""
        lines.append(f"#{e['id']} {when} {e['host']}: {e['from']} -> {e['to']}{how}"
                     f" [{e['state']}]{note}")
        for c in e["commands"]:
            detail = ""
            if c["outcome"] in ("ok", "failed"):
                detail = f" exit {c['exit']} in {c['duration']:.2f}s"
            if c["error"]:
                detail += f" {c['error']}"
            again = " (resumed)" if c["resumed"] else ""
            lines.append(f"    {c['outcome']:8} {c['command']}{detail}{again}")
            for out in (c["output"] or "").splitlines()[:3]:
                lines.append(f"             | {_printable(out)}")
    return "\n".join(lines)


_CONTROL = {c: f"\\x{c:02x}" for c in [*range(32), 127] if c != 9}


def _printable(text):
    """A command's output may hold anything: no escape sequence reaches the terminal."""
    return text.translate(_CONTROL)

"""Reading the journal back as history: transitions and each command's outcome, oldest first."""

import json
import time


def read(store, limit=100, host=None):
    sql = ("SELECT id, host, source, target, manual, created, state, plan, resumed, finished, note"
           " FROM jobs")
    args = []
    if host:
        sql += " WHERE host = ?"
        args.append(host)
    sql += " ORDER BY id DESC LIMIT ?"
    args.append(int(limit))
    rows = store.conn.execute(sql, args).fetchall()
    result = []
    for r in reversed(rows):
        steps = {s[0]: s for s in store.conn.execute(
            "SELECT idx, started, finished, rc, duration, output, error, resumed FROM steps"
            " WHERE job = ?", (r[0],))}
        commands = []
        for i, planned in enumerate(json.loads(r[7])):
            s = steps.get(i)
            commands.append({
                "command": planned["text"], "argv": planned["argv"], "section": planned["section"],
                "outcome": _outcome(s),
                "started": s[1] if s else None, "finished": s[2] if s else None,
                "exit": s[3] if s else None, "duration": s[4] if s else None,
                "output": s[5] if s else None, "error": s[6] if s else None,
                "resumed": bool(s[7]) if s else False})
        result.append({"id": r[0], "host": r[1], "from": r[2], "to": r[3], "manual": bool(r[4]),
                       "time": r[5], "state": r[6], "resumed": bool(r[8]), "finished": r[9],
                       "note": r[10], "commands": commands})
    return result


def _outcome(step):
    if step is None:
        return "not run"
    if step[2] is None:
        return "interrupted" if step[6] else "running"
    if step[6]:
        return "error"
    return "ok" if step[3] == 0 else "failed"


def format_text(entries):
    lines = []
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["time"]))
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
                lines.append(f"             | {out}")
    return "\n".join(lines)

"""The status page: one HTML page from what `hadaemon status --json` and `history --json`
print, in either mode. Pure: the same answers and time give the same page.

Everything in those answers comes from checks, the config or the journal, so every string is
escaped, and nothing of them reaches a tag name, a class or a style (colours are looked up).
No script and nothing from elsewhere: the style is inline, the timelines are SVG drawn here,
and the page reloads itself (<meta http-equiv="refresh">).
"""

import json
import shlex
import time
from html import escape

from . import __version__, timeline

TRANSITIONS = 30  # the newest shown
DETAILS = 12  # keys of a host's details shown
TEXT_MAX = 300  # characters of one detail's value or one command's output shown
OPEN = ("queued", "running")


def render(status, history, now, refresh=10, hours=6):
    """The page for status (`status --json`'s object) and history (`history --json`'s list,
    oldest first) as of now (epoch seconds); it reloads every refresh seconds and its
    timelines reach back at most `hours` hours."""
    status = status if isinstance(status, dict) else {}
    history = _dicts(history)
    hosts = status.get("hosts") if isinstance(status.get("hosts"), dict) else {}
    daemon = _dict(status.get("daemon"))
    start, end = timeline.window(
        [e.get("time") for e in history] + [daemon.get("started")], now, int(hours * 3600))
    changes = {}  # host -> its transitions, oldest first
    for e in history:
        if isinstance(e.get("host"), str):
            changes.setdefault(e["host"], []).append((e.get("time"), _name(e.get("from")),
                                                      _name(e.get("to"))))
    cards = [_host(str(h), _dict(e), changes.get(h, []), now, start, end)
             for h, e in sorted(hosts.items())]
    shown = {_name(_dict(e).get("status")) for e in hosts.values()} - {None}
    shown |= {s for c in cards for s in c[1]}
    body = [_header(status, daemon, now, refresh),
            *_banners(status, daemon),
            _queue(status, history),
            '<section id="hosts"><h2>Hosts</h2>',
            _summary(hosts) if hosts else '<p class="empty">no hosts seen yet</p>',
            _legend(shown) if hosts else "",
            *(c[0] for c in cards), '</section>',
            _transitions(history, now),
            _cluster(_dict(status.get("cluster"))),
            f'<footer>hadaemon {escape(__version__)} &middot; page made at '
            f'{escape(_when(now, now))}</footer>']
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta http-equiv="refresh" content="{int(refresh)}">'
            f'<title>{escape(_title(status, hosts))}</title><style>{STYLE}</style></head>'
            f'<body data-as-of="{_e(now)}"><main>{"".join(body)}</main></body></html>\n')


# -- the parts ----------------------------------------------------------------------------------

def _title(status, hosts):
    cluster = _dict(status.get("cluster"))
    where = f" {cluster.get('name')}/{cluster.get('node')}" if cluster else ""
    return f"hadaemon{where}: {len(hosts)} host(s)"


def _header(status, daemon, now, refresh):
    cluster = _dict(status.get("cluster"))
    if cluster:
        leader = cluster.get("leader")
        mode = (f"cluster <b>{_e(cluster.get('name'))}</b> &middot; served by node "
                f"<b class=\"node\">{_e(cluster.get('node'))}</b> &middot; leader "
                + (f"<b class=\"leader\">{_e(leader)}</b>" if leader else "<b>(none)</b>")
                + (" (this node)" if leader and leader == cluster.get("node") else ""))
    else:
        mode = "single node"
    facts = []
    if daemon:
        facts.append(f"pid {_e(daemon.get('pid'))}, up {_e(_age(daemon.get('started'), now))}"
                     f", {_e(daemon.get('checks'))} check(s), {_e(daemon.get('workers'))} "
                     f"worker(s)")
        if daemon.get("home"):
            facts.append(f"home <code>{_e(daemon.get('home'))}</code>")
    facts.append(f"as of {_e(_when(now, now))}, reloads every {int(refresh)} s")
    return (f'<header><h1>hadaemon</h1><p class="mode">{mode}</p>'
            f'<p class="facts">{" &middot; ".join(facts)}</p></header>')


def _banners(status, daemon):
    """What is wrong or unusual, at the top: each a line of its own."""
    out = []

    def say(kind, html):
        out.append(f'<p class="banner {kind}">{html}</p>')
    if status.get("ok") is False:
        say("bad", f"the daemon refused the status request: {_e(status.get('error'))}")
    if status.get("running") is False:
        say("bad", f"NOT RUNNING: {_e(status.get('note'))}")
    cluster = _dict(status.get("cluster"))
    if cluster.get("refused"):
        say("bad", f"REFUSING: etcd does not hold this cluster's data: "
            f"{_e(cluster['refused'])}; nothing is committed and no job runs until "
            f"<code>hadaemon cluster-init</code>; the table is this node's last mirror")
    elif cluster.get("not_joined"):
        say("bad", f"NOT JOINED: {_e(cluster['not_joined'])}; the table is this node's last "
            f"mirror")
    elif cluster.get("stale"):
        say("bad", f"STALE: etcd unreachable for {_e(_duration(cluster.get('unreachable_for')))}"
            f" ({_e(cluster.get('error'))}); the table is this node's last mirror")
    unobserved = cluster.get("unobserved")
    if unobserved and isinstance(unobserved, list):
        say("bad", f"UNOBSERVED: no live node reports {', '.join(_e(h) for h in unobserved)}: "
            f"each keeps its last committed status, unwatched (<code>hadaemon forget "
            f"HOST</code> removes one that is gone for good)")
    if daemon.get("paused") or cluster.get("paused"):
        say("warn", "PAUSED: checks go on, no action fires (<code>hadaemon resume</code>)")
    if daemon.get("record_error"):
        say("bad", f"cannot record to var/: {_e(daemon['record_error'])}")
    stale = _dict(daemon.get("stale"))
    checks = _dict(stale.get("checks"))
    if checks:
        hosts = stale.get("hosts") if isinstance(stale.get("hosts"), list) else []
        say("bad", "STALE: no result for more than 2 &times; interval + timeout from "
            + ", ".join(f"{_e(c)} ({_e(_duration(age))})" for c, age in sorted(checks.items()))
            + (f"; hosts not watched: {', '.join(_e(h) for h in hosts)}" if hosts else ""))
    return out


def _queue(status, history):
    """The open sequences: the status answer's queue (single node), else the open jobs of
    history (cluster mode keeps its queue in etcd, where history is read)."""
    jobs = _dicts(status.get("queue"))
    if not jobs:
        jobs = [dict(e, target=e.get("to")) for e in history if e.get("state") in OPEN]
    if not jobs:
        return '<p class="queue">no sequence queued</p>'
    items = "".join(f'<li>#{_e(j.get("id"))} {_e(j.get("host"))} &rarr; {_e(j.get("target"))}'
                    f' <span class="state">{_e(j.get("state"))}</span></li>' for j in jobs)
    return f'<section id="queue"><h2>{len(jobs)} sequence(s) queued</h2><ul>{items}</ul></section>'


def _summary(hosts):
    counts = {}
    for e in hosts.values():
        s = _name(_dict(e).get("status"))
        counts[s] = counts.get(s, 0) + 1
    return ('<p class="summary">' + f"{len(hosts)} host(s): " + ", ".join(
        f"{n} {_badge(s)}" for s, n in sorted(counts.items(), key=_by_status)) + "</p>")


def _legend(statuses):
    keys = "".join(f'<span class="key"><i style="background:{timeline.colour(s)}"></i>'
                   f'{_e(s)}</span>' for s in sorted(statuses, key=_status_order))
    return (f'<p class="legend">{keys}<span class="key"><i style="background:'
            f'{timeline.NO_RECORD}"></i>no record</span></p>')


def _host(host, entry, changes, now, start, end):
    """(the host's card, the statuses its timeline shows)."""
    current = _name(entry.get("status"))
    periods = timeline.intervals(changes, current, entry.get("since"), start, end)
    marks = []
    if entry.get("manual"):
        marks.append('<span class="mark">set by hand</span>')
    if entry.get("unobserved"):  # stale too: the more telling of the two
        marks.append('<span class="mark bad" title="no live node reports it: it keeps its '
                     'last committed status, unwatched">unobserved</span>')
    elif entry.get("stale"):
        marks.append('<span class="mark bad">stale</span>')
    if entry.get("conflict"):
        marks.append('<span class="mark warn">checks disagree</span>')
    facts = [f'since {_e(_when(entry.get("since"), now))} '
             f'({_e(_duration(_elapsed(entry.get("since"), now)))})']
    if entry.get("observed") is not None and entry.get("observed") != current:
        facts.append(f'observed {_badge(entry.get("observed"))}')
    if entry.get("check") is not None:
        facts.append(f'check <code>{_e(entry.get("check"))}</code>')
    if entry.get("last_seen") is not None:
        facts.append(f'last result {_e(_age(entry.get("last_seen"), now))} ago')
    card = (f'<article class="host" data-host="{_e(host)}"><div class="about">'
            f'<h3><span class="name">{_e(host)}</span> {_badge(current)} {"".join(marks)}</h3>'
            f'<p class="facts">{" &middot; ".join(facts)}</p>{_details(entry.get("details"))}'
            f'</div><div class="line">{timeline.svg(host, periods, start, end)}</div></article>')
    return card, {p[2] for p in periods if p[2] is not None}


def _details(details):
    if not isinstance(details, dict) or not details:
        return ""
    items = sorted(details.items(), key=lambda kv: str(kv[0]))
    rows = "".join(f'<dt>{_e(k)}</dt><dd>{_e(_short(_json(v)))}</dd>'
                   for k, v in items[:DETAILS])
    more = (f'<dt>&hellip;</dt><dd>{len(items) - DETAILS} more (<code>hadaemon status '
            f'--json</code>)</dd>' if len(items) > DETAILS else "")
    return f'<dl class="details">{rows}{more}</dl>'


def _transitions(history, now):
    if not history:
        return '<section id="transitions"><h2>Recent transitions</h2><p class="empty">' \
               'no transitions yet</p></section>'
    newest = history[::-1][:TRANSITIONS]
    return ('<section id="transitions"><h2>Recent transitions</h2>'
            + "".join(_transition(e, now) for e in newest) + "</section>")


def _transition(e, now):
    how = ' <span class="mark">by hand</span>' if e.get("manual") else ""
    note = f'<p class="note">{_e(e.get("note"))}</p>' if e.get("note") else ""
    leader = f" &middot; leader {_e(e.get('leader'))}" if e.get("leader") else ""
    commands = _dicts(e.get("commands"))
    steps = ("<ol class=\"commands\">" + "".join(_command(c) for c in commands) + "</ol>"
             if commands else '<p class="none">no commands</p>')
    return (f'<article class="transition" data-job="{_e(e.get("id"))}">'
            f'<h3><span class="when">{_e(_when(e.get("time"), now))}</span> '
            f'<span class="who">{_e(e.get("host"))}</span> {_badge(e.get("from"))} &rarr; '
            f'{_badge(e.get("to"))}{how} <span class="state state-{_state_class(e)}">'
            f'{_e(e.get("state"))}</span> <span class="job">#{_e(e.get("id"))}{leader}</span>'
            f'</h3>{note}{steps}</article>')


def _command(c):
    outcome = str(c.get("outcome"))
    detail = []
    argv, text = c.get("argv"), c.get("command")
    if isinstance(text, str) and "%" in text and isinstance(argv, list) and all(
            isinstance(a, str) for a in argv):
        detail.append(f"as <code>{_e(_short(shlex.join(argv)))}</code>")  # %VAR% expanded
    if c.get("exit") is not None:
        detail.append(f"exit {_e(c.get('exit'))}")
    if timeline.finite(c.get("duration")):
        d = c["duration"]
        detail.append(f"{d * 1000:.0f} ms" if d < 1 else f"{d:.2f} s")
    if c.get("node"):
        detail.append(f"on {_e(c.get('node'))}")
    if c.get("resumed"):
        detail.append("resumed")
    if c.get("error"):
        detail.append(_e(c.get("error")))
    output = c.get("output")
    shown = (f'<details><summary>output</summary><pre>{_e(_short(output))}</pre></details>'
             if isinstance(output, str) and output.strip() else "")
    css = outcome if outcome in ("ok", "failed", "error", "running", "interrupted") else "other"
    return (f'<li><span class="outcome outcome-{css}">{_e(outcome)}</span> '
            f'<code>{_e(c.get("command"))}</code> <span class="detail">{", ".join(detail)}'
            f'</span>{shown}</li>')


def _cluster(cluster):
    if not cluster:
        return ""
    nodes = _dict(cluster.get("nodes"))
    results = _dict(cluster.get("results"))
    rows = []
    for node in sorted(set(nodes) | set(results), key=str):
        roles = [r for r, yes in (("leader", node == cluster.get("leader")),
                                  ("this page", node == cluster.get("node"))) if yes]
        seen = _dict(results.get(node))
        views = " ".join(f'{_e(h)}&nbsp;{_badge(s)}' for h, s in sorted(seen.items(), key=str))
        rows.append(f'<tr data-node="{_e(node)}"><th>{_e(node)}</th><td>{", ".join(roles)}</td>'
                    f'<td>{views or "(no results yet)"}</td></tr>')
    left = cluster.get("lease_left")
    lease = f"<p>leader's lease: {_e(_duration(left))} left</p>" if timeline.finite(left) else ""
    return (f'<section id="cluster"><h2>Cluster {_e(cluster.get("name"))}</h2>{lease}'
            f'<table><thead><tr><th>node</th><th>role</th><th>its checks see</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></section>')


# -- small helpers ------------------------------------------------------------------------------

def _e(value):
    return escape(value if isinstance(value, str) else "-" if value is None else str(value))


def _name(value):
    """A status as the timeline takes it: a string, or None."""
    return value if value is None or isinstance(value, str) else str(value)


def _dict(value):
    return value if isinstance(value, dict) else {}


def _dicts(value):
    """The objects of a list (history, its commands, the queue); nothing else."""
    return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []


def _json(value):
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                           sort_keys=True, default=str)


def _short(text):
    return text if len(text) <= TEXT_MAX else text[:TEXT_MAX] + "\u2026"


def _badge(status):
    c = timeline.colour(status)
    return (f'<span class="status" style="background:{c};color:{timeline.ink(c)}">'
            f'{_e(status)}</span>')


def _status_order(status):
    order = list(timeline.COLOURS)
    return (order.index(status) if status in order else len(order), str(status))


def _by_status(item):
    return _status_order(item[0])


def _state_class(entry):
    state = entry.get("state")
    return state if state in ("done", "failed", "skipped", *OPEN) else "other"


def _elapsed(t, now):
    return now - t if timeline.finite(t) else None


def _when(t, now):
    """A local time; the date only when it is not today's."""
    if not timeline.finite(t):
        return "-"
    try:
        same_day = time.localtime(t)[:3] == time.localtime(now)[:3]
        return time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S", time.localtime(t))
    except (OverflowError, OSError, ValueError):
        return "-"


def _age(t, now):
    return _duration(_elapsed(t, now))


def _duration(seconds):
    if not timeline.finite(seconds):
        return "-"
    seconds = max(0, int(seconds))
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "min", 60),
                                      ("min", 60, "s", 1)):
        if seconds >= size:
            rest = (seconds % size) // sub_size
            return f"{seconds // size} {unit}" + (f" {rest} {sub}" if rest else "")
    return f"{seconds} s"


STYLE = """
:root{--fg:#1d2125;--muted:#5c6670;--line:#dee2e6;--card:#fff;--bg:#f4f5f7}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
 font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",sans-serif}
main{max-width:1180px;margin:0 auto;padding:12px}
header h1{margin:0;font-size:1.5em}
header p{margin:2px 0;color:var(--muted)}
h2{font-size:1.15em;margin:22px 0 8px}
h3{font-size:1em;margin:0;font-weight:600;overflow-wrap:anywhere}
code,pre{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:.9em}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f8f9fa;border:1px solid var(--line);
 padding:6px;margin:4px 0 0;max-height:12em;overflow:auto}
.banner{margin:8px 0;padding:8px 12px;border-radius:6px;font-weight:600;overflow-wrap:anywhere}
.banner.bad{background:#ffe3e3;color:#8a1c1c;border:1px solid #ffa8a8}
.banner.warn{background:#fff3bf;color:#6b4f00;border:1px solid #ffd43b}
.status{display:inline-block;padding:0 8px;border-radius:10px;font-size:.85em;font-weight:600;
 line-height:1.6;white-space:nowrap}
.mark{display:inline-block;padding:0 6px;border:1px solid #868e96;border-radius:4px;
 font-size:.78em;font-weight:500;color:var(--muted);margin-left:2px}
.mark.bad{border-color:#e03131;color:#c92a2a}.mark.warn{border-color:#f59f00;color:#8f5d00}
.summary,.legend{margin:4px 0;color:var(--muted)}
.legend .key{display:inline-block;margin-right:12px;white-space:nowrap;font-size:.9em}
.legend i{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:4px;
 vertical-align:-1px;border:1px solid rgba(0,0,0,.15)}
.host,.transition{background:var(--card);border:1px solid var(--line);border-radius:8px;
 padding:10px 12px;margin:8px 0}
.host{display:grid;grid-template-columns:minmax(240px,2fr) 3fr;gap:6px 18px;align-items:center}
.host .facts{margin:2px 0;color:var(--muted);font-size:.9em;overflow-wrap:anywhere}
.details{display:grid;grid-template-columns:auto 1fr;gap:0 8px;margin:4px 0 0;font-size:.85em}
.details dt{color:var(--muted)}
.details dd{margin:0;font-family:ui-monospace,"DejaVu Sans Mono",monospace;overflow-wrap:anywhere}
.timeline{display:block;overflow:visible}
.timeline text{font-size:11px;fill:var(--muted)}
.timeline .tick{stroke:#fff;stroke-width:1}
.transition h3{display:flex;flex-wrap:wrap;gap:4px 8px;align-items:center;font-weight:500}
.transition .who{font-weight:700}
.transition .when,.transition .job{color:var(--muted);font-variant-numeric:tabular-nums}
.state{font-size:.8em;text-transform:uppercase;letter-spacing:.04em;padding:0 6px;
 border-radius:4px;background:#e9ecef}
.state-done{background:#d3f9d8;color:#1b5e20}.state-failed{background:#ffe3e3;color:#8a1c1c}
.state-running,.state-queued{background:#fff3bf;color:#6b4f00}
.commands{margin:6px 0 0;padding-left:1.6em}
.commands li{margin:2px 0;overflow-wrap:anywhere}
.outcome{display:inline-block;min-width:3.4em;text-align:center;font-size:.8em;font-weight:700;
 border-radius:4px;padding:0 4px;background:#e9ecef}
.outcome-ok{background:#d3f9d8;color:#1b5e20}
.outcome-failed,.outcome-error,.outcome-interrupted{background:#ffe3e3;color:#8a1c1c}
.outcome-running{background:#fff3bf;color:#6b4f00}
.detail,.note,.none,.empty,.queue{color:var(--muted);font-size:.9em}
.note,.none{margin:4px 0 0}
details summary{cursor:pointer;color:var(--muted);font-size:.85em}
.commands details{display:inline-block;vertical-align:top;margin-left:4px}
.commands details[open]{display:block;margin-left:0}
#cluster table{border-collapse:collapse;width:100%;background:var(--card)}
#cluster th,#cluster td{border:1px solid var(--line);padding:4px 8px;text-align:left;
 vertical-align:top;overflow-wrap:anywhere}
footer{margin:24px 0 8px;color:var(--muted);font-size:.85em}
@media (max-width:700px){main{padding:8px}.host{grid-template-columns:1fr}}
"""

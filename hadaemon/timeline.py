"""A host's statuses over the last hours, for the status page: the intervals derived from
history's transitions and the current status (pure), the window and its time axis, and their
drawing as an SVG (percentages of its width, so it fits a phone and a desktop alike, without a
script). Every name drawn is escaped: hosts and statuses come from checks."""

import math
import time
import zlib
from html import escape

from .names import UNKNOWN

# The window fits what there is to show: a daemon started ten minutes ago gets 15 minutes, not
# six hours of nothing. Its length is one of these (seconds), at most the longest asked for.
SPANS = (300, 900, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600, 24 * 3600)
TICKS = (60, 120, 300, 600, 900, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600)
MAX_TICKS = 6

# The default statuses' colours; a declared one (`statuses =`) gets one of PALETTE by its name,
# the same on every page.
COLOURS = {"master": "#1864ab", "slave": "#74c0fc", "up": "#2f9e44", "warning": "#f59f00",
           "down": "#e03131", "unknown": "#adb5bd"}
PALETTE = ("#9c36b5", "#0ca678", "#e8590c", "#5f3dc4", "#c2255c", "#66a80f", "#1098ad",
           "#862e9c")
NO_RECORD = "#e9ecef"  # before anything history or the table says


def colour(status):
    if isinstance(status, str) and status in COLOURS:
        return COLOURS[status]
    return PALETTE[zlib.crc32(str(status).encode("utf-8", "replace")) % len(PALETTE)]


def ink(background):
    """Black or white, whichever reads better on background (#rrggbb)."""
    r, g, b = (int(background[i:i + 2], 16) for i in (1, 3, 5))
    return "#111" if 0.299 * r + 0.587 * g + 0.114 * b > 150 else "#fff"


def finite(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def intervals(changes, current, since, start, end):
    """[(from, to, status)] covering [start, end] where something is known, oldest first.

    changes: this host's transitions [(time, from, to)] as history has them. Before the first
    one the host was in its `from`, unless that is `unknown`, the status of a host never seen:
    nothing is known there (or a new daemon's hosts would look unknown for hours). A
    transition to the status the host already has changes nothing: that is how a sequence
    fired on `resume` looks, its status change being in history already, when it happened.
    current and since: the table's status and when it began; the table has the last word, so
    a status history does not show (pruned, or committed after history was read) starts at
    since. None: nothing known there."""
    changes = sorted((c for c in changes if finite(c[0])), key=lambda c: c[0])
    if changes:
        before = None if changes[0][1] == UNKNOWN else changes[0][1]
        points = [(-math.inf, before)] + [(t, target) for t, _, target in changes]
    else:
        points = [(-math.inf, None)]
    if current is not None and points[-1][1] != current:
        points.append((max(since, points[-1][0]) if finite(since) else points[-1][0], current))
    result = []
    for (t, status), (t_next, _) in zip(points, points[1:] + [(math.inf, None)]):
        t0, t1 = max(t, start), min(t_next, end)
        if t1 <= t0:
            continue
        if result and result[-1][2] == status and result[-1][1] == t0:
            result[-1] = (result[-1][0], t1, status)
        else:
            result.append((t0, t1, status))
    return result


def window(times, now, longest=SPANS[6]):
    """(start, end) of the timelines: the shortest span of SPANS (up to longest) reaching back
    to the earliest of times (history's and the daemon's start), else longest."""
    known = [t for t in times if finite(t) and t <= now]
    age = now - min(known) if known else longest
    spans = [s for s in SPANS if s < longest] + [longest]
    return now - next((s for s in spans if s >= age), longest), now


def ticks(start, end):
    """[(time, label)]: round local times at most MAX_TICKS apart in the window."""
    span = end - start
    step = next((s for s in TICKS if span / s <= MAX_TICKS), TICKS[-1])
    offset = time.localtime(start).tm_gmtoff  # round in local time: 12:00, not 12:00 UTC
    t = start - (start + offset) % step + step
    result = []
    while t < end:
        result.append((t, time.strftime("%H:%M", time.localtime(t))))
        t += step
    return result


def _pct(seconds, span):
    return f"{100 * seconds / span:.3f}%"


def _clock(t):
    return time.strftime("%H:%M:%S", time.localtime(t))


def svg(host, periods, start, end):
    """The timeline of one host: a bar of its intervals, each with a tooltip, over a time axis
    with round times and `now` at the right end."""
    bar, span = 22, end - start
    parts = [f'<svg class="timeline" width="100%" height="{bar + 16}" role="img" '
             f'aria-label="{escape(str(host))}: statuses from {_clock(start)} to now">',
             f'<rect x="0" y="0" width="100%" height="{bar}" fill="{NO_RECORD}"/>']
    for t0, t1, status in periods:
        if status is None:
            continue
        title = f"{status}: {_clock(t0)} to {'now' if t1 >= end else _clock(t1)}"
        parts.append(f'<rect class="span" x="{_pct(t0 - start, span)}" y="0" '
                     f'width="{_pct(t1 - t0, span)}" height="{bar}" '
                     f'fill="{colour(status)}" data-status="{escape(str(status))}">'
                     f'<title>{escape(title)}</title></rect>')
    for t, label in ticks(start, end):
        x = _pct(t - start, span)
        parts.append(f'<line x1="{x}" x2="{x}" y1="0" y2="{bar + 3}" class="tick"/>')
        if 0.04 < (t - start) / span < 0.88:  # no label cut at the edge, or over `now`
            parts.append(f'<text x="{x}" y="{bar + 14}" text-anchor="middle">{label}</text>')
    parts.append(f'<text x="100%" y="{bar + 14}" text-anchor="end">now</text></svg>')
    return "".join(parts)

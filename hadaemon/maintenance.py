"""Maintenance mode and the manual hold: the policy both backends follow (pure, no I/O).

A pause records when it began and every committed status then. Resume fires each host's net
change since (on_resume = last), or nothing (none): a host that went a -> b -> a fires nothing.
A manual status stands against contrary observations while its sequence runs, but never longer
than that sequence could take by its timeouts: a job that waits (for a resume, for a runner)
does not hold its host for ever.
"""

from .names import UNKNOWN


def pause_record(statuses, now, **more):
    """What resume needs: when the pause began (wall clock) and every committed status then."""
    return dict(since=now, statuses=dict(statuses), **more)


def net_changes(paused, statuses, on_resume):
    """[(host, status at pause, status now)] in host order: what resume fires."""
    if on_resume != "last":
        return []
    before = paused.get("statuses", {})
    return [(host, before.get(host, UNKNOWN), status) for host, status in sorted(statuses.items())
            if before.get(host, UNKNOWN) != status]


def manual_hold_until(start, steps, margin):
    """The latest a manual status stands: start (of the clock the caller uses) plus the sum of
    its commands' timeouts and a margin."""
    return start + sum(s["timeout"] for s in steps) + margin

"""The rule that turns check results into committed statuses.

Per host, the latest result of every check that reports it is kept until it goes stale (two
intervals plus the timeout of that check). The host's observation is the status they all agree
on; while they disagree the observation is a conflict and the committed status holds: two checks
that see a host differently never make it flip-flop, and never fire an action. An observation
different from the committed status must repeat `confirm` times in a row (the largest confirm of
the checks reporting the host) and respect the host's hold-down before it becomes a transition.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

from .names import UNKNOWN


def result_lifetime(check):
    """Seconds a check's result counts: two intervals plus its timeout. Longer without one, the
    check is not being run at all (stale.py)."""
    return 2 * check.interval + check.timeout


@dataclass(frozen=True)
class Transition:
    host: str
    source: str
    target: str
    snapshot: dict = field(hash=False, compare=False)  # every host's committed status after it
    manual: bool = False


class After(Mapping):
    """The committed statuses with host at target: a view, not a copy, since a copy per
    transition would cost as much as the table is large. Read while the transition is planned
    and recorded, before anything else is committed (the loop does one thing at a time)."""

    def __init__(self, committed, host, target):
        self.committed, self.host, self.target = committed, host, target

    def __getitem__(self, key):
        return self.target if key == self.host else self.committed[key]

    def __iter__(self):
        yield from self.committed
        if self.host not in self.committed:
            yield self.host

    def __len__(self):
        return len(self.committed) + (self.host not in self.committed)


@dataclass(frozen=True)
class Note:
    """Something the rule suppressed or noticed, for the log."""
    host: str
    kind: str  # pending | held | conflict | agreed
    text: str


class Committer:
    def __init__(self, committed, last_change=None):
        self.committed = dict(committed)  # host -> committed status
        self.touched = set()  # hosts committed or forgotten since the recorder last cleared it
        self.last_change = dict(last_change or {})  # host -> monotonic time of its last transition
        self._latest = {}  # host -> {check_id: (status, expires)}
        self._candidate = {}  # host -> (status, count)
        self._conflicted = set()
        self._manual_until = {}  # host -> monotonic time until which a manual status stands

    def status(self, host):
        return self.committed.get(host, UNKNOWN)

    def observe(self, check, results, now):
        """Feed one check run's results; return (proposed transitions, notes).

        A proposal becomes the committed status only through apply(), once it is recorded: a
        transition that cannot be written is proposed again by the next result.
        """
        transitions, notes = [], []
        expires = now + result_lifetime(check)
        for r in results:
            host = r["host"]
            self._latest.setdefault(host, {})[check.id] = (r["status"], expires, check.confirm,
                                                            check.hold_down)
            t = self._decide(host, now, notes)
            if t:
                transitions.append(t)
        return transitions, notes

    def observation(self, host, now):
        """The agreed status of a host, or None while its fresh results disagree."""
        latest = self._latest.get(host, {})
        for cid in [c for c, v in latest.items() if v[1] < now]:
            del latest[cid]
        statuses = {v[0] for v in latest.values()}
        return statuses.pop() if len(statuses) == 1 else None

    def in_conflict(self, host):
        """True while the fresh results for host disagree (as last seen by observe)."""
        return host in self._conflicted

    def forget_check(self, check_id):
        """A reload removed a check: its results no longer vote."""
        for latest in self._latest.values():
            latest.pop(check_id, None)

    def forget(self, host):
        """The operator removed a host no check reports: nothing of it is left to vote or to
        expand in %STATUS%."""
        for state in (self.committed, self.last_change, self._latest, self._candidate,
                      self._manual_until):
            state.pop(host, None)
        self._conflicted.discard(host)
        self.touched.add(host)

    def force(self, host, target):
        """A manual transition: no confirmation, no hold-down."""
        return self._propose(host, target, manual=True)

    def stand_manual(self, host, until):
        """Let a manual status stand against contrary observations until `until` (or
        end_manual, when its job closes): its actions are what make the checks agree, and
        results taken before they finish would undo it at once."""
        self._manual_until[host] = until

    def end_manual(self, host):
        """The manual status's job closed: observations count again."""
        self._manual_until.pop(host, None)

    def _decide(self, host, now, notes):
        latest = self._latest[host]
        observed = self.observation(host, now)
        if observed is None:
            self._candidate.pop(host, None)
            if host not in self._conflicted:
                self._conflicted.add(host)
                seen = ", ".join(f"{cid}={v[0]}" for cid, v in sorted(latest.items()))
                notes.append(Note(host, "conflict", f"checks disagree ({seen}); "
                                  f"status {self.status(host)} holds until they agree"))
            return None
        if host in self._conflicted:
            self._conflicted.discard(host)
            notes.append(Note(host, "agreed", f"checks agree again on {observed}"))
        current = self.status(host)
        if observed == current:
            if host in self._candidate:
                status, count = self._candidate.pop(host)
                notes.append(Note(host, "pending", f"{status} seen {count} time(s), then {current} "
                                  f"again: not committed"))
            return None
        status, count = self._candidate.get(host, (observed, 0))
        count = count + 1 if status == observed else 1
        self._candidate[host] = (observed, count)
        need = max(v[2] for v in latest.values())
        if count < need:
            notes.append(Note(host, "pending", f"{observed} seen {count}/{need} times"))
            return None
        if now < self._manual_until.get(host, 0.0):
            notes.append(Note(host, "held", f"{current} -> {observed} held: the manual "
                              f"transition to {current} is still being carried out"))
            return None
        hold_down = max(v[3] for v in latest.values())
        since = self.last_change.get(host)
        if since is not None and now - since < hold_down:
            notes.append(Note(host, "held", f"{current} -> {observed} held down for another "
                              f"{hold_down - (now - since):.1f}s"))
            return None
        return self._propose(host, observed)

    def _propose(self, host, target, manual=False):
        return Transition(host, self.status(host), target,
                          After(self.committed, host, target), manual)

    def apply(self, transition, now):
        """The transition is recorded durably: make it the committed status."""
        self._candidate.pop(transition.host, None)
        self.committed[transition.host] = transition.target
        self.touched.add(transition.host)
        self.last_change[transition.host] = now

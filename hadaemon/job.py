"""One job model for both journals: a job, its planned steps, the record of each step started.

A job's state moves only along the edges `transition` allows; `next_step` is the one place that
says which command runs next and when a sequence stops. The JSON shape (to_dict/from_dict) is
what both stores keep and what history reads, so a job reads the same from SQLite and etcd.
"""

import enum
from dataclasses import dataclass, field, fields, replace


class State(enum.Enum):
    QUEUED = "queued"  # committed, no command started yet
    RUNNING = "running"  # a command was started (or, in a cluster, a runner claimed it)
    DONE = "done"  # every command ran (or none was planned)
    FAILED = "failed"  # refused at planning, or stopped at a command that failed
    SKIPPED = "skipped"  # committed while paused: history only
    SUPERSEDED = "superseded"  # left open by a runner that died, the host moved on since

    @property
    def open(self):
        return self in (State.QUEUED, State.RUNNING)


class BadTransition(ValueError):
    """A state change the model does not allow (a bug in the caller, never the data's fault)."""


_EDGES = {
    # The first command's start is recorded (single node), or a runner claimed the job (cluster).
    (State.QUEUED, State.RUNNING),
    # Claimed again: its holder handed it on to the node of its next command, or died.
    (State.RUNNING, State.RUNNING),
    # Left queued by a previous run, and the host is no longer what the job was for.
    (State.QUEUED, State.SUPERSEDED),
    # Interrupted by a crash, and the host moved on before a runner took it up again.
    (State.RUNNING, State.SUPERSEDED),
    # Its last command finished (a failure with keep_going included).
    (State.RUNNING, State.DONE),
    # A command failed and was not marked keep_going: the rest does not run.
    (State.RUNNING, State.FAILED),
}
# Everything else is refused: DONE, FAILED, SKIPPED and SUPERSEDED are final, and a queued job
# cannot end before one of its commands was started (a job with none is created DONE).


def transition(current, new):
    """The new state if the edge current -> new is allowed; BadTransition otherwise."""
    if (current, new) not in _EDGES:
        raise BadTransition(f"a job cannot go from {current.value} to {new.value}")
    return new


@dataclass(frozen=True)
class Step:
    """One planned command (actions.plan, or the leader's fence job)."""
    text: str
    argv: tuple = None  # None when planning refused the sequence
    section: str = ""
    where: str = ""
    timeout: float = 0.0
    keep_going: bool = False
    error: str = None  # why it cannot run (refused at planning)
    program: str = None  # the path resolved at load; an older journal's step has none
    node: str = None  # cluster: the node its section names
    refused: bool = False

    @classmethod
    def from_dict(cls, d):
        argv = d.get("argv")
        return cls(d["text"], tuple(argv) if argv is not None else None, d.get("section", ""),
                   d.get("where", ""), d.get("timeout", 0.0), bool(d.get("keep_going")),
                   d.get("error"), d.get("program"), d.get("node"), bool(d.get("refused")))

    def to_dict(self):
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["argv"] = list(self.argv) if self.argv is not None else None
        for optional in ("node", "program", "refused"):  # absent stays absent
            if not d[optional]:
                del d[optional]
        return d


@dataclass(frozen=True)
class StepRecord:
    """What a store keeps of a step started: written before the command starts, completed
    after it ends. `stored`: the record as the store holds it (etcd compares on it)."""
    started: float = None
    finished: float = None  # None: not finished (running, or interrupted by a crash or stop)
    rc: int = None
    duration: float = None
    output: str = None
    error: str = None
    resumed: bool = False
    node: str = None
    stored: bytes = field(default=None, compare=False, repr=False)

    @property
    def done(self):
        return self.finished is not None

    @property
    def ok(self):
        return self.rc == 0 and not self.error

    @classmethod
    def from_dict(cls, d, stored=None):
        return cls(d.get("started"), d.get("finished"), d.get("rc"), d.get("duration"),
                   d.get("output"), d.get("error"), bool(d.get("resumed")), d.get("node"),
                   stored)

    def to_dict(self):
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "stored"}
        if d["node"] is None:
            del d["node"]
        return d


@dataclass(frozen=True)
class Job:
    """A committed transition's sequence (kind "transition") or the leader's fence command."""
    id: int
    host: str
    source: str
    target: str
    plan: tuple  # of Step
    state: State = State.QUEUED
    env: dict = field(default_factory=dict, hash=False)
    manual: bool = False
    created: float = None
    resumed: bool = False
    note: str = None
    finished: float = None
    kind: str = "transition"
    leader: str = None  # cluster: the node that committed it
    holder: str = ""  # cluster: the runner whose claim it is under ("" when none)
    stored: bytes = field(default=None, compare=False, repr=False)

    def moved(self, state, **changes):
        """This job in `state` (an allowed edge only), with `changes`."""
        return replace(self, state=transition(self.state, state), **changes)

    @classmethod
    def from_dict(cls, d, stored=None):
        return cls(d["id"], d["host"], d["source"], d["target"],
                   tuple(Step.from_dict(s) for s in d["plan"]), State(d["state"]),
                   d.get("env") or {}, bool(d.get("manual")), d.get("created"),
                   bool(d.get("resumed")), d.get("note"), d.get("finished"),
                   d.get("kind", "transition"), d.get("leader"), d.get("holder", ""), stored)

    def to_dict(self):
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "stored"}
        d.update(plan=[s.to_dict() for s in self.plan], state=self.state.value)
        return d


def next_step(job, records):
    """(index of the first step not finished, None) or, once none is left, (None, why the
    sequence stopped: None if it ran to its end). records: {index: StepRecord}. A step that
    failed stops the sequence unless it is keep_going; a finished step never runs again."""
    for idx, step in enumerate(job.plan):
        record = records.get(idx)
        if record is None or not record.done:
            return idx, None
        if not record.ok and not step.keep_going:
            return None, f"stopped at command {idx + 1}: {step.text}"
    return None, None


class Verdict(enum.Enum):
    """A runner's gate's answer to "may this runner start step idx of job now?". Here, not in
    runner.py: that module also runs as __main__, whose copy of a class is another class."""
    GO = "go"
    HOLD = "hold"  # not now: the job stays this runner's, asked again after gate.poll
    HAND_ON = "hand on"  # the step is another runner's: release the job to it
    FENCED = "fenced"  # the job is no longer this runner's: leave it alone


class Fenced(Exception):
    """A store refused a write: this runner's claim on the job is gone (cluster mode)."""

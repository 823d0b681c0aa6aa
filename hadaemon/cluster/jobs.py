"""What the leader queues in etcd: the job of a committed transition, and the fence job.

One shape for both (new_job: job.py's Job, as JSON): the cluster runner, history and `hadaemon
cluster-init` read every job back the same way (Job.from_dict). A transition's steps are planned
whole here, before the job is written (actions.plan), each with the node that must run it
(rules.step_node). No I/O.

A transition job does not carry its HA_* variables (every host's status: a job would grow with
the fleet, past etcd's request limit at some 30 000 hosts). It says AT_COMMIT instead: they are
the table as the transaction that created the job left it, which etcd keeps as a revision, and
the runner reads them there (store.EtcdJournal.environment).
"""

import shlex
import time

from .. import actions
from ..commit import After, Transition
from ..job import Job, State, Step
from ..journal import initial_state
from .rules import step_node


def new_job(job_id, kind, host, source, target, plan, env, leader, manual=False,
            state="queued", note=None, now=None):
    """A job as etcd holds it (Job.to_dict). `holder` (the runner that claimed it) starts
    empty; a job not queued is finished when it is written."""
    now = time.time() if now is None else now
    return Job(job_id, host, source, target, tuple(Step.from_dict(s) for s in plan),
               State(state), env, manual, now, note=note,
               finished=None if state == "queued" else now, kind=kind, leader=leader).to_dict()


AT_COMMIT = {"at": "commit"}  # a transition job's env: the table at the job's create revision


def transition_job(config, job_id, statuses, host, source, target, leader, manual=False,
                   paused=False, note=None):
    """The job of `host: source -> target` committed over `statuses` ({host: status} before
    it, a mapping read only where a command names a status). Paused: skipped (history only)."""
    transition = Transition(host, source, target, After(statuses, host, target), manual)
    d = config.daemon
    steps = actions.plan(config.sections, transition, d.action_timeout, d.on_failure)
    vals = actions.Values(transition)
    for step in steps:
        step["node"] = step_node(step["section"], vals)
    state, note = initial_state(steps, paused, note)
    return new_job(job_id, "transition", host, source, target, steps, dict(AT_COMMIT), leader,
                   manual, state, note)


def environment(job, statuses):
    """A transition job's HA_* variables over `statuses` ({host: status}: the table its commit
    left)."""
    return actions.environment(Transition(job.host, job.source, job.target, statuses,
                                          job.manual))


def fence_job(fence, timeout, job_id, previous, leader):
    """The fence command (`fence`: [cluster] fence as the agent started with it, the previous
    leader's name appended), for the new leader `leader` to run before any sequence."""
    step = {"section": "fence", "text": fence, "where": "[cluster] fence",
            "keep_going": False, "timeout": timeout,
            "argv": shlex.split(fence) + [previous], "error": None, "node": leader}
    return new_job(job_id, "fence", previous, "leader", "fenced", [step],
                   {"HA_FENCE_NODE": previous}, leader)

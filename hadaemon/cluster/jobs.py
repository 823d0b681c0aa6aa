"""What the leader queues in etcd: the job of a committed transition, and the fence job.

One shape for both (new_job: job.py's Job, as JSON): the cluster runner, history and `hadaemon
cluster-init` read every job back the same way (Job.from_dict). A transition's steps are planned
whole here, before the job is written (actions.plan), each with the node that must run it
(rules.step_node). No I/O.
"""

import shlex
import time
from collections import ChainMap

from .. import actions
from ..commit import Transition
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


def transition_job(config, job_id, table, host, source, target, leader, manual=False,
                   paused=False, note=None):
    """The job of `host: source -> target` committed over `table` ({host: status} before it).
    Paused: skipped (history only)."""
    # Read through, not copied: a commit must not cost a walk of every host unless its
    # commands name the hosts (%UP%, or the environment of a job that runs something).
    snapshot = ChainMap({host: target}, table)
    transition = Transition(host, source, target, snapshot, manual)
    d = config.daemon
    steps = actions.plan(config.sections, transition, d.action_timeout, d.on_failure)
    env = actions.environment(transition) if steps else {}
    vals = actions.Values(transition)
    for step in steps:
        step["node"] = step_node(step["section"], vals)
    state, note = initial_state(steps, paused, note)
    return new_job(job_id, "transition", host, source, target, steps, env, leader, manual,
                   state, note)


def fence_job(fence, timeout, job_id, previous, leader):
    """The fence command (`fence`: [cluster] fence as the agent started with it, the previous
    leader's name appended), for the new leader `leader` to run before any sequence."""
    step = {"section": "fence", "text": fence, "where": "[cluster] fence",
            "keep_going": False, "timeout": timeout,
            "argv": shlex.split(fence) + [previous], "error": None, "node": leader}
    return new_job(job_id, "fence", previous, "leader", "fenced", [step],
                   {"HA_FENCE_NODE": previous}, leader)

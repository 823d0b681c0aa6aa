"""/metrics: the Prometheus exposition of one snapshot of the daemon, built with
prometheus-client (a Collector over the snapshot dict, rendered by generate_latest).

Host statuses follow the exporters' convention: one gauge per host and declared status, 1 for
the host's status and 0 for the others, so no label ever changes value. Transitions and command
outcomes are counted here, in the HTTP child, from the newest history entries of each snapshot
(Tally): the supervisor does not learn how jobs end, the journal does.
"""

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily)

OPEN = ("queued", "running")  # a job in these states has not ended: it is counted later


class Tally:
    """Transitions by how their job ended, commands by outcome: each job counted once, when it
    is first seen ended. Counts start at the HTTP child's start (a counter reset to Prometheus)
    with the jobs of the first snapshot."""

    def __init__(self):
        self.transitions, self.commands = {}, {}
        self.counted = set()  # ids of ended jobs counted; only those of the last window kept

    def add(self, history):
        for job in history:
            if job["state"] in OPEN or job["id"] in self.counted:
                continue
            self.counted.add(job["id"])
            self.transitions[job["state"]] = self.transitions.get(job["state"], 0) + 1
            for c in job["commands"]:
                self.commands[c["outcome"]] = self.commands.get(c["outcome"], 0) + 1
        if history:  # ids below the window never come back
            low = min(job["id"] for job in history)
            self.counted = {i for i in self.counted if i >= low}


class SnapshotCollector:
    def __init__(self, snapshot, tally):
        self.snapshot, self.tally = snapshot, tally

    def collect(self):
        snap = self.snapshot
        status, now = snap["status"], snap["time"]
        hosts, daemon = status["hosts"], status["daemon"]
        statuses = sorted(set(snap["statuses"]) | {e["status"] for e in hosts.values()})
        is_status = GaugeMetricFamily("hadaemon_host_status", "1 if the host's committed "
                                      "status is this one, else 0", labels=["host", "status"])
        result = GaugeMetricFamily("hadaemon_host_last_result_age_seconds",
                                   "Seconds since a check last reported the host",
                                   labels=["host"])
        change = GaugeMetricFamily("hadaemon_host_last_change_age_seconds",
                                   "Seconds since the host's status last changed",
                                   labels=["host"])
        stale = GaugeMetricFamily("hadaemon_host_stale", "1 if no check reports the host "
                                  "fresh results", labels=["host"])
        for host, e in hosts.items():
            for s in statuses:
                is_status.add_metric([host, s], 1.0 if e["status"] == s else 0.0)
            if e.get("last_seen") is not None:
                result.add_metric([host], max(0.0, now - e["last_seen"]))
            if e.get("since") is not None:
                change.add_metric([host], max(0.0, now - e["since"]))
            stale.add_metric([host], 1.0 if e.get("stale") else 0.0)
        yield from (is_status, result, change, stale)
        yield from self._checks(snap["checks"])
        if "turns" in snap:
            turns = HistogramMetricFamily("hadaemon_loop_turn_seconds", "The supervisor's "
                                          "CPU time in one turn of its loop (nothing else is "
                                          "done meanwhile)")
            turns.add_metric([], *_buckets(snap["turns"]))
            yield turns
        transitions = CounterMetricFamily("hadaemon_transitions", "Transitions by how their "
                                          "sequence ended", labels=["result"])
        for state, n in sorted(self.tally.transitions.items()):
            transitions.add_metric([state], n)
        commands = CounterMetricFamily("hadaemon_commands", "Action commands by outcome",
                                       labels=["result"])
        for outcome, n in sorted(self.tally.commands.items()):
            commands.add_metric([outcome], n)
        yield from (transitions, commands)
        stale_checks = daemon["stale"]["checks"]
        cluster = status.get("cluster")
        paused = daemon["paused"] or bool(cluster and cluster.get("paused"))
        for name, text, value in (
                ("queue_length", "Sequences queued or running", len(status.get("queue", []))),
                ("workers", "Worker processes", daemon["workers"]),
                ("stale_checks", "Checks without a fresh result", len(stale_checks)),
                ("stale_hosts", "Hosts without a fresh result", len(daemon["stale"]["hosts"])),
                ("paused", "1 while paused (no action fires)", 1 if paused else 0)):
            yield GaugeMetricFamily(f"hadaemon_{name}", text, value=value)
        if cluster is not None:
            yield from _cluster(cluster)

    def _checks(self, checks):
        runs = CounterMetricFamily("hadaemon_check_runs", "Runs of the check", labels=["check"])
        failures = CounterMetricFamily("hadaemon_check_failures", "Runs that gave no usable "
                                       "result (timeout, crash, unusable output)",
                                       labels=["check"])
        duration = HistogramMetricFamily("hadaemon_check_duration_seconds", "From hand-over "
                                         "to a worker to the result", labels=["check"])
        lateness = HistogramMetricFamily("hadaemon_check_lateness_seconds", "How late a run "
                                         "started against its schedule", labels=["check"])
        for cid, c in sorted(checks.items()):
            runs.add_metric([cid], c["runs"])
            failures.add_metric([cid], c["failures"])
            for family, h in ((duration, c["duration"]), (lateness, c["lateness"])):
                family.add_metric([cid], *_buckets(h))
        return runs, failures, duration, lateness


def _buckets(h):
    """A checkstats histogram as prometheus-client takes it: (buckets with +Inf, sum)."""
    return [(repr(float(le)), n) for le, n in h["buckets"]] + [("+Inf", h["count"])], h["sum"]


def _cluster(c):
    node = GaugeMetricFamily("hadaemon_cluster_node_info", "This node and its cluster",
                             labels=["node", "cluster"])
    node.add_metric([c["node"], c["name"]], 1)
    yield node
    leading = GaugeMetricFamily("hadaemon_cluster_leader_info", "The leader this node sees "
                                "(no sample while it sees none)", labels=["leader"])
    if c.get("leader"):
        leading.add_metric([c["leader"]], 1)
    yield leading
    yield GaugeMetricFamily("hadaemon_cluster_is_leader", "1 if this node leads",
                            value=1 if c.get("leader") == c["node"] else 0)
    yield GaugeMetricFamily("hadaemon_cluster_stale", "1 while this node's view of the "
                            "cluster is not current (etcd out of reach, not joined)",
                            value=1 if c.get("stale") else 0)
    if c.get("lease_left") is not None:
        yield GaugeMetricFamily("hadaemon_cluster_lease_left_seconds", "Seconds left on this "
                                "node's etcd lease (its node key; on the leader, the leader "
                                "key too)", value=c["lease_left"])


def render(snapshot, tally):
    """The exposition text of one snapshot."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot, tally))
    return generate_latest(registry)

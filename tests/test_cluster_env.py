"""A cluster job's HA_* variables: the table as its commit left it, read from etcd at that
revision (a job does not carry every host's status), and what happens once etcd compacted it."""

import json

import pytest

from conftest import wait_for
from etcdkit import read_log
from test_cluster import cluster, committed, etcd, server  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.slow, pytest.mark.every_etcd]  # compaction is etcd's own

# db2's up_to_down holds the runner until the test lets it go, so that jobs queue behind it.
GATE = """#!/bin/sh
[ "$1" = db2 ] || exit 0
while [ ! -e "$HA_HOME/var/go" ]; do sleep 0.05; done
"""
ENVLOG = """#!/bin/sh
echo "job=$HA_JOB $HA_HOST $HA_FROM->$HA_TO up=$HA_UP down=$HA_DOWN" >> "{log}"
"""
ACTIONS = """
[up_to_down]
gate %HOST%
envlog

[down_to_up]
envlog
"""


def queue_behind_a_held_job(cluster_, etcd_, compact):
    """db2 goes down (its job held), then db1 goes down and db2 up again: db1's job waits with
    the table its commit left (db1 and db2 down), which the later commit changed (db2 up)."""
    (node,), log = cluster_(("n1",), actions=ACTIONS)
    node.script("actions", "gate", GATE)
    node.script("actions", "envlog", ENVLOG.format(log=log))
    for host in ("db1", "db2"):
        node.set_status(host, "up")
    node.start()
    for host in ("db1", "db2"):
        wait_for(committed(node, host, "up"), 60, f"{host} up")
    node.set_status("db2", "down")
    wait_for(committed(node, "db2", "down"), 30, "db2 down (its job held)")
    node.set_status("db1", "down")
    wait_for(committed(node, "db1", "down"), 30, "db1 down (its job queued)")
    node.set_status("db2", "up")
    wait_for(committed(node, "db2", "up"), 30, "db2 up again (its job queued)")
    if compact:
        header = json.loads(etcd_.ctl("get", "none", "-w", "json").stdout)["header"]
        r = etcd_.ctl("compact", str(header["revision"]))
        assert r.returncode == 0, r.stderr
    (node.root / "var/go").touch()
    wait_for(lambda: len(read_log(log)) == 3, 30, "the three jobs' envlog lines")
    return node, read_log(log)


def test_a_queued_job_gets_the_table_its_commit_left_not_the_one_it_runs_in(cluster, etcd):
    node, lines = queue_behind_a_held_job(cluster, etcd, compact=False)
    assert lines[1].endswith("db1 up->down up= down=db1 db2"), lines
    assert lines[2].endswith("db2 down->up up=db2 down=db1"), lines
    # The job in etcd names no host's status: it stays small however large the fleet.
    job = json.loads(etcd.ctl("get", "--print-value-only", "/hatest/job/000000000004")
                     .stdout)
    assert (job["host"], job["env"]) == ("db1", {"at": "commit"}), job


def test_once_etcd_compacted_that_revision_a_job_runs_with_the_table_as_it_is(cluster, etcd):
    node, lines = queue_behind_a_held_job(cluster, etcd, compact=True)
    # Said, and run: never stuck asking etcd for a revision it will not give again.
    assert lines[1].endswith("db1 up->down up=db2 down=db1"), lines
    assert "the table its commit left (etcd revision" in node.daemon_log()

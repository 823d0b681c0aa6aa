"""The [node:NAME] scope as config.py reads it: checks that one cluster node alone runs."""

from dataclasses import replace

import pytest

from hadaemon import config
from hadaemon.home import Home
from hadaemon.inifile import ConfigError

CLUSTER = """\
[cluster]
etcd = http://127.0.0.1:2379
node = {node}
"""


def load(home):
    return config.load(Home(home.root))


def problems(home):
    with pytest.raises(ConfigError) as e:
        load(home)
    return e.value.problems


def test_a_node_scope_runs_on_its_node_alone_and_its_host_defaults_to_the_node(home):
    text = CLUSTER + """\
[local]
status_from_files db1
[node:n2]
disk
[check:disk]
script = status_from_files
interval = 3
[node:n3]
disk
"""
    home.write("checks.conf", text.format(node="n2"))
    c = load(home)
    assert [(s.id, s.node, s.host, s.interval) for s in c.checks] == [
        ("status_from_files", "", "", 5.0), ("disk", "n2", "n2", 3.0)]
    assert [(s.id, s.node, s.host) for s in c.elsewhere] == [("disk", "n3", "n3")]
    home.write("checks.conf", text.format(node="n1"))
    c = load(home)
    assert [s.id for s in c.checks] == ["status_from_files"]
    assert [s.node for s in c.elsewhere] == ["n2", "n3"]
    # a reload that changed [cluster] keeps the running one: its node decides
    assert [s.node for s in c.on_node(replace(c.cluster, node="n3")).checks] == ["", "n3"]


def test_a_node_scope_outside_cluster_mode_is_an_error_with_its_line(home):
    home.write("checks.conf", "[local]\nstatus_from_files db1\n[node:n2]\n"
               "status_from_files db2\n")
    assert [p.split("checks.conf")[1] for p in problems(home)] == [
        ":3: [node:n2]: node scopes work only in cluster mode (a [cluster] section); use "
        "[local] on a single node"]


def test_a_bad_node_name_and_a_check_listed_twice_on_one_node_are_errors(home):
    home.write("checks.conf", CLUSTER.format(node="n1") + """\
[local]
status_from_files db1
[node:bad name!]
status_from_files
[node:n2]
disk
disk db2
[check:disk]
script = status_from_files
[node:n3]
status_from_files
""")
    assert [p.split("checks.conf")[1] for p in problems(home)] == [
        ":6: [node:bad name!]: 'bad name!' is not a node name (letters, digits, .:_-)",
        ":10: check 'disk' listed twice (first at line 9); give each a [check:NAME] section "
        "with its own script=",
        ":14: check 'status_from_files' listed twice (first at line 5); give each a "
        "[check:NAME] section with its own script="]

"""The rules that tell an etcd holding this cluster from one that lost it or went back in time,
and what `hadaemon cluster-init` writes: pure logic, no etcd (tests/test_cluster.py does it for
real)."""

import json

import pytest

from hadaemon.cluster import clusterid, reinit
from hadaemon.cluster.keys import Keys
from hadaemon.home import Home

KEYS = Keys("/c/")
MARKER = {"id": "abc", "generation": 1}


def look(marker=MARKER, marker_rev=5, cluster="77", revision=100, seq=4, refusals=None):
    """clusterid.found() of a live/ range as etcd would return it."""
    live = {}
    if marker is not None:
        live[KEYS.marker] = (json.dumps(marker).encode(), 0, marker_rev)
    for node, report in (refusals or {}).items():
        live[KEYS.refusal(node)] = (json.dumps(report).encode(), 9, 50)
    return clusterid.found(KEYS, live, {"cluster_id": cluster, "revision": str(revision)},
                           str(seq).encode() if seq else None, seq is not None)


def remembered(**changes):
    return dict({"name": "c", "marker": "abc", "generation": 1, "marker_rev": 5,
                 "etcd_cluster": "77", "revision": 90, "seq": 4}, **changes)


def test_a_healthy_etcd_is_trusted_and_a_new_node_adopts_it():
    assert clusterid.verdict(remembered(), look(), "n1") == ("ok", None)
    assert clusterid.verdict({}, look(), "n1") == ("adopt", None)
    assert clusterid.verdict({}, look(marker=None, seq=0), "n1") == ("init", None)


@pytest.mark.parametrize("seen, why", [
    (dict(marker=None, revision=3, seq=0), "the cluster's marker is missing from etcd"),
    (dict(marker={"id": "xyz", "generation": 1}), "etcd holds marker xyz"),
    (dict(marker={"id": "abc", "generation": 0}), "older than the last re-initialisation"),
    (dict(marker_rev=6), "it was deleted and written again"),
    (dict(cluster="78"), "it is another etcd cluster"),
    (dict(revision=80), "etcd is at revision 80, this node has seen revision 90"),
    (dict(seq=3), "etcd's job counter is at #3, this node has seen job #4"),
])
def test_what_a_healthy_etcd_cannot_show_is_refused(seen, why):
    what, reason = clusterid.verdict(remembered(), look(**seen), "n1")
    assert what == "refuse" and why in reason, reason


def test_an_unreadable_marker_is_refused_even_by_a_new_node():
    found = clusterid.found(KEYS, {KEYS.marker: (b"[1]", 0, 5)}, {"revision": "9"}, None)
    for memory in (remembered(), {}):
        assert "marker in etcd is unreadable" in clusterid.verdict(memory, found, "n1")[1]


def test_a_refusal_sticks_until_a_higher_generation_of_the_marker_it_knew():
    seen = look(marker=None, seq=0)
    memory = clusterid.refused("c", remembered(), "gone", seen)
    assert memory["refused_generation"] == 1
    # etcd coming back as it was, or a brand-new cluster's first marker: still refused
    assert clusterid.verdict(memory, look(), "n1") == ("refuse", "gone")
    assert clusterid.verdict(memory, look(marker={"id": "new", "generation": 2}), "n1")[0] \
        == "refuse"
    # cluster-init: the same marker, one generation up; the job counter must not have gone back
    assert clusterid.verdict(memory, look(marker={"id": "abc", "generation": 2}), "n1") \
        == ("adopt", None)
    assert "job ids would be used twice" in clusterid.verdict(
        memory, look(marker={"id": "abc", "generation": 2}, seq=2), "n1")[1]
    # the runner reads no job counter: it does not judge it
    assert clusterid.verdict(memory, look(marker={"id": "abc", "generation": 2}, seq=None),
                             "n1") == ("adopt", None)


def test_another_nodes_refusal_of_this_generation_stops_every_node():
    report = {"reason": "etcd is at revision 8", "marker": "abc", "refused_generation": 1}
    what, reason = clusterid.verdict(remembered(), look(refusals={"n2": report}), "n1")
    assert what == "refuse" and reason == "node n2 refuses this etcd: etcd is at revision 8"
    assert clusterid.verdict({}, look(refusals={"n2": report}), "n1")[0] == "refuse"
    assert clusterid.verdict({}, look(marker=None, refusals={"n2": report}), "n1")[0] \
        == "refuse"
    # its own refusal, or one of a generation re-initialised since, stops nobody
    assert clusterid.verdict(remembered(), look(refusals={"n1": report}), "n1")[0] == "ok"
    after = look(marker={"id": "abc", "generation": 2}, refusals={"n2": report})
    assert clusterid.verdict(remembered(), after, "n1") == ("adopt", None)


def test_the_highest_job_id_is_noted_and_saved_at_once(tmp_path):
    home = Home(tmp_path)
    home.make_var()
    memory = remembered()
    assert clusterid.noted(memory, look(seq=7, revision=120))
    assert not clusterid.noted(memory, look(seq=7, revision=130))
    assert (memory["seq"], memory["revision"]) == (7, 130)
    clusterid.save(home, memory)
    assert clusterid.load(home, "c") == memory
    assert clusterid.load(home, "other") == {}  # another cluster name: nothing remembered
    clusterid.path(home).write_text("{not json")
    problems = []
    assert clusterid.load(home, "c", problems) == {}
    assert str(clusterid.path(home)) in problems[0]


def survey(marker=None, seq=2, open_jobs=None, hosts=()):
    seen = look(marker=marker, seq=seq, revision=10)
    seen.update(top_job=seq, open=open_jobs or {}, hosts=list(hosts),
                marker_raw=None)
    return seen


def source(node, seq, revision, table, **more):
    return dict({"node": node, "reason": "gone", "marker": "abc", "generation": 1,
                 "refused_generation": 1, "seq": seq, "revision": revision,
                 "etcd_cluster": "77", "table": table, "paused": None}, **more)


def test_cluster_init_continues_job_ids_above_every_node_and_takes_the_freshest_mirror():
    sources = {"n1": source("n1", 4, 90, {"db1": {"status": "slave"}}),
               "n2": source("n2", 6, 95, {"db1": {"status": "master"}},
                            paused={"since": 1.0}),
               "n3": source("n3", 6, 91, {"db1": {"status": "slave"}})}
    p = reinit.plan(survey(open_jobs={3: {"id": 3}}), sources)
    assert p["seq"] == 6 and p["table_from"] == "n2" and p["table"]["db1"]["status"] == "master"
    assert p["marker"]["id"] == "abc" and p["marker"]["generation"] == 2
    assert p["abandon"] == [3] and p["paused"] == {"since": 1.0}
    text = "\n".join(reinit.describe("http://e:2379", survey(), sources, p))
    assert "MISSING" in text and "job ids go on from #7" in text
    assert "close 1 job(s) open in etcd as abandoned" in text and "#3" in text
    # the counter in etcd, or a job record there, can be higher than any node saw
    assert reinit.plan(survey(seq=9), sources)["seq"] == 9


def test_cluster_init_refuses_when_there_is_nothing_or_no_one_cluster_to_restore():
    with pytest.raises(reinit.NotDone, match="initialise a new cluster themselves"):
        reinit.plan(survey(), {})
    with pytest.raises(reinit.NotDone, match="nothing to re-initialise"):
        reinit.plan(survey(marker=MARKER), {})
    with pytest.raises(reinit.NotDone, match="remember different clusters"):
        reinit.plan(survey(), {"n1": source("n1", 1, 1, {}),
                               "n2": source("n2", 1, 1, {}, marker="xyz")})

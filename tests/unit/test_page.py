"""The status page (page.py) and its timelines (timeline.py): the intervals a host's history
gives, and the page rendered from status and history answers shaped as the daemon gives them,
hostile names included, read back with an HTML parser."""

import time

import pytest

from dom import parse
from hadaemon import page, timeline

NOW = 1_800_000_000.0


def entry(i, host, source, target, t, commands=(), **more):
    return dict({"id": i, "host": host, "from": source, "to": target, "manual": False,
                 "time": t, "state": "done", "resumed": False, "finished": t, "note": None,
                 "leader": None, "commands": list(commands)}, **more)


def command(text, outcome="ok", rc=0, output="", **more):
    return dict({"command": text, "argv": text.split(), "section": "slave_to_master",
                 "node": None, "outcome": outcome, "started": NOW - 60, "finished": NOW - 59,
                 "exit": rc, "duration": 0.5, "output": output, "error": "", "resumed": False},
                **more)


def host(status, since, **more):
    return dict({"status": status, "since": since, "observed": status, "last_seen": NOW - 1,
                 "check": "check_db", "details": {}, "conflict": False, "stale": False,
                 "manual": False}, **more)


def answer(hosts, **daemon):
    return {"ok": True, "queue": [], "hosts": hosts,
            "daemon": dict({"pid": 99, "home": "/srv/ha", "started": NOW - 3600, "checks": 2,
                            "workers": 2, "runner": 100, "record_error": None, "paused": False,
                            "stale": {"hosts": [], "checks": {}}}, **daemon)}


# -- intervals -----------------------------------------------------------------------------------

def test_intervals_follow_the_transitions_up_to_the_current_status():
    changes = [(100, "unknown", "master"), (200, "master", "slave")]
    assert timeline.intervals(changes, "slave", 200, 0, 300) == [
        (0, 100, None), (100, 200, "master"), (200, 300, "slave")]


def test_a_host_never_seen_before_its_first_transition_is_no_record_but_unknown_later_is():
    changes = [(100, "unknown", "master"), (200, "master", "unknown"), (250, "unknown", "up")]
    assert timeline.intervals(changes, "up", 250, 0, 300) == [
        (0, 100, None), (100, 200, "master"), (200, 250, "unknown"), (250, 300, "up")]


def test_intervals_are_cut_to_the_window():
    changes = [(100, "unknown", "master"), (200, "master", "slave"), (400, "slave", "down")]
    assert timeline.intervals(changes, "down", 400, 150, 300) == [
        (150, 200, "master"), (200, 300, "slave")]


def test_before_the_first_transition_the_host_was_in_its_from_status():
    """history cut by its limit: the oldest entry says what came before it"""
    assert timeline.intervals([(100, "slave", "master")], "master", 100, 0, 300) == [
        (0, 100, "slave"), (100, 300, "master")]


def test_a_host_without_history_is_known_from_its_since_only():
    assert timeline.intervals([], "up", 120, 0, 300) == [(0, 120, None), (120, 300, "up")]
    assert timeline.intervals([], "up", -50, 0, 300) == [(0, 300, "up")]
    assert timeline.intervals([], "up", None, 0, 300) == [(0, 300, "up")]


def test_a_sequence_fired_on_resume_changes_no_status():
    """paused: slave -> master at 100 is skipped; resume at 200 fires slave -> master again"""
    changes = [(50, "unknown", "slave"), (100, "slave", "master"), (200, "slave", "master")]
    assert timeline.intervals(changes, "master", 100, 0, 300) == [
        (0, 50, None), (50, 100, "slave"), (100, 300, "master")]


def test_the_table_has_the_last_word_over_history():
    """a transition committed after history was read (or pruned from it) starts at since"""
    changes = [(100, "unknown", "slave")]
    assert timeline.intervals(changes, "master", 250, 0, 300) == [
        (0, 100, None), (100, 250, "slave"), (250, 300, "master")]


def test_transitions_without_a_time_are_left_out_and_order_is_by_time():
    changes = [(200, "master", "slave"), (None, "x", "y"), (100, "down", "master")]
    assert timeline.intervals(changes, "slave", 200, 0, 300) == [
        (0, 100, "down"), (100, 200, "master"), (200, 300, "slave")]


def test_the_window_fits_what_there_is_to_show():
    assert timeline.window([NOW - 100], NOW) == (NOW - 300, NOW)
    assert timeline.window([NOW - 100, NOW - 5000], NOW) == (NOW - 7200, NOW)
    assert timeline.window([NOW - 10 * 86400], NOW) == (NOW - 6 * 3600, NOW)
    assert timeline.window([], NOW) == (NOW - 6 * 3600, NOW)
    assert timeline.window([NOW - 86400, None, "x"], NOW, longest=2 * 3600) == (NOW - 7200, NOW)


@pytest.mark.parametrize("span", [300, 900, 3600, 6 * 3600, 86400])
def test_axis_ticks_are_round_local_times_inside_the_window(span):
    ticks = timeline.ticks(NOW - span, NOW)
    assert 2 <= len(ticks) <= timeline.MAX_TICKS
    step = ticks[1][0] - ticks[0][0]
    for t, label in ticks:
        assert NOW - span < t < NOW
        assert (t + time.localtime(t).tm_gmtoff) % step == 0
        assert label == time.strftime("%H:%M", time.localtime(t))


# -- the page ------------------------------------------------------------------------------------

def tags_and_attributes(doc):
    return {e.tag for e in doc.iter()} - {"#document"}, {
        name for e in doc.iter() for name in e.attrs}


ALLOWED = {"html", "head", "meta", "title", "style", "body", "main", "header", "h1", "h2", "h3",
           "p", "b", "code", "section", "span", "i", "article", "div", "dl", "dt", "dd", "svg",
           "rect", "title", "line", "text", "ol", "li", "details", "summary", "pre", "footer",
           "table", "thead", "tbody", "tr", "th", "td", "ul"}


def test_every_string_from_checks_config_and_history_is_escaped():
    evil = '<script>alert("x")</script>'
    quote = "db1\" onmouseover=\"alert(1)' x='"
    hosts = {evil: host("master", NOW - 100, details={evil: evil, "n": {"k": quote}},
                        check=evil, observed=evil),
             quote: host(evil, NOW - 50, manual=True)}
    history = [entry(1, evil, "unknown", "master", NOW - 100,
                     [command(evil, output=evil, node=evil, error=evil),
                      command("x", outcome=evil, rc=evil)], note=evil, leader=evil),
               entry(2, quote, "unknown", evil, NOW - 50, state=evil, id=evil)]
    status = answer(hosts, home=evil, stale={"hosts": [evil], "checks": {evil: 3.0}},
                    record_error=evil)
    status["cluster"] = {"name": evil, "node": quote, "leader": evil, "nodes": {evil: {}},
                         "results": {evil: {quote: evil}}, "stale": True, "error": evil}
    status["queue"] = [{"id": evil, "host": evil, "target": evil, "state": evil}]
    html = page.render(status, history, NOW)
    doc = parse(html)
    tags, attributes = tags_and_attributes(doc)
    assert tags <= ALLOWED
    assert not [a for a in attributes if a.startswith("on") or a in ("x'", "src", "href")]
    assert "<script" not in html.lower() and "<img" not in html.lower()
    # ... and shown as they are, as text
    assert doc.find("article", data_host=evil).find(cls="name").text() == evil
    assert doc.find("article", data_host=quote).find(cls="name").text() == quote
    assert evil in doc.find("section", id="transitions").text()
    assert evil in doc.find("dl", cls="details").text()
    assert evil in doc.find("section", id="cluster").text()
    assert doc.find("title").text().startswith("hadaemon")


def test_the_page_needs_nothing_from_elsewhere_and_reloads_itself():
    status = answer({"db1": host("master", NOW - 100)})
    html = page.render(status, [entry(1, "db1", "unknown", "master", NOW - 100)], NOW, refresh=7)
    doc = parse(html)
    assert doc.find("meta", **{"http_equiv": "refresh"}).attrs["content"] == "7"
    assert not [e for e in doc.iter() if e.tag == "script" or "src" in e.attrs
                or "href" in e.attrs]
    assert "url(" not in html and "@import" not in html
    default = parse(page.render(status, [], NOW)).find("meta", http_equiv="refresh")
    assert default.attrs["content"] == "10"


def test_an_empty_table_says_so():
    doc = parse(page.render(answer({}), [], NOW))
    assert "no hosts seen yet" in doc.find("section", id="hosts").text()
    assert "no transitions yet" in doc.find("section", id="transitions").text()
    assert not doc.find_all("svg")


def test_the_last_recorded_state_of_a_stopped_daemon():
    """what `status --json` prints when no daemon answers: no daemon, no staleness"""
    status = {"ok": True, "running": False, "note": "not running; last recorded state shown",
              "hosts": {"db1": {"status": "slave", "since": NOW - 10}}}
    doc = parse(page.render(status, [], NOW))
    assert "NOT RUNNING" in doc.find(cls="banner").text()
    card = doc.find("article", data_host="db1")
    assert card.find(cls="status").text() == "slave"


def test_a_host_with_no_history_shows_its_status_since_when_it_is_known():
    status = answer({"db1": host("master", NOW - 100, details={"lag": 0})})
    doc = parse(page.render(status, [], NOW))
    card = doc.find("article", data_host="db1")
    assert card.find(cls="status").text() == "master"
    assert "(1 min 40 s)" in card.find("p", cls="facts").text()
    assert card.find("dl", cls="details").text() == "lag0"
    spans = card.find("svg", cls="timeline").find_all("rect", cls="span")
    assert [s.attrs["data-status"] for s in spans] == ["master"]
    # the daemon started an hour ago: the hour before since is no record, not master
    assert 0 < float(spans[0].attrs["x"].rstrip("%")) < 100


def test_a_host_shows_its_transitions_and_their_commands_outcomes():
    history = [entry(1, "db1", "down", "slave", NOW - 3000),
               entry(2, "db1", "slave", "master", NOW - 60,
                     [command("stopservice1", output="stopped\n"),
                      command("startservice1", outcome="failed", rc=3)], state="failed")]
    status = answer({"db1": host("master", NOW - 60, manual=True)}, paused=True)
    status["queue"] = [{"id": 3, "host": "db1", "target": "down", "state": "queued"}]
    doc = parse(page.render(status, history, NOW))
    card = doc.find("article", data_host="db1")
    assert [s.attrs["data-status"] for s in card.find_all("rect", cls="span")] == [
        "down", "slave", "master"]
    assert "set by hand" in card.text()
    newest = doc.find("section", id="transitions").find_all("article")[0]
    assert newest.attrs["data-job"] == "2"
    assert [(li.find(cls="outcome").text(), li.find("code").text())
            for li in newest.find_all("li")] == [("ok", "stopservice1"),
                                                 ("failed", "startservice1")]
    assert "exit 3" in newest.text() and "stopped" in newest.find("pre").text()
    assert "500 ms" in newest.text()
    assert "PAUSED" in " ".join(b.text() for b in doc.find_all(cls="banner"))
    assert "#3 db1 → down" in doc.find("section", id="queue").text()


def test_many_hosts_each_get_their_card_and_the_newest_transitions_are_listed():
    hosts = {f"h{i:04d}": host("up" if i % 3 else "down", NOW - i) for i in range(600)}
    history = [entry(i, f"h{i % 600:04d}", "unknown", "up", NOW - 3000 + i) for i in range(1200)]
    doc = parse(page.render(answer(hosts), history, NOW))
    assert len(doc.find_all("article", cls="host")) == 600
    assert len(doc.find_all("svg", cls="timeline")) == 600
    shown = doc.find("section", id="transitions").find_all("article")
    assert [a.attrs["data-job"] for a in shown] == [str(i) for i in range(1199, 1199 -
                                                                          page.TRANSITIONS, -1)]
    assert "600 host(s): 400 up, 200 down" in doc.find(cls="summary").text()


def test_in_cluster_mode_the_page_names_the_node_serving_it_and_the_leader():
    status = answer({"db1": host("master", NOW - 60)})
    status["cluster"] = {"name": "prod", "node": "n2", "leader": "n1", "lease_left": 4.2,
                         "nodes": {"n1": {}, "n2": {}}, "paused": False, "stale": False,
                         "results": {"n1": {"db1": "master"}, "n2": {"db1": "master"}}}
    history = [entry(1, "db1", "unknown", "master", NOW - 60, leader="n1",
                     commands=[command("promote %MASTER%", node="n1", argv=["promote", "db1"])])]
    doc = parse(page.render(status, history, NOW))
    header = doc.find("header").text()
    assert "served by node n2" in header and "leader n1" in header
    rows = {tr.attrs["data-node"]: tr.text() for tr in doc.find_all("tr") if "data-node" in
            tr.attrs}
    assert "leader" in rows["n1"] and "this page" in rows["n2"] and "db1" in rows["n2"]
    assert "as promote db1" in doc.find("section", id="transitions").text()
    assert "on n1" in doc.find("section", id="transitions").text()


def test_colours_are_fixed_per_status_and_text_stays_readable():
    assert timeline.colour("master") != timeline.colour("slave")
    assert timeline.colour("standby") == timeline.colour("standby") in timeline.PALETTE
    assert timeline.ink("#ffffff") == "#111" and timeline.ink("#000000") == "#fff"


@pytest.mark.parametrize("status, history", [
    (None, None), ({}, []), ({"hosts": []}, [1, "x", None]),
    ({"hosts": {"db1": None, "db2": {"status": ["x"], "since": "yesterday", "details": [1]}},
      "daemon": [], "queue": {}, "cluster": "x"},
     [{"host": ["db1"], "time": "now", "commands": {}}, {"host": "db2", "time": float("nan"),
                                                         "commands": [None, {"duration": "x"}]}]),
])
def test_answers_of_another_shape_make_a_page_not_an_exception(status, history):
    doc = parse(page.render(status, history, NOW))
    assert doc.find("section", id="hosts") and doc.find("section", id="transitions")


def test_what_is_wrong_is_said_at_the_top():
    status = answer({"db1": host("up", NOW - 60, stale=True, conflict=True)},
                    stale={"hosts": ["db1"], "checks": {"check_db": 31.0}},
                    record_error="disk I/O error")
    status["cluster"] = {"name": "prod", "node": "n1", "leader": None, "stale": True,
                         "error": "etcd unreachable", "unreachable_for": 12.0}
    doc = parse(page.render(status, [], NOW))
    banners = [b.text() for b in doc.find_all(cls="banner")]
    assert [b.split(":")[0] for b in banners] == ["STALE", "cannot record to var/", "STALE"]
    assert "12 s (etcd unreachable)" in banners[0] and "disk I/O error" in banners[1]
    assert "check_db (31 s); hosts not watched: db1" in banners[2]
    assert "leader (none)" in doc.find("header").text()
    marks = [m.text() for m in doc.find("article", data_host="db1").find_all(cls="mark")]
    assert marks == ["stale", "checks disagree"]


def test_an_unobserved_host_is_marked_so_and_named_at_the_top():
    status = answer({"db1": host("master", NOW - 60),
                     "db9": host("master", NOW - 600, stale=True, unobserved=True)})
    status["cluster"] = {"name": "prod", "node": "n1", "leader": "n1", "stale": False,
                         "nodes": {"n1": {}}, "results": {"n1": {"db1": "master"}},
                         "unobserved": ["db9"]}
    doc = parse(page.render(status, [], NOW))
    marks = [m.text() for m in doc.find("article", data_host="db9").find_all(cls="mark")]
    assert marks == ["unobserved"]
    assert not doc.find("article", data_host="db1").find_all(cls="mark")
    (banner,) = [b.text() for b in doc.find_all(cls="banner")]
    assert banner.startswith("UNOBSERVED: no live node reports db9: each keeps its last "
                             "committed status"), banner

"""The commit rule (hadaemon/commit.py): confirmations, conflicts between checks, manual
transitions and their hold, hold-down, and how long a result counts."""

from types import SimpleNamespace

from hadaemon.commit import Committer, Transition, result_lifetime


def check(cid="c", interval=1.0, timeout=1.0, confirm=1, hold_down=0):
    return SimpleNamespace(id=cid, interval=interval, timeout=timeout, confirm=confirm,
                           hold_down=hold_down)


def seen(c, spec, host, status, now):
    """Feed one result; the proposed transitions as (source, target), and the notes' kinds."""
    proposed, notes = c.observe(spec, [{"host": host, "status": status}], now)
    return [(x.source, x.target) for x in proposed], [n.kind for n in notes]


def test_a_change_is_proposed_after_confirm_results_in_a_row_and_committed_by_apply():
    c = Committer({"db1": "up"})
    spec = check(confirm=3)
    assert seen(c, spec, "db1", "down", 1.0) == ([], ["pending"])
    assert seen(c, spec, "db1", "down", 2.0) == ([], ["pending"])
    proposed, _ = c.observe(spec, [{"host": "db1", "status": "down"}], 3.0)
    assert [(t.host, t.source, t.target, t.manual) for t in proposed] == [
        ("db1", "up", "down", False)]
    assert proposed[0].snapshot == {"db1": "down"}
    assert c.status("db1") == "up"  # proposed, not committed until it is recorded
    c.apply(proposed[0], 3.0)
    assert c.status("db1") == "down" and c.last_change["db1"] == 3.0
    assert seen(c, spec, "db1", "down", 4.0) == ([], [])


def test_a_blip_back_to_the_committed_status_starts_the_count_again():
    c = Committer({"db1": "up"})
    spec = check(confirm=2)
    assert seen(c, spec, "db1", "down", 1.0) == ([], ["pending"])
    proposed, notes = c.observe(spec, [{"host": "db1", "status": "up"}], 2.0)
    assert proposed == [] and notes[0].text == "down seen 1 time(s), then up again: not committed"
    assert seen(c, spec, "db1", "down", 3.0) == ([], ["pending"])  # 1/2 again, not 2/2
    assert seen(c, spec, "db1", "down", 4.0)[0] == [("up", "down")]


def test_a_new_host_goes_from_unknown_and_the_largest_confirm_of_its_checks_counts():
    c = Committer({})
    fast, careful = check("a", confirm=1), check("b", confirm=3)
    assert c.status("h") == "unknown"
    assert seen(c, fast, "h", "up", 1.0)[0] == [("unknown", "up")]
    c = Committer({})
    seen(c, careful, "h", "up", 1.0)
    assert seen(c, fast, "h", "up", 1.1) == ([], ["pending"])  # 2 of b's 3
    assert seen(c, fast, "h", "up", 1.2)[0] == [("unknown", "up")]


def test_checks_that_disagree_hold_the_committed_status_until_they_agree():
    c = Committer({"db1": "up"})
    a, b = check("a"), check("b")
    seen(c, a, "db1", "up", 1.0)
    proposed, notes = c.observe(b, [{"host": "db1", "status": "down"}], 1.1)
    assert proposed == [] and [n.kind for n in notes] == ["conflict"]
    assert notes[0].text == "checks disagree (a=up, b=down); status up holds until they agree"
    assert c.in_conflict("db1") and c.observation("db1", 1.2) is None
    assert seen(c, b, "db1", "down", 1.5) == ([], [])  # the conflict is noted once
    # a agrees: the observation is down, a transition at once (confirm 1)
    proposed, notes = c.observe(a, [{"host": "db1", "status": "down"}], 1.6)
    assert [(t.source, t.target) for t in proposed] == [("up", "down")]
    assert notes[0].kind == "agreed" and not c.in_conflict("db1")


def test_a_result_counts_for_two_intervals_plus_the_timeout():
    a = check("a", interval=1.0, timeout=0.5)
    assert result_lifetime(a) == 2.5
    c = Committer({"db1": "up"})
    seen(c, a, "db1", "up", 10.0)
    c.observe(check("b"), [{"host": "db1", "status": "down"}], 12.0)
    assert c.in_conflict("db1") and c.observation("db1", 12.5) is None  # a's result: 12.5
    assert c.observation("db1", 12.6) == "down"  # a's is gone, b's alone votes
    assert seen(c, check("b"), "db1", "down", 12.6)[0] == [("up", "down")]


def test_a_removed_check_no_longer_votes():
    c = Committer({"db1": "up"})
    seen(c, check("a"), "db1", "up", 1.0)
    seen(c, check("b"), "db1", "down", 1.0)
    c.forget_check("a")
    assert c.observation("db1", 1.1) == "down"


def test_hold_down_delays_a_change_after_the_last_one():
    c = Committer({"db1": "up"}, {"db1": 100.0})
    spec = check(hold_down=30)
    proposed, notes = c.observe(spec, [{"host": "db1", "status": "down"}], 110.0)
    assert proposed == [] and notes[0].text == "up -> down held down for another 20.0s"
    assert seen(c, spec, "db1", "down", 130.0)[0] == [("up", "down")]


def test_a_manual_transition_needs_no_confirmation_and_stands_until_its_job_ends():
    c = Committer({"db1": "master", "db2": "slave"}, {"db2": 4.9})
    t = c.force("db2", "master")
    assert t == Transition("db2", "slave", "master", {}, manual=True)
    assert t.snapshot == {"db1": "master", "db2": "master"}
    c.apply(t, 5.0)
    c.stand_manual("db2", until=50.0)
    for now in (6.0, 7.0, 8.0):
        proposed, notes = c.observe(check(confirm=3), [{"host": "db2", "status": "slave"}], now)
    assert proposed == [] and notes[-1].text == ("master -> slave held: the manual transition "
                                                 "to master is still being carried out")
    c.end_manual("db2")
    assert seen(c, check(confirm=3), "db2", "slave", 9.0)[0] == [("master", "slave")]


def test_a_forgotten_host_is_out_of_the_commit_rule():
    spec = SimpleNamespace(id="c", interval=1.0, timeout=1.0, confirm=2, hold_down=0)
    c = Committer({"db1": "master", "db9": "master"}, {"db9": 0.0})
    c.observe(spec, [{"host": "db9", "status": "slave"}], 1.0)  # one of two confirmations
    c.stand_manual("db9", 100.0)
    c.forget("db9")
    assert c.status("db9") == "unknown" and "db9" not in c.committed
    assert c.force("db1", "slave").snapshot == {"db1": "slave"}
    # Seen again it is a new host: from unknown, confirmed afresh, held by nothing.
    assert c.observe(spec, [{"host": "db9", "status": "slave"}], 2.0)[0] == []
    t = c.observe(spec, [{"host": "db9", "status": "slave"}], 2.1)[0]
    assert [(x.source, x.target) for x in t] == [("unknown", "slave")]

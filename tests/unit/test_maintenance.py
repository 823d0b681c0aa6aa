"""The maintenance policy both backends follow (maintenance.py)."""

from hadaemon import maintenance


def test_resume_fires_each_net_change_once_and_nothing_for_a_round_trip():
    paused = maintenance.pause_record({"db1": "master", "db2": "slave", "db3": "slave"}, 10.0)
    now = {"db1": "slave", "db2": "slave", "db3": "slave", "db4": "up"}  # db2 went and came back
    assert maintenance.net_changes(paused, now, "last") == [
        ("db1", "master", "slave"), ("db4", "unknown", "up")]
    assert maintenance.net_changes(paused, now, "none") == []


def test_the_pause_record_is_a_copy_and_takes_what_the_cluster_adds():
    statuses = {"db1": "master"}
    record = maintenance.pause_record(statuses, 5.0, by="n1")
    statuses["db1"] = "slave"
    assert record == {"since": 5.0, "statuses": {"db1": "master"}, "by": "n1"}


def test_a_manual_hold_is_bounded_by_the_timeouts_of_its_sequence():
    steps = [{"timeout": 60.0}, {"timeout": 5.0}]
    assert maintenance.manual_hold_until(100.0, steps, 1.0) == 166.0
    assert maintenance.manual_hold_until(100.0, [], 1.0) == 101.0

"""The single-node commit path (recorder.py) over a real SQLite journal in a throwaway file:
a manual status stands until the journal says its job is closed, not a moment longer."""

import json
import logging
import random
import sqlite3
from types import SimpleNamespace

from hadaemon import actions, journal
from hadaemon.commit import Committer, Transition
from hadaemon.config import ActionSection, Command, Config, DaemonSettings
from hadaemon.journal import Journal
from hadaemon.ratelog import RateLog
from hadaemon.recorder import Hosts, Recorder
from hadaemon.store import open_store
from hadaemon.table import Table

CHECK = SimpleNamespace(id="c", interval=1.0, timeout=1.0, confirm=1, hold_down=0)


def recorder(tmp_path):
    config = Config(DaemonSettings(), (), (ActionSection("slave_to_master", "slave", "master", (
        Command("promote", ("promote",), "/bin/true", False, "actions.conf:2"),)),))
    store, _ = open_store(tmp_path / "state.db")
    hosts = Hosts(tmp_path / "state.db", store, Table(store), {}, RateLog(logging.getLogger("test")))
    woken = []
    r = Recorder(lambda: config, hosts, Journal(store), Committer({"db1": "slave"}),
                 lambda: woken.append(1))
    return r, woken


def test_a_manual_status_stands_until_its_job_is_closed_in_the_journal(tmp_path):
    r, woken = recorder(tmp_path)
    job = r.commit(r.committer.force("db1", "master"), 0.0)
    assert woken and r.hosts.entries["db1"]["status"] == "master"
    contrary = [{"host": "db1", "status": "slave"}]
    r.end_manual_holds()  # the job is open: the hold stands
    assert r.committer.observe(CHECK, contrary, 1.0)[0] == []
    r.journal.finish(job, "done")  # the runner closes it; it says nothing to the supervisor
    r.end_manual_holds()
    assert [t.target for t in r.committer.observe(CHECK, contrary, 2.0)[0]] == ["slave"]
    assert r.manual_jobs == {}


def test_pruning_goes_on_while_jobs_are_open_and_stops_at_rest(tmp_path):
    r, _ = recorder(tmp_path)
    job = r.commit(r.committer.force("db1", "master"), 0.0)
    r.settle()
    assert r.prune_due  # open: it ends later, and is pruned at a flush after that
    r.journal.finish(job, "done")
    r.settle()
    assert not r.prune_due and not r.manual_jobs


def test_the_table_says_whether_a_status_was_set_by_hand(tmp_path):
    """status --json shows it per host (the status page marks it), as cluster mode's table."""
    r, _ = recorder(tmp_path)
    job = r.commit(r.committer.force("db1", "master"), 0.0)
    assert r.hosts.entries["db1"]["manual"] is True
    assert r.hosts.table.get("db1")["manual"] is True
    r.journal.finish(job, "done")
    r.end_manual_holds()
    r.commit(r.committer.observe(CHECK, [{"host": "db1", "status": "slave"}], 1.0)[0][0], 1.0)
    assert r.hosts.entries["db1"]["manual"] is False
    assert r.hosts.table.get("db1")["manual"] is False


def every_transition_recorder(tmp_path, hosts):
    config = Config(DaemonSettings(), (), (ActionSection("*_to_*", "*", "*", (
        Command("run %HOST%", ("run", "%HOST%"), "/bin/true", False, "actions.conf:2"),)),))
    store, _ = open_store(tmp_path / "state.db")
    table = Hosts(tmp_path / "state.db", store, Table(store), {},
                  RateLog(logging.getLogger("test")))
    return Recorder(lambda: config, table, Journal(store), Committer(hosts), lambda: None)


def stored_environment(r, job_id):
    row = r.store.conn.execute("SELECT host, source, target, manual, env FROM jobs WHERE id = ?",
                               (job_id,)).fetchone()
    job = SimpleNamespace(id=job_id, host=row[0], source=row[1], target=row[2],
                          manual=bool(row[3]))
    return journal.environment(r.store.conn, job, json.loads(row[4]))


def test_a_job_s_environment_kept_by_reference_is_the_table_right_after_its_transition(
        tmp_path):
    """Transitions, forgotten hosts and new ones in a seeded random order: every job's
    variables, rebuilt from its base and changes, are those of a copy of the table taken at
    its commit; bases are rewritten now and then, and pruned once no open job needs them."""
    rng = random.Random(7)
    r = every_transition_recorder(tmp_path, {f"h{i}": "up" for i in range(40)})
    expected = {}
    for k in range(400):
        host = f"h{rng.randrange(60)}"
        if rng.random() < 0.05 and host in r.committer.committed:
            r.committer.forget(host)
            continue
        t = r.committer.force(host, rng.choice(["up", "down", "master", "slave", "odd-one"]))
        expected_env = actions.environment(Transition(t.host, t.source, t.target,
                                                      dict(t.snapshot), t.manual))
        job = r.commit(t, float(k))
        expected[job] = expected_env
    bases = r.store.conn.execute("SELECT count(*) FROM envbases").fetchone()[0]
    assert 2 <= bases <= 400 // 16  # now and then: at most one per 16 commits
    for job, env in expected.items():
        assert stored_environment(r, job) == env, job
    for job in list(expected)[:-3]:
        r.journal.finish(job, "done")
    r.journal.prune(1000)
    kept = [b for (b,) in r.store.conn.execute("SELECT id FROM envbases")]
    assert len(kept) <= 2 and all(stored_environment(r, j) == expected[j]
                                  for j in list(expected)[-3:])


def test_a_base_written_in_a_transaction_that_failed_is_written_again(tmp_path):
    r = every_transition_recorder(tmp_path, {"a": "up", "b": "up"})
    t = r.committer.force("a", "down")
    try:
        with r.store.transaction():
            r.enqueue(t)
            raise sqlite3.OperationalError("disk I/O error")  # as a full disk would
    except sqlite3.OperationalError:
        pass
    assert r.base is not None and not r.journal.has_base(r.base)
    t = r.committer.force("a", "down")
    job = r.commit(t, 1.0)
    assert stored_environment(r, job)["HA_DOWN"] == "a" and r.journal.has_base(r.base)

"""The single-node commit path (recorder.py) over a real SQLite journal in a throwaway file:
a manual status stands until the journal says its job is closed, not a moment longer."""

import logging
from types import SimpleNamespace

from hadaemon.commit import Committer
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

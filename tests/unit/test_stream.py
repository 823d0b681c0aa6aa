"""Answers encoded a slice at a time (hadaemon/stream.py), sent by a control connection over a
real socket pair (control.Conn), and history read a page at a time (history.pages)."""

import json
import socket

import pytest

from hadaemon import control, history, journal, stream
from hadaemon.commit import Transition
from hadaemon.store import open_store

STEP = {"section": "s", "text": "x", "where": "w", "keep_going": False, "timeout": 1,
        "argv": ["x"], "error": None}


def test_lazy_values_anywhere_in_dicts_encode_as_their_plain_equivalent():
    table = {f"h{i}": {"status": "up", "n": i, "text": "é\"\n"} for i in range(2 * stream.SLICE + 7)}
    value = {"ok": True, "daemon": {"pid": 1, "stale": {"hosts": ["a"], "checks": {}}},
             "status": {"hosts": stream.Members(table, table.get), "queue": []},
             "history": stream.Items(iter([[1, {"a": None}], [], [3]])),
             "empty": stream.Members([], table.get), "none": stream.Items(iter([]))}
    plain = {"ok": True, "daemon": {"pid": 1, "stale": {"hosts": ["a"], "checks": {}}},
             "status": {"hosts": table, "queue": []}, "history": [1, {"a": None}, 3],
             "empty": {}, "none": []}
    assert json.loads(stream.encode(value)) == plain


def test_members_are_read_as_their_slice_is_encoded():
    table = {f"h{i:04d}": i for i in range(3 * stream.SLICE)}
    pieces = stream.pieces(stream.Members(table, table.get))
    text = next(pieces) + next(pieces)  # "{" and the first slice
    del table["h0000"]  # already sent: stays
    del table[f"h{stream.SLICE + 1:04d}"]  # forgotten before its slice: left out
    table[f"h{2 * stream.SLICE:04d}"] = "changed"  # changed before its slice: the new value
    table["h9999"] = 1  # came meanwhile: the table is walked again, nothing twice
    text += next(pieces)
    table["h9998"] = 2
    pairs = json.loads(text + "".join(pieces), object_pairs_hook=list)
    got = dict(pairs)
    assert len(got) == len(pairs)  # no host twice
    assert got["h0000"] == 0 and f"h{stream.SLICE + 1:04d}" not in got
    assert got[f"h{2 * stream.SLICE:04d}"] == "changed"
    assert set(got) - {"h9999", "h9998"} == set(table) - {"h9999", "h9998"} | {"h0000"}


def test_a_large_answer_is_sent_over_several_turns_and_arrives_whole():
    table = {f"host-{i:06d}": {"status": "up", "details": {"x": "y" * 40}} for i in range(30000)}
    answer = {"ok": True, "hosts": stream.Members(table, table.get)}
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)
    conn = control.Conn(ours)
    conn.reply(answer)
    received, turns = bytearray(), 0
    while True:
        turns += 1
        done = conn.write()
        if turns == 1:  # encoded in part only: at most about OUT_HIGH waits in memory
            assert conn.pending is not None and len(conn.outbuf) < 2 * control.OUT_HIGH
        try:
            while chunk := theirs.recv(1 << 20):
                received += chunk
        except BlockingIOError:
            pass
        if done:
            break
    assert received.endswith(b"}\n") and received.count(b"\n") == 1
    assert json.loads(received) == {"ok": True, "hosts": table}
    ours.close()
    theirs.close()


def test_a_client_that_reads_its_answer_is_not_stalled_however_long_it_takes():
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    conn = control.Conn(ours)
    conn.active -= control.CLIENT_TIMEOUT + 1
    conn.reply({"ok": True, "x": "y" * 1000})
    assert conn.write()
    assert conn.active > control.time.monotonic() - control.CLIENT_TIMEOUT
    ours.close()
    theirs.close()


@pytest.fixture
def jobs(tmp_path):
    store, _ = open_store(tmp_path / "state.db")
    j = journal.Journal(store)
    for i in range(3 * history.PAGE + 5):
        host = "a" if i % 3 else "b"
        j.enqueue(Transition(host, "up", "down", {host: "down"}), [STEP], {})
    yield store, j
    store.close()


@pytest.mark.parametrize("limit,host", [(1, None), (history.PAGE, None), (1000, None),
                                        (history.PAGE + 1, "a"), (7, "b"), (1000, "b"),
                                        (5, "nobody")])
def test_history_pages_are_the_newest_entries_oldest_first(jobs, limit, host):
    store, _ = jobs
    ids = [r[0] for r in store.conn.execute("SELECT id FROM jobs WHERE ? IS NULL OR host = ?"
                                            " ORDER BY id", (host, host))]
    entries = history.read(store, limit, host)
    assert [e["id"] for e in entries] == ids[-limit:]
    assert all(e["commands"][0]["command"] == "x" for e in entries)


def test_jobs_queued_while_history_is_paged_are_left_for_the_next_request(jobs):
    store, j = jobs
    pages = history.pages(store, 1000)
    first = next(pages)
    j.enqueue(Transition("c", "up", "down", {"c": "down"}), [STEP], {})
    rest = [e for page in pages for e in page]
    assert len(first) == history.PAGE and len(first) + len(rest) == 3 * history.PAGE + 5
    assert "c" not in {e["host"] for e in first + rest}

"""The requests of the control socket. Requests answers those of both modes (status, history,
reload, ping) and hands the others to the backend; LocalRequests are single-node mode's: pause,
resume, a manual transition, forget.

var/paused holds the maintenance state, so it survives a restart and is plain to see; an
unreadable one keeps the daemon paused, to be safe. Resume commits what it fires before
var/paused goes: a resume that cannot record them stays paused and says so. A manual transition
to a host no check reports, or the removal of a host a check reports, is refused with why.
"""

import json
import logging
import os
import sqlite3
import time
from dataclasses import replace

from . import config as configmod, history, logsetup, stream, wire
from .commit import Transition
from .inifile import ConfigError
from .maintenance import net_changes, pause_record
from .names import valid_host, valid_status
from .statuses import undeclared

log = logging.getLogger("hadaemon")
HISTORY_MAX = 100000  # entries one history request may ask for (the CLI allows as many)
# The newest jobs a snapshot holds: the HTTP child counts transitions and commands from them,
# so more than this many jobs ending between two snapshots (a second) are not all counted.
SNAPSHOT_HISTORY = 50


def refuse_transition(host, status, known):
    """Why a manual transition to status is refused out of hand, or None (both modes)."""
    if not valid_host(host) or not valid_status(status):
        return f"invalid host or status: {host!r} {status!r}"
    if status not in known:
        return undeclared(status, known)
    return None


def refuse_forget(host, known, reported, open_job):
    """Why `forget` may not remove host, or None (both modes). known: the table has it;
    reported: who still reports it and what to do about it, worded by the mode (else falsy);
    open_job: the id of its sequence still open, or None."""
    if not valid_host(host):
        return f"invalid host: {host!r}"
    if not known:
        return f"{host}: no such host in the table"
    if reported:
        return f"{host} is still reported by {reported}"
    if open_job is not None:
        return f"{host}: its sequence (job #{open_job}) has not ended yet: forget it once it has"
    return None


def unreported(host, status, why):
    """The refusal of a manual transition to a host no check reports (cluster mode's too)."""
    return {"ok": False, "error": f"{host}: {why} this host (`hadaemon status` lists them); "
            f"`transition --new {host} {status}` commits it anyway"}


def read_paused(path, statuses):
    """The pause record in var/paused, or None when not paused."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log.error("%s unreadable (%s): staying paused to be safe", path, e)
        return pause_record(statuses, time.time())


class Requests:
    def __init__(self, sup):
        self.sup = sup
        self.snapshots = 0  # answered: what the HTTP endpoint costs the loop, counted

    def answer(self, request):
        cmd = request.get("cmd")
        if "error" in request:
            return {"ok": False, "error": request["error"]}
        if cmd == "status":
            return self.status()
        if cmd == "history":
            limit, host = request.get("limit", 100), request.get("host")
            if not (isinstance(limit, int) and 0 < limit <= HISTORY_MAX) or not (
                    host is None or valid_host(host)):
                return {"ok": False, "error": "bad history request: limit must be 1 to "
                        f"{HISTORY_MAX}, host a host name"}
            return {"ok": True,
                    "history": stream.Items(history.pages(self.sup.store, limit, host))}
        if cmd == "snapshot":
            return self.snapshot()
        if cmd == "reload":
            return self.reload()
        if cmd == "ping":
            return {"ok": True, "pid": os.getpid()}
        return self.sup.backend.answer(request)

    def reload(self):
        """Load the config files again (SIGHUP or `hadaemon reload`); a config that cannot
        apply changes nothing."""
        sup = self.sup
        try:
            new = configmod.load(sup.home)
        except ConfigError as e:
            log.error("reload refused, keeping the running config: %s", "; ".join(e.problems))
            return {"ok": False, "error": "config invalid, running config kept",
                    "problems": e.problems}
        new, later = _keep_start_only(sup.config, new)
        d = new.daemon
        try:  # the one step that can fail comes first, so a failure changes nothing
            logsetup.configure(sup.home, d.log, d.log_level, sup.foreground)
        except OSError as e:
            log.error("reload refused, keeping the running config: log %s: %s", d.log, e)
            return {"ok": False, "error": f"cannot open log {d.log}: {e}; running config kept"}
        for what in later:
            log.warning("reload: %s changed: it takes effect at the next restart", what)
        old_ids = {c.id for c in sup.config.checks}
        sup.config = new
        removed = old_ids - {c.id for c in new.checks}
        for cid in removed:
            sup.committer.forget_check(cid)
        sup.backend.checks_removed(removed)
        sup.scheduler.replace(new.checks, time.monotonic())
        sup.checks.forget({c.id for c in new.checks})
        sup.checks.masters.retain([c.remote for c in new.checks if c.remote])
        sup.checks.pool.resize(d.workers, d.max_jobs)
        sup.checks.fill()
        for child in sup.children:  # the agent reads the config files again on it
            child.send(wire.Settings(sup.child_settings()))
        log.info("reloaded: %d check(s)%s, %d action section(s)", len(new.checks),
                 configmod.elsewhere(len(new.elsewhere)), len(new.sections))
        sup.warn()
        return {"ok": True, "checks": len(new.checks), "elsewhere": len(new.elsewhere),
                "sections": len(new.sections),
                "restart_needed": later}

    def status(self):
        sup, f = self.sup, self.sup.freshness
        f.update(sup.config.checks, sup.hosts.entries, time.monotonic())
        entries, stale, marks = sup.hosts.entries, set(f.stale), {}

        def host(name):  # as it is when its slice is encoded (stream.py)
            e = entries.get(name)
            if e is None:
                return None
            return {**e, "conflict": sup.committer.in_conflict(name), "stale": name in stale,
                    **marks.get(name, {})}
        answer = {"ok": True, "hosts": stream.Members(entries, host),
                  "daemon": {"pid": os.getpid(), "home": str(sup.home.root),
                             "started": sup.started, "checks": len(sup.config.checks),
                             "elsewhere": len(sup.config.elsewhere),
                             "workers": len(sup.checks.pool.workers),
                             "runner": sup.backend.runner.pid,
                             "http": sup.http.pid if sup.http else None,
                             "record_error": sup.hosts.record_error,
                             "paused": sup.backend.paused(),
                             "stale": {"hosts": f.stale, "checks": {
                                 cid: round(age, 1) for cid, age in sorted(f.checks.items())}}}}
        marks.update(sup.backend.status(answer))
        return answer


    def snapshot(self):
        """What the HTTP endpoint serves, in one answer (it asks at most once a second):
        the status, the per-check counters, the declared statuses, the latest history."""
        sup = self.sup
        config = sup.config
        self.snapshots += 1
        return {"ok": True, "time": time.time(), "served": self.snapshots,
                "status": self.status(),
                "checks": sup.stats.snapshot({c.id for c in config.checks}),
                "turns": sup.stats.turns.snapshot(),
                "statuses": sorted(config.daemon.known_statuses),
                "history": sup.backend.recent(SNAPSHOT_HISTORY)}


def _keep_start_only(running, new):
    """The new config with the settings only a start applies put back to the running ones
    (the control socket's group; the cluster, whose agent and runner hold etcd sessions; the
    HTTP endpoint), and what of those changed."""
    later = []
    if new.daemon.socket_group != running.daemon.socket_group:
        later.append("socket_group")
        new = replace(new, daemon=replace(new.daemon, socket_group=running.daemon.socket_group))
    if new.cluster != running.cluster:
        later.append("[cluster]")
        new = new.on_node(running.cluster)
    if new.http != running.http:  # the HTTP child is started with the daemon, or not at all
        later.append("[http]")
        new = replace(new, http=running.http)
    return new, later


class LocalRequests:
    def __init__(self, home, config, recorder, reporting):
        self.home, self.config, self.recorder = home, config, recorder  # config: () -> config
        self.reporting = reporting  # host -> the checks whose latest result names it
        self.committer, self.hosts = recorder.committer, recorder.hosts

    def answer(self, request):
        cmd = request.get("cmd")
        if cmd in ("pause", "resume"):
            return self.pause() if cmd == "pause" else self.resume()
        if cmd == "transition":
            return self.manual(request.get("host"), request.get("status"),
                               request.get("new") is True)
        if cmd == "forget":
            return self.forget(request.get("host"))
        return {"ok": False, "error": f"unknown command {cmd!r}"}

    def pause(self):
        r = self.recorder
        if r.paused is not None:
            return {"ok": True, "note": "already paused"}
        paused = pause_record(self.committer.committed, time.time())
        tmp = self.home.paused.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(paused))
            os.replace(tmp, self.home.paused)
        except OSError as e:
            return {"ok": False, "error": f"cannot write {self.home.paused}: {e.strerror}"}
        r.paused = paused
        log.warning("paused: checks go on, no action fires until `hadaemon resume`")
        return {"ok": True}

    def resume(self):
        """Fire what changed during the pause."""
        r = self.recorder
        if r.paused is None:
            return {"ok": False, "error": "not paused"}
        on_resume = self.config().daemon.on_resume
        fire = [Transition(host, before, now, dict(self.committer.committed))
                for host, before, now in net_changes(r.paused, self.committer.committed,
                                                     on_resume)]
        # A net change with no section has nothing to fire: its transitions are in history
        # already (skipped while paused), and one entry is enough.
        fire = [(t, steps) for t, steps in ((t, r.plan(t)) for t in fire) if steps]
        paused, r.paused = r.paused, None  # the jobs are queued, not skipped
        try:
            with r.store.transaction(durable=True):
                jobs = [r.enqueue(t, note="fired on resume", write_table=False, plan=steps)
                        for t, steps in fire]
        except sqlite3.Error as e:
            r.paused = paused
            self.hosts.cannot_record("the sequences to fire on resume", e, "still paused")
            return {"ok": False, "error": f"cannot record the sequences to fire in "
                    f"{self.home.state_db} ({e}): still paused, nothing fired; resume again "
                    f"once it can be written"}
        if fire:
            self.hosts.recorded()
        for (t, _), (job, steps, _) in zip(fire, jobs):
            r.queued(t, job, steps)
        try:
            self.home.paused.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            # The jobs wait (the runner starts none while var/paused exists); a second resume
            # must not queue them again: the pause now starts from the statuses just fired.
            r.paused = dict(paused, statuses=dict(self.committer.committed))
            return {"ok": False, "error": f"cannot remove {self.home.paused}: {e.strerror}; "
                    f"still paused, the sequences fired wait for the next resume"}
        fired = [f"{t.host}: {t.source} -> {t.target}" for t, _ in fire]
        log.warning("resumed; fired on resume (on_resume = %s): %s", on_resume,
                    ", ".join(fired) or "nothing")
        r.wake()  # jobs queued before the pause waited for this
        return {"ok": True, "fired": fired}

    def manual(self, host, status, new=False):
        """A status by hand. For a host no check reports only if asked for (new): a typo would
        otherwise stay in the table and in every %STATUS% for good."""
        refused = refuse_transition(host, status, self.config().daemon.known_statuses)
        if refused:
            return {"ok": False, "error": refused}
        if not new and not self.reporting(host):
            return unreported(host, status, "no check reports")
        if self.committer.status(host) == status:
            return {"ok": False, "error": f"{host} is {status} already"}
        job = self.recorder.commit(self.committer.force(host, status), time.monotonic())
        if job is None:
            return {"ok": False, "error": f"cannot record: {self.hosts.record_error}"}
        return {"ok": True, "job": job}

    def forget(self, host):
        """Remove a host nobody reports (a typo, a host retired) from the table and from every
        %STATUS% to come. A host a check reports would only come back at its next result."""
        known = valid_host(host) and (host in self.hosts.entries
                                      or host in self.committer.committed)
        reporting = self.reporting(host) if known else []
        open_job = next((j["id"] for j in self.recorder.journal.open_jobs()
                         if j["host"] == host), None) if known else None
        refused = refuse_forget(host, known, reporting and (
            f"check {', '.join(reporting)} (its latest result names it): take it out of "
            f"that check first"), open_job)
        if refused:
            return {"ok": False, "error": refused}
        try:
            with self.recorder.store.transaction(durable=True):
                self.hosts.table.forget(host)
        except sqlite3.Error as e:
            self.hosts.cannot_record(f"forgetting {host}", e, "host kept")
            return {"ok": False, "error": f"cannot record: {e}"}
        self.hosts.recorded()
        was = self.committer.status(host)
        self.committer.forget(host)
        self.hosts.forget(host)
        log.warning("forgot host %s (was %s; no check reports it): it is out of the table "
                    "and of every %%STATUS%% from now on", host, was)
        return {"ok": True, "was": was}

"""Operator commands (pause, resume, transition, forget; handover and cluster-init in cluster
mode) and the cluster parts of `status` and `history`. Registered on the main click group by
cli.py."""

import time

import click

from .. import control
from ..config import declared_statuses
from ..names import valid_host, valid_status
from ..statuses import undeclared
from .keys import Keys

NOT_RUNNING = 3
OUTCOME_WAIT = 30  # seconds `forget` waits for the leader's answer, unless --wait says
A_HOST = "a host name (letters, digits, '.', '-', '_', ':')"


def checked(valid, what):
    """A click callback refusing what the daemon would refuse, before asking it."""
    def check(ctx, param, value):
        if value is not None and not valid(value.lower() if param.name == "status" else value):
            raise click.BadParameter(f"{value!r} is not {what}")
        return value
    return check


def declared(home_of):
    """A click callback for STATUS: a status name, and one the home's checks.conf declares (if
    it can be read: the daemon refuses an undeclared status too, and has the last word)."""
    name = checked(valid_status, "a status (a letter, then letters, digits, '-')")

    def check(ctx, param, value):
        value = name(ctx, param, value).lower()
        known = declared_statuses(home_of(ctx))
        if known is not None and value not in known:
            raise click.BadParameter(undeclared(value, known))
        return value
    return check


def ask(home, message):
    """The daemon's answer to one control request; exit 3 if it does not run."""
    try:
        return control.request(home.control_socket, message, timeout=30)
    except control.ControlError as e:
        click.echo(f"hadaemon: {e}", err=True)
        raise SystemExit(NOT_RUNNING)


def outcome(home, request_id, what, wait=OUTCOME_WAIT):
    """Cluster mode: the leader's answer to a request it answers (forget), asked of this node's
    daemon until it has it (the leader serves requests within a poll), for `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        answer = ask(home, {"cmd": "outcome", "id": request_id})
        if not answer.get("pending"):
            return answer
        if time.monotonic() > deadline:
            click.echo(f"hadaemon: {what}: no answer from the leader within {wait:g}s "
                       "(`hadaemon status` says whether there is one, and whether this node "
                       "is joined); the request is served once a leader gets it", err=True)
            raise SystemExit(1)
        time.sleep(0.1)


def register(main, home_of):
    def request(ctx, message, done, wait=OUTCOME_WAIT):
        home = home_of(ctx)
        answer = ask(home, message)
        if message["cmd"] == "handover" and answer.get("error", "").startswith(
                "unknown command"):
            click.echo(f"hadaemon: {message['cmd']} needs cluster mode (a [cluster] section in "
                       f"{home.checks_conf})", err=True)
            raise SystemExit(1)
        if answer.get("ok") and answer.get("pending"):
            answer = outcome(home, answer["pending"], message["cmd"], wait)
        if not answer.get("ok"):
            click.echo(f"hadaemon: {answer.get('error')}", err=True)
            raise SystemExit(1)
        leader = answer.get("leader")
        click.echo(done + (f" (leader: {leader})" if "leader" in answer else ""))

    @main.command()
    @click.pass_context
    def pause(ctx):
        """Maintenance mode: checks and the table go on, no action fires."""
        request(ctx, {"cmd": "pause"}, "pause requested")

    @main.command()
    @click.pass_context
    def resume(ctx):
        """End maintenance mode (see on_resume for what fires then)."""
        request(ctx, {"cmd": "resume"}, "resume requested")

    @main.command()
    @click.argument("host", callback=checked(valid_host, A_HOST))
    @click.argument("status", callback=declared(home_of))
    @click.option("--new", is_flag=True,
                  help="HOST may be one no check reports (else that is refused: a typo).")
    @click.pass_context
    def transition(ctx, host, status, new):
        """Commit STATUS for HOST by hand and fire its actions (a manual switchover)."""
        request(ctx, {"cmd": "transition", "host": host, "status": status.lower(), "new": new},
                f"transition {host} -> {status.lower()} requested")

    @main.command()
    @click.argument("host", callback=checked(valid_host, A_HOST))
    @click.option("--wait", type=click.FloatRange(min=0.1), default=OUTCOME_WAIT,
                  show_default=True, metavar="SECONDS",
                  help="In cluster mode: how long to wait for the leader's answer.")
    @click.pass_context
    def forget(ctx, host, wait):
        """Remove HOST, which no check reports any more, from the table (and so from every
        %STATUS%). Refused while a check's latest result names it (in cluster mode: a live
        node's opinion), or while a sequence of it is open."""
        request(ctx, {"cmd": "forget", "host": host}, f"{host} forgotten", wait)

    @main.command()
    @click.argument("node", required=False)
    @click.pass_context
    def handover(ctx, node):
        """The leader steps down so that NODE (or any other node) leads."""
        request(ctx, {"cmd": "handover", "to": node or ""},
                f"handover to {node or 'another node'} requested")

    @main.command("cluster-init")
    @click.option("--yes", is_flag=True, help="Write it (without: only say what it would write).")
    @click.pass_context
    def cluster_init(ctx, yes):
        """Re-initialise a cluster whose etcd lost its data or was restored from an older
        snapshot (the nodes refuse it until then). Says what it writes; writes with --yes."""
        reinitialise(home_of(ctx), yes)

    return pause, resume, transition, forget, handover, cluster_init


def reinitialise(home, yes):
    from .. import config as configmod
    from . import reinit
    from .etcd import Etcd, EtcdUnavailable
    from ..inifile import ConfigError
    try:
        config = configmod.load(home)
    except ConfigError as e:
        for p in e.problems:
            click.echo(f"error: {p}", err=True)
        raise SystemExit(1)
    c = config.cluster
    if c is None:
        click.echo(f"hadaemon: cluster-init needs cluster mode (a [cluster] section in "
                   f"{home.checks_conf})", err=True)
        raise SystemExit(1)
    keys = Keys(c.prefix)
    try:
        etcd = Etcd(c.endpoints(), max(2.0, c.request_timeout))
        seen = reinit.survey(etcd, keys)
        sources = dict(seen["refusals"])
        if c.node not in sources:
            local = reinit.local_source(home, c.name, c.node, seen)
            if local:
                sources[c.node] = local
        plan = reinit.plan(seen, sources)
        for line in reinit.describe(c.etcd, seen, sources, plan):
            click.echo(line)
        if not yes:
            click.echo("nothing written: run `hadaemon cluster-init --yes` to do it", err=True)
            raise SystemExit(1)
        reinit.write(etcd, keys, seen, plan)
    except EtcdUnavailable as e:
        click.echo(f"hadaemon: cluster-init: etcd is unreachable: {e}", err=True)
        raise SystemExit(1)
    except reinit.NotDone as e:
        click.echo(f"hadaemon: cluster-init: {e}", err=True)
        raise SystemExit(1)
    click.echo(f"done: marker {plan['marker']['id']} generation {plan['marker']['generation']}"
               f" written; the nodes act again within a poll")


def history(config, limit, host):
    """History read straight from etcd (the CLI may block; the daemon may not)."""
    from .etcd import Etcd
    from .store import read_history
    c = config.cluster
    etcd = Etcd(c.endpoints(), max(2.0, c.request_timeout))
    return read_history(etcd, Keys(c.prefix), limit, host)


def status_text(answer):
    return status_lines(answer["cluster"]) if answer.get("cluster") else []


def history_command(home, load_quietly, limit, host, as_json):
    """Print history from etcd and return True in cluster mode; False in single-node mode."""
    import json

    from .. import history as historymod
    from .etcd import EtcdUnavailable
    config = load_quietly(home)
    if config is None or config.cluster is None:
        return False
    try:
        entries = history(config, limit, host)
    except EtcdUnavailable as e:
        click.echo(f"hadaemon: history lives in etcd, which is unreachable: {e}", err=True)
        raise SystemExit(1)
    if as_json:
        click.echo(json.dumps(entries, indent=2))
    else:
        click.echo(historymod.format_text(entries) if entries else "no transitions yet")
    return True


def unobserved(answer):
    """The hosts no live node reports, in a status answer (cluster mode)."""
    return (answer.get("cluster") or {}).get("unobserved") or []


def status_lines(c):
    """The cluster part of `hadaemon status`, as text."""
    lines = []
    if c.get("unobserved"):
        lines.append(f"UNOBSERVED: no live node reports {', '.join(c['unobserved'])}: each "
                     f"keeps its last committed status, unwatched (the nodes whose checks "
                     f"report it are gone)")
    if c.get("refused"):
        lines.append(f"REFUSING: etcd does not hold this cluster's data: {c['refused']}; "
                     "nothing is committed and no job runs until an operator runs "
                     "`hadaemon cluster-init`; the table below is this node's last mirror")
    elif c.get("not_joined"):
        lines.append(f"NOT JOINED: {c['not_joined']}; the table below is this node's last "
                     "mirror")
    elif c.get("stale"):
        lines.append(f"STALE: etcd unreachable for {c.get('unreachable_for', 0):.0f}s "
                     f"({c.get('error')}); the table below is this node's last mirror")
    left = c.get("lease_left")
    lines.append(f"cluster {c.get('name')}: node {c.get('node')}, leader "
                 f"{c.get('leader') or '(none)'}" + (f", lease {left:.1f}s left"
                                                      if left is not None else "")
                 + (", PAUSED (no action fires)" if c.get("paused") else ""))
    for node in sorted(c.get("nodes", {})):
        seen = c.get("results", {}).get(node, {})
        votes = " ".join(f"{h}={s}" for h, s in sorted(seen.items())) or "(no results yet)"
        lines.append(f"  node {node}{' (leader)' if node == c.get('leader') else ''}: {votes}")
    return lines

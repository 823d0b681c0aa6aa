"""The hadaemon command. Only argument handling and printing live here."""

import json
import os
import sqlite3
import sys
import time
from pathlib import Path

import click

from . import __version__
from . import config as configmod
from . import control, history, newhome
from .cluster import cli as cli_cluster
from .home import Home
from .config import DAY
from .inifile import ConfigError
from .names import valid_host
from .store import Store
from .table import Table

NOT_RUNNING = 3  # LSB: program is not running
STALE = 4  # LSB: program or service status is unknown (a host's status is no longer watched)


def _home(ctx):
    """The home of every command that works on one: it must hold etc/checks.conf. Checked when
    the command runs, after its arguments: `COMMAND --help` works anywhere."""
    home = ctx.obj
    if not home.root.is_dir():
        _fail(f"home {home.root} is not a directory (a home holds etc/, checks/, actions/; "
              "set it with --home or $HADAEMON_HOME)", 2)
    if not home.checks_conf.exists():
        given = ("given by --home" if ctx.find_root().params.get("home")
                 else "from $HADAEMON_HOME" if os.environ.get("HADAEMON_HOME") else None)
        _fail(f"not a hadaemon home (no etc/checks.conf in {home.root}" + (
            f", {given})" if given else "): use --home or HADAEMON_HOME"), 2)
    return home


def _load(home):
    try:
        return configmod.load(home)
    except ConfigError as e:
        for p in e.problems:
            click.echo(f"error: {p}", err=True)
        raise SystemExit(1)


def _number(ctx, param, value):
    """A click callback: NaN passes every range check."""
    if value != value:
        raise click.BadParameter("not a number")
    return value


def _fail(message, code=1):
    click.echo(f"hadaemon: {message}", err=True)
    raise SystemExit(code)


class Commands(click.Group):
    """click's usage errors take four lines; ours are one, naming the command, like the rest."""

    def parse_args(self, ctx, args):
        # Bare `hadaemon`: the whole help, as a usage error. click would raise it as one, and
        # main() below would squeeze it into one line cut short.
        if not args:
            click.echo(ctx.get_help(), err=True)
            sys.exit(2)
        return super().parse_args(ctx, args)

    def main(self, *args, **kwargs):
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.UsageError as e:
            where = e.ctx.command_path if e.ctx else "hadaemon"
            click.echo(f"{where}: {e.format_message().rstrip('.')} (see {where} --help)",
                       err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            click.echo(f"hadaemon: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("hadaemon: aborted", err=True)
            sys.exit(1)


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="hadaemon",
                      message="%(prog)s %(version)s")
@click.option("--home", type=click.Path(file_okay=False), default=None,
              help="Home directory (default: $HADAEMON_HOME, else the current directory).")
@click.pass_context
def main(ctx, home):
    """hadaemon: watch hosts with checks, run actions when their status changes."""
    if ctx.invoked_subcommand == "init":  # it makes a home: there is none to check yet
        return
    ctx.obj = Home.resolve(home)


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def init(directory):
    """Write a new home in DIRECTORY: the shipped example (etc/, checks/, actions/), commented,
    to edit into your own. Nothing that exists is overwritten."""
    try:
        written = newhome.create(directory)
    except newhome.InitError as e:
        _fail(f"init: {e}")
    where = directory.resolve()
    click.echo(f"new home in {where}: {len(written)} files in etc/, checks/, actions/ "
               "(the shipped example; edit etc/checks.conf and etc/actions.conf)")
    click.echo(f"next: hadaemon --home {where} check-config, then hadaemon --home {where} run")


@main.command()
@click.pass_context
def run(ctx):
    """Run in the foreground, logging to stderr (Ctrl-C stops)."""
    from . import daemonize  # the daemon side: only the commands that start or stop it
    home = _home(ctx)
    config = _load(home)
    try:
        sys.exit(daemonize.run_foreground(home, config))
    except daemonize.StartError as e:
        _fail(str(e))


@main.command()
@click.pass_context
def start(ctx):
    """Start as a daemon (pidfile and control socket in var/)."""
    from . import daemonize  # the daemon side: only the commands that start or stop it
    home = _home(ctx)
    config = _load(home)
    try:
        pid = daemonize.start(home, config)
    except daemonize.StartError as e:
        _fail(str(e))
    click.echo(f"hadaemon started (pid {pid}) in {home.root}")


@main.command()
@click.option("--wait", type=click.FloatRange(0, DAY), default=60.0, show_default=True,
              callback=_number,
              help="Seconds to wait for the daemon to exit.")
@click.pass_context
def stop(ctx, wait):
    """Stop the running daemon (SIGTERM) and wait for it to exit."""
    from . import daemonize  # the daemon side: only the commands that start or stop it
    home = _home(ctx)
    try:
        pid = daemonize.stop(home, wait)
    except daemonize.StartError as e:
        _fail(str(e))
    click.echo(f"hadaemon stopped (pid {pid})" if pid else "hadaemon was not running")


@main.command()
@click.pass_context
def reload(ctx):
    """Re-read the config; a broken config is refused and the running one kept."""
    home = _home(ctx)
    try:
        answer = control.request(home.control_socket, {"cmd": "reload"}, timeout=30)
    except control.ControlError as e:
        _fail(str(e), NOT_RUNNING)
    if not answer.get("ok"):
        click.echo(f"hadaemon: reload refused: {answer.get('error')}", err=True)
        for p in answer.get("problems", []):
            click.echo(f"error: {p}", err=True)
        raise SystemExit(1)
    click.echo(f"reloaded: {answer['checks']} check(s)"
               f"{configmod.elsewhere(answer.get('elsewhere', 0))}, "
               f"{answer['sections']} action section(s)")
    for what in answer.get("restart_needed", []):
        click.echo(f"hadaemon: {what} changed: it takes effect at the next restart; the running "
                   "one is kept", err=True)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def status(ctx, as_json):
    """Show every host's status (read from var/ when the daemon is not running)."""
    home = _home(ctx)
    try:
        answer = control.request(home.control_socket, {"cmd": "status"})
        code = STALE if _stale(answer)["checks"] or cli_cluster.unobserved(answer) else 0
    except control.ControlError as e:
        answer = _offline_status(home, str(e))
        code = NOT_RUNNING
    if as_json:
        click.echo(json.dumps(answer, indent=2, sort_keys=True))
    else:
        click.echo(_status_text(answer))
    sys.exit(code)


def _offline(home, read, empty):
    """read(store) on the state file, read-only, when no daemon answers; empty if there is none.

    An unreadable file is one line of error: the daemon moves it aside at its next start.
    """
    if not home.state_db.exists():
        return empty
    if not home.state_db.is_file():  # a FIFO would block the read for ever
        _fail(f"cannot read {home.state_db}: not a file (the daemon moves it aside at its "
              "next start)")
    try:
        store = Store(home.state_db, readonly=True)
        try:
            return empty if store.blank() else read(store)
        finally:
            store.close()
    except (sqlite3.Error, OSError) as e:
        _fail(f"cannot read {home.state_db}: {e}")


def _offline_status(home, why):
    hosts = _offline(home, lambda store: dict(Table(store).items()[0]), {})
    return {"ok": True, "running": False, "note": f"{why}; last recorded state shown",
            "hosts": hosts}


def _status_text(answer):
    lines = []
    if not answer.get("running", True):
        lines.append(f"({answer['note']})")
    d = answer.get("daemon")
    if d:
        lines.append(f"hadaemon pid {d['pid']}, {d['checks']} check(s)"
                     f"{configmod.elsewhere(d.get('elsewhere', 0))}, {d['workers']} worker(s),"
                     f" {len(answer.get('queue', []))} sequence(s) queued")
        if d.get("paused"):
            lines.append("PAUSED: checks go on, no action fires (hadaemon resume)")
        if d.get("record_error"):
            lines.append(f"WARNING: cannot record to var/: {d['record_error']}")
        stale = _stale(answer)
        if stale["checks"]:
            lines.append("STALE: no result for more than 2 x interval + timeout from " + ", ".join(
                f"{cid} ({age:.0f}s)" for cid, age in stale["checks"].items())
                + (f"; hosts not watched: {', '.join(stale['hosts'])}" if stale["hosts"] else ""))
    lines += cli_cluster.status_text(answer)
    rows = [("HOST", "STATUS", "SINCE", "OBSERVED", "LAST SEEN", "CHECK")]
    now = time.time()
    for host, e in sorted(answer["hosts"].items()):
        observed = e.get("observed", "-") + (" (checks disagree)" if e.get("conflict") else "")
        seen = f"{now - e['last_seen']:.0f}s ago" if e.get("last_seen") else "-"
        status = e["status"] + (" (unobserved)" if e.get("unobserved")
                                else " (stale)" if e.get("stale") else "")
        rows.append((host, status, _when(e.get("since")), observed, seen, e.get("check", "-")))
    if len(rows) == 1:
        lines.append("no hosts seen yet")
    else:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def _stale(answer):
    return (answer.get("daemon") or {}).get("stale") or {"hosts": [], "checks": {}}


def _when(t):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


@main.command("history")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--limit", type=click.IntRange(1, 100000), default=50, show_default=True,
              help="How many of the latest transitions.")
@click.option("--host", default=None, help="Only this host.", callback=cli_cluster.checked(
    valid_host, cli_cluster.A_HOST))
@click.pass_context
def history_cmd(ctx, as_json, limit, host):
    """Show transitions and the outcome of each command, oldest first."""
    home = _home(ctx)
    if cli_cluster.history_command(home, _load_quietly, limit, host, as_json):
        return
    try:
        answer = control.request(home.control_socket, {"cmd": "history", "limit": limit,
                                                       "host": host})
        if not answer.get("ok"):
            _fail(answer.get("error"))
        entries = answer["history"]
    except control.ControlError:
        if not home.state_db.exists():
            _fail(f"no history: {home.state_db} does not exist", NOT_RUNNING)
        entries = _offline(home, lambda store: history.read(store, limit, host), [])
    if as_json:
        click.echo(json.dumps(entries, indent=2))
    elif entries:
        click.echo(history.format_text(entries))
    else:
        click.echo("no transitions yet")


@main.command("check-config")
@click.pass_context
def check_config(ctx):
    """Validate etc/checks.conf, etc/actions.conf and every script they name."""
    home = _home(ctx)
    config = _load(home)
    for warning in config.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"{home.etc}: OK: {len(config.checks)} check(s)"
               f"{configmod.elsewhere(len(config.elsewhere))}, "
               f"{len(config.sections)} action section(s)"
               + (f", {len(config.warnings)} warning(s)" if config.warnings else ""))


@main.command()
@click.argument("checks", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def probe(ctx, checks, as_json):
    """Run CHECKS (default: every configured check) once, as a worker would, and show what the
    daemon would take from each. Nothing is recorded; no action fires."""
    from . import protocol, worker
    home = _home(ctx)
    config = _load(home)
    by_id = {c.id: c for c in config.checks}
    unknown = [name for name in checks if name not in by_id]
    elsewhere = {c.id: c for c in config.elsewhere}
    if unknown and unknown[0] in elsewhere:  # it would run here, and say nothing of there
        c = elsewhere[unknown[0]]
        click.echo(f"hadaemon probe: check {c.id!r} runs on node {c.node} only ({c.where}, in "
                   f"[node:{c.node}]): probe it there", err=True)
        raise SystemExit(2)
    if unknown:
        click.echo(f"hadaemon probe: no check {unknown[0]!r} in {home.checks_conf} (checks: "
                   f"{', '.join(by_id) or 'none'})", err=True)
        raise SystemExit(2)
    os.chdir(home.root)  # where the workers run checks
    answers = []
    for n, check in enumerate([by_id[name] for name in checks] or config.checks, start=1):
        a = worker.run_job(protocol.check_job(check, config.daemon, n), str(home.root))
        answers.append({k: a[k] for k in ("check", "results", "error", "duration")})
    if as_json:
        click.echo(json.dumps(answers, indent=2))
    else:
        for a in answers:
            click.echo(f"{a['check']} ({a['duration'] or 0:.2f}s): "
                       + ("; ".join(f"{r['host']} {r['status']}" for r in a["results"])
                          or "no result"))
            if a["error"]:
                click.echo(f"  rejected: {a['error']}")
            for r in a["results"]:
                if r["details"]:
                    click.echo(f"  {r['host']}: {json.dumps(r['details'], sort_keys=True)}")
    raise SystemExit(1 if any(a["error"] for a in answers) else 0)


def _load_quietly(home):
    try:
        return configmod.load(home)
    except ConfigError:
        return None


cli_cluster.register(main, _home)

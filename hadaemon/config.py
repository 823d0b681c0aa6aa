"""Read etc/checks.conf and etc/actions.conf into frozen dataclasses.

Every problem is collected with its file and line, so check-config and a refused reload can show
all of them at once instead of the first one only.
"""

import grp
import os
import pwd
import re
import shlex
import shutil
from dataclasses import dataclass, fields, replace
from functools import cached_property

from . import actions, listen, logsetup, security, sshscope, statuses as statusesmod
from .cluster import rules as clusterrules, settings as clustersettings
from .home import SAFE_PATH
from .inifile import ConfigError, Section, read_sections, split_setting
from .names import valid_host, valid_status

SCOPES = ("local",)
SSH_SCOPE = "ssh:"  # [ssh:[USER@]HOST[:PORT]]: checks run on HOST (sshscope.py)
NODE_SCOPE = "node:"  # [node:NAME]: checks run on cluster node NAME alone
SSH_SETTING_RE = re.compile(r"([A-Za-z_]+)\s*=")
DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m)?\Z")
VARIABLE_RE = re.compile(r"%([A-Za-z][A-Za-z0-9_-]*)%")


@dataclass(frozen=True)
class DaemonSettings:
    interval: float = 5.0  # default seconds between two runs of a check
    timeout: float = 10.0  # default seconds a check may run
    workers: int = 2
    log: str = "auto"  # auto | stderr | syslog | a file path (relative to the home)
    log_level: str = "info"
    confirm: int = 1  # consecutive identical observations before a status is committed
    hold_down: float = 0.0  # minimum seconds between two transitions of one host
    action_timeout: float = 60.0
    on_failure: str = "stop"  # stop | continue: what a failed command does to its sequence
    max_jobs: int = 1000  # a worker is replaced after this many checks
    output_limit: int = 65536  # bytes of check output read; more is an error
    grace: float = 10.0  # seconds a running action command gets after SIGTERM
    corrupt_table: str = "moveaside"  # moveaside | refuse
    strict: str = "auto"  # auto (on as root) | yes | no: refuse group/world-writable scripts
    user: str = ""  # run checks and actions as this user
    socket_group: str = ""  # group allowed on the control socket (default: owner only)
    on_resume: str = "last"  # last | none: what `resume` fires for hosts that changed meanwhile
    keep_jobs: int = 1000  # finished jobs kept in the journal (history); older ones are pruned
    statuses: str = ""  # statuses besides statusesmod.DEFAULT, e.g. "standby, maintenance"

    @cached_property
    def known_statuses(self):
        """Every status a check, a section, a %VAR% or `transition` may name."""
        return statusesmod.declared(self.statuses)


@dataclass(frozen=True)
class HttpSettings:
    listen: str = ""  # HOST:PORT, [IPv6]:PORT or a UNIX socket path (listen.py)


@dataclass(frozen=True)
class CheckSpec:
    id: str
    argv: tuple  # resolved program path first
    host: str  # the host a Nagios exit code or a failure is reported for ('' if none)
    interval: float
    timeout: float
    confirm: int
    hold_down: float
    where: str  # file:line of the scope line, for messages
    remote: object = None  # sshscope.Target: argv is the ssh that runs it there
    send: str = ""  # a script of checks/ sent over ssh's stdin to its #! interpreter
    # A remote check's `timeout` is enforced there; `timeout` above is then the local ssh's:
    # longer by the target's margin (connect, hear of it), and what every local limit uses.
    remote_timeout: float = 0.0
    node: str = ""  # of a [node:NAME] scope: only that cluster node runs it



@dataclass(frozen=True)
class Command:
    text: str  # verbatim, as written
    words: tuple  # shlex-split, variables not yet expanded
    program: str  # words[0] resolved at load time, once: the path every step of it runs
    keep_going: bool  # '-' prefix: the sequence goes on if this command fails
    where: str


@dataclass(frozen=True)
class ActionSection:
    name: str
    source: str  # a status or '*'
    target: str
    commands: tuple


@dataclass(frozen=True)
class Config:
    daemon: DaemonSettings
    checks: tuple
    sections: tuple
    cluster: object = None  # cluster.ClusterSettings, or None in single-node mode
    http: HttpSettings | None = None  # the HTTP endpoint's, or None: no [http], no server
    warnings: tuple = ()  # what is allowed but likely a mistake: check-config and the log say it
    elsewhere: tuple = ()  # the checks of [node:NAME] scopes of other nodes: not run here

    def on_node(self, cluster):
        """This config as the node of `cluster` runs it: its own [node:NAME] checks in
        `checks`, the other nodes' in `elsewhere` (a reload keeps the running [cluster])."""
        every = self.checks + self.elsewhere
        node = cluster.node if cluster else None
        return replace(self, cluster=cluster,
                       checks=tuple(c for c in every if c.node in ("", node)),
                       elsewhere=tuple(c for c in every if c.node not in ("", node)))


CHECK_KEYS = {"script", "args", "host", "interval", "timeout", "confirm", "hold_down"}


def load(home):
    """Read both files of a home; raise ConfigError with every problem found."""
    problems, warnings = [], []
    daemon, checks, cluster_section, http = DaemonSettings(), (), None, None
    known = None  # the declared statuses; None while checks.conf cannot be read to say them
    try:
        daemon, checks, cluster_section, http = _read_checks(home, problems)
        known = daemon.known_statuses
    except ConfigError as e:
        problems += e.problems
    sections = ()
    try:
        sections = _read_actions(home, problems, warnings, known)
    except ConfigError as e:
        problems += e.problems
    cluster = clustersettings.load(home, cluster_section, problems, _settings) if cluster_section else None
    if not problems and security.enabled(daemon.strict):
        problems += security.problems(_trusted_paths(home, checks, sections, cluster))
    if problems:
        raise ConfigError(problems)
    return Config(daemon, checks, sections, None, http, tuple(warnings)).on_node(cluster)


def elsewhere(count):
    """What a count of checks leaves out: the [node:NAME] checks that other nodes run."""
    return f" (not run here: {count} of other nodes' [node:NAME] scopes)" if count else ""


def declared_statuses(home):
    """The statuses checks.conf declares, read from its [daemon] section alone (what the CLI
    needs before it asks the daemon, which has the last word); None if it cannot be read."""
    try:
        daemon = next((s for s in read_sections(home.checks_conf) if s.name == "daemon"), None)
        settings = _settings(home.checks_conf, daemon, DaemonSettings, DaemonSettings(), [],
                             {}) if daemon else DaemonSettings()
    except (ConfigError, OSError):
        return None
    return settings.known_statuses


def _trusted_paths(home, checks, sections, cluster):
    """(where, path) of everything strict mode vets: the home and its folders (a program that
    appears in actions/ later would shadow one found on PATH), both files, and every program
    they name. A missing folder is safe: only who may write the home could create it."""
    paths = [("", d) for d in (home.root, home.etc, home.checks_dir, home.actions_dir)
             if d == home.root or d.exists()]
    paths.append((str(home.checks_conf), home.checks_conf))
    if home.actions_conf.exists():
        paths.append((str(home.actions_conf), home.actions_conf))
    paths += [(c.where, c.argv[0]) for c in checks]
    paths += [(c.where, c.send) for c in checks if c.send]
    # Whoever may write the known hosts may stand in for a remote host.
    paths += sorted({(c.where, c.remote.known_hosts) for c in checks if c.remote})
    paths += [(cmd.where, cmd.program) for s in sections for cmd in s.commands]
    if cluster and cluster.fence:
        paths.append((f"{home.checks_conf}: [cluster] fence", cluster.fence_program))
    return paths


def programs(config):
    """{program name: the path it resolved to when this config was loaded and checked}: what
    the cluster runner runs for a step planned on any node (its home may be elsewhere)."""
    found = {cmd.words[0]: cmd.program for s in config.sections for cmd in s.commands}
    if config.cluster and config.cluster.fence:
        found[shlex.split(config.cluster.fence)[0]] = config.cluster.fence_program
    return found


# -- checks.conf -------------------------------------------------------------------------------

def _read_checks(home, problems):
    path = home.checks_conf
    sections = read_sections(path)
    by_name = {s.name: s for s in sections}
    daemon = DaemonSettings()
    if "daemon" in by_name:
        daemon = _settings(path, by_name["daemon"], DaemonSettings, daemon, problems,
                           _daemon_vet(home))
    overrides = {}
    for s in sections:
        if s.name.startswith("check:"):
            cid = s.name[len("check:"):].strip()
            overrides[cid] = (s.lineno, _keys(path, s, sorted(CHECK_KEYS), problems))
        elif (s.name not in ("daemon", "cluster", "ssh", "http") and s.name not in SCOPES
              and not s.name.startswith((SSH_SCOPE, NODE_SCOPE))):
            problems.append(f"{path}:{s.lineno}: unknown scope [{s.name}] "
                            f"(scopes: {', '.join(SCOPES)}, ssh:HOST, node:NAME; "
                            f"settings go in [daemon], [ssh] or [check:NAME])")
    checks, seen = [], {}
    scopes = [(None, "", by_name[scope].lines) for scope in SCOPES if scope in by_name]
    scopes += [(remote, "", lines) for remote, lines in
               _ssh_scopes(home, path, sections, by_name, daemon, problems)]
    scopes += _node_scopes(path, sections, "cluster" in by_name, problems)
    for remote, node, lines in scopes:
        for lineno, text in lines:
            spec = _check_line(home, path, lineno, text, daemon, overrides, seen, problems,
                               remote, node)
            if spec:
                checks.append(spec)
    listed = {key[1] if isinstance(key, tuple) else key for key in seen}
    for cid, (lineno, _) in overrides.items():
        if cid not in listed:
            problems.append(f"{path}:{lineno}: [check:{cid}] is not listed in any scope")
    http = _read_http(home, path, by_name["http"], problems) if "http" in by_name else None
    return daemon, tuple(checks), by_name.get("cluster"), http


def _read_http(home, path, section, problems):
    """The [http] section: where the HTTP endpoint listens (it has no other setting)."""
    def vet(value):
        listen.parse(value, home.root)
    before = len(problems)
    settings = _settings(path, section, HttpSettings, HttpSettings(), problems, {"listen": vet})
    if not settings.listen and len(problems) == before:
        problems.append(f"{path}:{section.lineno}: [http] needs listen = HOST:PORT, "
                        f"[IPv6]:PORT or a socket path (no [http] section: no HTTP endpoint)")
    return settings


def _ssh_scopes(home, path, sections, by_name, daemon, problems):
    """[(sshscope.Target, check lines)] of every [ssh:...] scope, in file order. A line of
    such a scope that sets one of sshscope.SETTINGS (`user = ...`) is a setting of that scope,
    over the [ssh] section's; every other line is a check."""
    vet = sshscope.vet_settings()
    defaults = sshscope.SshSettings()
    if "ssh" in by_name:
        defaults = _settings(path, by_name["ssh"], sshscope.SshSettings, defaults, problems, vet)
    scopes = [s for s in sections if s.name.startswith(SSH_SCOPE)]
    if not scopes:
        return []
    where = f"{path}:{scopes[0].lineno}"
    program = shutil.which("ssh", path=SAFE_PATH)
    if not program:
        problems.append(f"{where}: [{scopes[0].name}] needs the OpenSSH client, and there is "
                        f"no ssh on PATH (apt-get install openssh-client)")
        return []
    if daemon.user:
        problems.append(f"{where}: [{scopes[0].name}]: ssh scopes cannot be combined with "
                        f"`user =` in [daemon] (not supported yet)")
        return []
    result = []
    for s in scopes:
        where = f"{path}:{s.lineno}"
        try:
            user, host, port = sshscope.parse_target(s.name[len(SSH_SCOPE):].strip())
        except ValueError as e:
            problems.append(f"{where}: [{s.name}]: {e}")
            continue
        own = [(n, t) for n, t in s.lines if _is_ssh_setting(t)]
        settings = _settings(path, Section(s.name, s.lineno, own), sshscope.SshSettings,
                             defaults, problems, vet)
        named = {t.split("=")[0].strip().lower() for _, t in own}
        for key, value in (("user", user), ("port", port)):
            if value and key in named:
                problems.append(f"{where}: [{s.name}] names the {key} and sets {key} = too")
        settings = replace(settings, user=user or settings.user, port=port or settings.port)
        if not _ssh_files_ok(home, where, s.name, settings, problems):
            continue
        try:
            remote = sshscope.target(program, host, settings, str(home.var / "ssh"),
                                     lambda name: str(home.root / name))
        except ValueError as e:
            problems.append(f"{where}: [{s.name}]: {e}")
            continue
        result.append((remote, [(n, t) for n, t in s.lines if not _is_ssh_setting(t)]))
    return result


def _node_scopes(path, sections, cluster_mode, problems):
    """[(None, node name, check lines)] of every [node:NAME] scope, in file order: checks that
    only the cluster node NAME runs (Config.on_node sets the others aside)."""
    result = []
    for s in sections:
        if not s.name.startswith(NODE_SCOPE):
            continue
        node = s.name[len(NODE_SCOPE):].strip()
        if not cluster_mode:
            problems.append(f"{path}:{s.lineno}: [{s.name}]: node scopes work only in cluster "
                            f"mode (a [cluster] section); use [local] on a single node")
        elif not valid_host(node):  # what [cluster] node = accepts
            problems.append(f"{path}:{s.lineno}: [{s.name}]: {node!r} is not a node name "
                            f"(letters, digits, .:_-)")
        else:
            result.append((None, node, s.lines))
    return result


def _is_ssh_setting(text):
    m = SSH_SETTING_RE.match(text)
    return bool(m) and m.group(1).lower() in sshscope.SETTINGS


def _ssh_files_ok(home, where, name, settings, problems):
    """The known hosts file (and identity, if set) exist: ssh would refuse every connection."""
    ok = True
    for key, hint in (("known_hosts", "record the host's key first: ssh-keyscan HOST > FILE, "
                                      "then compare its fingerprint with the host's own"),
                      ("identity", "")):
        value = getattr(settings, key)
        if value and not (home.root / value).is_file():
            problems.append(f"{where}: [{name}]: {key} {home.root / value} does not exist"
                            + (f" ({hint})" if hint else ""))
            ok = False
    return ok


def _check_line(home, path, lineno, text, daemon, overrides, seen, problems, remote=None,
                node=""):
    where = f"{path}:{lineno}"
    try:
        words = shlex.split(text, comments=False)
    except ValueError as e:
        problems.append(f"{where}: cannot split check line: {e}")
        return None
    cid, args = words[0], tuple(words[1:])
    if "/" in cid:
        cid = os.path.basename(cid)
        script = words[0]
    else:
        script = cid
    if remote:  # the same check may watch several hosts: each scope's is its own
        cid = f"{cid}@{remote.host}"
    # Two nodes' scopes may list one check (each node runs its own); a node runs its [local]
    # checks too, so an id of [local] is taken on every node (node scopes come last).
    key = (node, cid) if node else cid
    first = seen.get(key) or (seen.get(cid) if node else None)
    if first:
        problems.append(f"{where}: check {cid!r} listed twice (first at line {first}); "
                        f"give each a [check:NAME] section with its own script=")
        return None
    seen[key] = lineno
    _, settings = overrides.get(cid, (0, {}))
    values = dict(host=remote.host if remote else node, interval=daemon.interval,
                  timeout=daemon.timeout, confirm=daemon.confirm, hold_down=daemon.hold_down)
    for key, (klineno, value) in settings.items():
        kwhere = f"{path}:{klineno}"
        if key == "script":
            script = value
        elif key == "args":
            if args:
                problems.append(f"{kwhere}: args for {cid!r} given both here and at line {lineno}")
                continue
            try:
                args = tuple(shlex.split(value))
            except ValueError as e:
                problems.append(f"{kwhere}: cannot split args: {e}")
        elif key == "host":
            if not valid_host(value):
                problems.append(f"{kwhere}: host {value!r} is not a valid host name")
                continue
            values["host"] = value
        else:
            try:
                values[key] = _convert(key, value, type(values[key]))
            except ValueError as e:
                problems.append(f"{kwhere}: {key}: {e}")
    if remote:
        return _remote_check(home, where, cid, script, args, values, remote, problems)
    try:
        program = home.find_check(script)
    except LookupError as e:
        problems.append(f"{where}: check {cid!r}: {e}")
        return None
    return CheckSpec(id=cid, argv=(program,) + args, where=where, node=node, **values)


def _remote_check(home, where, cid, script, args, values, remote, problems):
    """A check of an ssh scope: an absolute path is a program on the remote host; a name is a
    script of checks/, sent on each run over ssh's stdin to the interpreter its #! names."""
    send = ""
    if script.startswith("/"):
        program = (script,)
    elif "/" in script:
        problems.append(f"{where}: check {cid!r}: a remote program must be an absolute path")
        return None
    else:
        try:
            send = home.find_check(script)
            program = sshscope.interpreter(send) + ("/dev/stdin",)
        except (LookupError, ValueError) as e:
            problems.append(f"{where}: check {cid!r}: {e}")
            return None
    command = sshscope.remote_command(program + args, cid, values["host"], values["timeout"])
    values.update(timeout=values["timeout"] + remote.margin, remote_timeout=values["timeout"])
    return CheckSpec(id=cid, argv=remote.check_argv(command), where=where, remote=remote,
                     send=send, **values)


def _keys(path, section, known, problems):
    """A settings section -> {key: (lineno, value)}; unknown keys and bad lines are problems."""
    found = {}
    for lineno, text in section.lines:
        try:
            key, value = split_setting(path, lineno, text)
        except ConfigError as e:
            problems += e.problems
            continue
        if key not in known:
            problems.append(f"{path}:{lineno}: unknown setting {key!r} in [{section.name}] "
                            f"(known: {', '.join(known)})")
            continue
        if key in found:
            problems.append(f"{path}:{lineno}: {key} set twice in [{section.name}] (first at "
                            f"line {found[key][0]})")
            continue
        found[key] = (lineno, value)
    return found


def _settings(path, section, cls, defaults, problems, vet=None):
    """vet: {key: function(value)} for what a type cannot say (a file, a user): it raises
    ValueError with the reason."""
    changes = {}
    known = [f.name for f in fields(cls) if not f.metadata.get("derived")]
    for key, (lineno, value) in _keys(path, section, known, problems).items():
        try:
            changes[key] = _convert(key, value, type(getattr(defaults, key)))
            if vet and key in vet:
                vet[key](changes[key])
        except ValueError as e:
            problems.append(f"{path}:{lineno}: {key}: {e}")
    return replace(defaults, **changes)


def _daemon_vet(home):
    """The [daemon] settings that name something outside the file, checked before they are
    used: a reload must not find out by failing half-way through."""
    def log(value):
        if value in ("auto", "stderr", "syslog"):
            return
        if not value.strip():
            raise ValueError("empty: auto, stderr, syslog or a file")
        path = logsetup.log_path(home, value)
        if not path.parent.is_dir():
            raise ValueError(f"folder {path.parent} does not exist")

    def known(lookup, what):
        def vet(value):
            if value:
                try:
                    lookup(value)
                except KeyError:
                    raise ValueError(f"no {what} {value!r} on this machine") from None
        return vet
    return {"log": log, "user": known(pwd.getpwnam, "user"),
            "socket_group": known(grp.getgrnam, "group"), "statuses": statusesmod.vet}


CHOICES = {"on_failure": ("stop", "continue"), "corrupt_table": ("moveaside", "refuse"),
           "strict": ("auto", "yes", "no"), "on_resume": ("last", "none"),
           "log_level": ("debug", "info", "warning", "error")}
MINIMUM = {"interval": 0.01, "timeout": 0.01, "workers": 1, "confirm": 1, "hold_down": 0.0,
           "action_timeout": 0.01, "max_jobs": 1, "output_limit": 1024, "grace": 0.0,
           "keep_jobs": 1}
DAY = 86400.0
# workers: a pool, not a fork bomb; output_limit: a result must fit one message; the rest: a
# typo of a few digits is refused rather than obeyed (a check that never runs again).
MAXIMUM = {"workers": 256, "output_limit": 256 * 1024, "interval": DAY, "timeout": DAY,
           "hold_down": DAY, "action_timeout": DAY, "grace": DAY, "confirm": 1000,
           "max_jobs": 10 ** 9, "keep_jobs": 10 ** 9}


def _convert(key, value, kind):
    if kind is float:
        m = DURATION_RE.match(value.strip())
        if not m:
            raise ValueError(f"expected seconds (e.g. 2, 0.5, 500ms, 1m), got {value!r}")
        result = float(m.group(1)) * {"ms": 0.001, "m": 60.0}.get(m.group(2), 1.0)
    elif kind is int:
        try:
            result = int(value)
        except ValueError:
            raise ValueError(f"expected a whole number, got {value!r}") from None
    else:
        result = value
        if key in CHOICES and value not in CHOICES[key]:
            raise ValueError(f"expected one of {', '.join(CHOICES[key])}, got {value!r}")
    if key in MINIMUM and result < MINIMUM[key]:
        raise ValueError(f"must be at least {MINIMUM[key]}, got {value!r}")
    if key in MAXIMUM and result > MAXIMUM[key]:
        raise ValueError(f"must be at most {MAXIMUM[key]}, got {value!r}")
    return result


# -- actions.conf ------------------------------------------------------------------------------

def _read_actions(home, problems, warnings, known):
    """known: the declared statuses every section and %VAR% must name (None: not checked,
    checks.conf could not be read to say them)."""
    path = home.actions_conf
    if not path.exists():
        # A daemon that only watches is a valid daemon; a file that is not where it was meant
        # to be is more likely, and nothing would ever fire.
        warnings.append(f"{path}: does not exist: no action will run on any transition")
        return ()
    result = []
    for s in read_sections(path):
        head, on = clusterrules.split_section(s.name)  # 'on NODE': where it runs in a cluster
        source, sep, target = head.partition("_to_")
        if not sep or not _pattern_ok(source) or not _pattern_ok(target):
            problems.append(f"{path}:{s.lineno}: section [{s.name}] is not FROM_to_TO "
                            f"(a status in lower case, or *)")
            continue
        where = f"{path}:{s.lineno}"
        undeclared = [p for p in (source, target) if known and p != "*" and p not in known]
        if undeclared:
            problems.append(f"{where}: section [{s.name}] would never run: "
                            f"{statusesmod.undeclared(undeclared[0], known)}")
            continue
        if on and not clusterrules.valid_on(on):
            problems.append(f"{where}: section [{s.name}]: 'on {on}' is not a node "
                            f"name, 'leader' or a %VARIABLE%")
            continue
        if on.startswith("%") and _variables_problem(where, [on], known, problems):
            continue
        commands = []
        for lineno, text in s.lines:
            command = _command(home, f"{path}:{lineno}", text, problems, known)
            if command:
                commands.append(command)
        result.append(ActionSection(s.name, source, target, tuple(commands)))
    return tuple(result)


def _pattern_ok(p):
    return p == "*" or valid_status(p)


def _variables_problem(where, words, known, problems):
    """Add the first %VAR% in words that can never have a value to problems; True if one was."""
    for word in words:
        for name in actions.TOKEN_RE.findall(word):
            why = name and known and statusesmod.variable_problem(name, known)  # '': a literal %%
            if why:
                problems.append(f"{where}: {why}")
                return True
    return False


def _command(home, where, text, problems, known):
    keep_going = text.startswith("-")
    body = text[1:].lstrip() if keep_going else text
    try:
        words = tuple(shlex.split(body, comments=False))
    except ValueError as e:
        problems.append(f"{where}: cannot split command: {e}")
        return None
    if not words:
        problems.append(f"{where}: empty command")
        return None
    if VARIABLE_RE.search(words[0]):
        problems.append(f"{where}: the program name may not be a variable: {words[0]!r}")
        return None
    if _variables_problem(where, words[1:], known, problems):
        return None
    try:
        program = home.find_action(words[0])
    except LookupError as e:
        problems.append(f"{where}: {e}")
        return None
    return Command(text=text, words=words, program=program, keep_going=keep_going, where=where)

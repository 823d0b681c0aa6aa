"""The [ssh:HOST] scope: checks that run on another host through the system's OpenSSH client.

Pure: settings in, argument vectors out. One multiplexed connection per target (a master,
sshmaster.py) carries every check as a channel; a check's own ssh falls back to a connection of
its own while no master is up. Nothing hadaemon makes reaches the remote shell unquoted: the
remote command is built from words, each quoted for a POSIX shell (the remote login shell).
"""

import zlib
import math
import re
import shlex
from dataclasses import dataclass

SETTINGS = ("user", "port", "address", "identity", "known_hosts", "connect_timeout", "options")
USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\Z")
ADDRESS_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,252}\Z")
OPTION_RE = re.compile(r"([A-Za-z]+)=(\S.*)\Z", re.S)
# What `options =` may not change: each is what a documented guarantee rests on.
RESERVED = {"batchmode", "stricthostkeychecking", "userknownhostsfile", "globalknownhostsfile",
            "updatehostkeys", "controlmaster", "controlpath", "controlpersist", "forwardagent",
            "requesttty", "permitlocalcommand", "localcommand", "identityfile", "user", "port",
            "connecttimeout", "sendenv", "setenv"}
SUN_PATH = 107  # bytes of a UNIX socket path (108 with its NUL)
MASTER_SUFFIX = 17  # ssh binds a master's socket as PATH.<16 random characters> first
KILL_AFTER = 1  # seconds the remote `timeout` waits between SIGTERM and SIGKILL
TIMED_OUT = (124, 137)  # the remote `timeout`'s exit codes: it sent SIGTERM, or had to KILL
CANNOT_RUN = (126, 127)  # the remote `timeout` (or `env`) found no such program, or cannot run it
UNREACHABLE = 255  # ssh's own failure: connection, authentication, host key


@dataclass(frozen=True)
class SshSettings:
    user: str = ""  # ssh's default: the daemon's user
    port: int = 0  # 0: ssh's default, 22
    address: str = ""  # where to connect; default: the scope's host
    identity: str = ""  # a private key file (relative to the home); default: ssh's own
    known_hosts: str = "etc/known_hosts"  # the only host keys trusted (relative to the home)
    connect_timeout: float = 5.0
    options: str = ""  # extra ssh options, KEY=VALUE words


@dataclass(frozen=True)
class Target:
    """One remote host as the checks of one scope reach it."""
    host: str  # the scope's host: its checks' default host and the end of their ids
    destination: str  # the address ssh connects to
    common: tuple  # ssh and every option the master and the checks share
    socket: str  # the master's control socket
    margin: float  # seconds a check's local ssh gets beyond its timeout (connect, kill)
    known_hosts: str  # the file of trusted host keys (strict mode vets it)

    def master_argv(self):
        # ControlPersist=no: the master is the supervisor's child, in the foreground; it ends
        # when the supervisor ends it (or the connection drops), never lingers on its own.
        return (*self.common, "-M", "-N", "-o", "ControlMaster=yes", "-o", "ControlPersist=no",
                "--", self.destination)

    def check_argv(self, remote_command):
        # ControlMaster=no: use the master if its socket answers, else connect alone.
        return (*self.common, "-o", "ControlMaster=no", "--", self.destination, remote_command)


def parse_target(text):
    """'[USER@]HOST[:PORT]' -> (user, host, port); ValueError says what is wrong."""
    user, at, rest = text.rpartition("@")
    host, colon, port = rest.rpartition(":")
    if not colon:
        host, port = rest, ""
    if at and not USER_RE.match(user):
        raise ValueError(f"user {user!r} is not a user name")
    if colon and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"port {port!r} is not a port number")
    if not ADDRESS_RE.match(host) or ":" in host:
        raise ValueError(f"{host!r} is not a host name")
    return user, host, int(port) if port else 0


def vet_settings():
    """{key: function(value)} for config._settings: what a type alone cannot say."""
    def user(value):
        if value and not USER_RE.match(value):
            raise ValueError(f"{value!r} is not a user name")

    def port(value):
        if not 0 <= value < 65536:
            raise ValueError(f"{value} is not a port number")

    def address(value):
        if value and not ADDRESS_RE.match(value):
            raise ValueError(f"{value!r} is not a host name or address")

    def timeout(value):
        if not 1 <= value <= 300:
            raise ValueError(f"must be from 1 to 300 seconds, got {value:g}")

    return {"user": user, "port": port, "address": address, "connect_timeout": timeout,
            "options": lambda value: extra_options(value)}


def extra_options(text):
    """`options = KEY=VALUE ...` -> ('-o', 'KEY=VALUE', ...); ValueError for one that is not
    such a word or would undo a guarantee."""
    result = []
    for word in shlex.split(text):
        m = OPTION_RE.match(word)
        if not m:
            raise ValueError(f"{word!r} is not an ssh option KEY=VALUE")
        if m.group(1).lower() in RESERVED:
            raise ValueError(f"{m.group(1)} is set by hadaemon (or by a setting of its own) "
                             f"and may not be changed here")
        result += ["-o", word]
    return tuple(result)


def config_path(path):
    """A file name as an ssh option's value: quoted (spaces), '%' doubled (ssh expands %x)."""
    if any(c in path for c in '"\\\n'):
        raise ValueError(f"{path!r}: ssh cannot be given a file name with quotes, backslashes "
                         f"or newlines")
    return '"' + path.replace("%", "%%") + '"'


def target(ssh_program, host, settings, var_ssh, resolve):
    """The Target of a scope; resolve(name) makes a setting's file name absolute (the home)."""
    seconds = math.ceil(settings.connect_timeout)
    common = [ssh_program, "-F", "none", "-T", "-x", "-a",
              "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
              "-o", f"UserKnownHostsFile={config_path(resolve(settings.known_hosts))}",
              "-o", "GlobalKnownHostsFile=none", "-o", "UpdateHostKeys=no",
              "-o", f"ConnectTimeout={seconds}",
              # A master on a dead link would hold every check until their timeouts.
              "-o", f"ServerAliveInterval={seconds}", "-o", "ServerAliveCountMax=2",
              "-o", "LogLevel=ERROR"]
    if settings.identity:
        common += ["-o", f"IdentityFile={config_path(resolve(settings.identity))}",
                   "-o", "IdentitiesOnly=yes"]
    if settings.user:
        common += ["-l", settings.user]
    if settings.port:
        common += ["-p", str(settings.port)]
    common += extra_options(settings.options)
    destination = settings.address or host
    # One master per way of connecting: a setting changed by a reload gets a master of its own.
    # Two CRCs, not hashlib: that loads OpenSSL into the supervisor and every worker (4 MiB).
    data = "\0".join([*common, destination]).encode()
    name = f"{zlib.crc32(data):08x}{zlib.crc32(data[::-1]):08x}"[:12]
    socket = f"{var_ssh}/{name}"
    if len(socket.encode()) + MASTER_SUFFIX > SUN_PATH:
        raise ValueError(f"control socket {socket} is too long for a UNIX socket (at most "
                         f"{SUN_PATH - MASTER_SUFFIX} bytes): use a home with a shorter path")
    common += ["-o", f"ControlPath={config_path(socket)}"]
    return Target(host, destination, tuple(common), socket, margin=seconds + KILL_AFTER + 2,
                  known_hosts=resolve(settings.known_hosts))


def interpreter(script):
    """The words of a script's #! line (the kernel's split: a program and one argument);
    ValueError if it has none."""
    try:
        with open(script, "rb") as f:
            first = f.readline(512)
    except OSError as e:
        raise ValueError(f"cannot read {script}: {e.strerror}") from None
    if not first.startswith(b"#!"):
        raise ValueError(f"{script} has no #! line: only a script can be sent to a remote host "
                         f"(give a remote program as an absolute path)")
    words = first[2:].decode("utf-8", "replace").strip().split(None, 1)
    if not words:
        raise ValueError(f"{script}: empty #! line")
    return tuple(words)


def remote_command(program_argv, check_id, host, timeout):
    """The command line the remote shell runs: the environment a local check gets (HA_CHECK,
    HA_HOST), the check under coreutils' `timeout` (so the timeout kills it there, with what
    it started: `timeout` signals its process group), every word quoted."""
    words = ["exec", "env", f"HA_CHECK={check_id}", f"HA_HOST={host}",
             "timeout", "-k", str(KILL_AFTER), f"{timeout:g}", *program_argv]
    return " ".join(shlex.quote(w) for w in words)


def failure(rc, timed_out, stderr, remote):
    """Why a remote check gave no usable answer, '' if it answered. remote: the job's 'remote'
    ({host, timeout, local_timeout})."""
    if timed_out:
        return (f"unreachable via ssh: no answer from {remote['host']} within "
                f"{remote['local_timeout']:g}s")
    lines = [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    said = f": {lines[-1].strip()[:200]}" if lines else ""
    if rc == UNREACHABLE:
        return "unreachable via ssh" + said
    if rc in TIMED_OUT:
        return f"timed out after {remote['timeout']:g}s on {remote['host']}"
    if rc in CANNOT_RUN:  # as a local check that cannot start: an error, not a Nagios reading
        return f"cannot run on {remote['host']}" + said
    return ""

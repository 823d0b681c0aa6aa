"""From a transition to the commands to run: match sections, expand variables.

All matching sections run as one sequence, in the order they appear in actions.conf, so the
file reads top to bottom as what happens. Expansion uses the table as it is right after the
transition (its snapshot), so a sequence resumed after a crash runs with the same arguments.

Linux refuses to start a program whose one argument or environment string passes 128 KiB
(MAX_ARG_STRLEN), or whose arguments and environment together pass ARG_MAX: with a thousand
long host names even /bin/true would fail. So a host list too long for the environment is
handed over as a file (spill). A command whose expanded words would pass a limit, or that names
a status no host has, is refused before its sequence starts, never half-way through it (plan).
"""

import os
import re

from .names import variable

TOKEN_RE = re.compile(r"%%|%([A-Za-z][A-Za-z0-9_-]*)%")


def matching(sections, transition):
    return [s for s in sections
            if s.source in ("*", transition.source) and s.target in ("*", transition.target)]


def values(transition):
    """Every variable's values: %HOST%, %FROM%, %TO% and one per status, hosts sorted."""
    result = {}
    for host, status in sorted(transition.snapshot.items()):
        result.setdefault(variable(status), []).append(host)
    result.update(_own(transition))
    return result


def _own(transition):
    return {"HOST": [transition.host], "FROM": [transition.source], "TO": [transition.target]}


class Values:
    """values(transition), each variable worked out when a command first names it: planning
    `record %HOST% %TO%` costs the same with 10 hosts in the table as with 100 000."""

    def __init__(self, transition):
        self.transition, self.known = transition, _own(transition)

    def get(self, name, default=None):
        if name not in self.known:
            self.known[name] = sorted(h for h, s in self.transition.snapshot.items()
                                      if variable(s) == name)
        return self.known[name] or default


WORD_LIMIT = 128 * 1024 - 1  # bytes of one argument: MAX_ARG_STRLEN counts the final NUL
# Bytes of a command's arguments (each counted with its NUL and pointer): half of ARG_MAX at
# most, which leaves the other half for the environment (under ENV_LISTS_LIMIT and a few
# fixed variables) and the program path resolved at run time.
ARGV_LIMIT = min(1024 * 1024, max(os.sysconf("SC_ARG_MAX"), 128 * 1024) // 2)


class TooLong(ValueError):
    """A command's expansion Linux would refuse to start (E2BIG)."""


def expand(words, vals):
    """Expand one command's words; raise KeyError(name) for a variable with no value, TooLong
    for a result Linux would refuse.

    A word that is exactly one variable becomes one argument per host; a variable inside a
    longer word becomes the hosts joined by commas. '%%' is a literal '%'.
    """
    argv = []
    for word in words:
        m = TOKEN_RE.fullmatch(word)
        if m and m.group(1):
            argv.extend(_lookup(vals, m.group(1)))
            continue

        def one(match):
            return "%" if match.group(0) == "%%" else ",".join(_lookup(vals, match.group(1)))
        arg = TOKEN_RE.sub(one, word)
        size = len(arg.encode())
        if size > WORD_LIMIT:
            names = " ".join(f"%{n.upper()}%" for n in TOKEN_RE.findall(word) if n)
            raise TooLong(f"{names} inside the word {word!r} makes one argument of {size} "
                          f"bytes, over Linux's limit of {WORD_LIMIT} (a word that is exactly "
                          f"the variable gives one argument per host)")
        argv.append(arg)
    size = sum(len(a.encode()) + 9 for a in argv)  # its NUL and its pointer
    if size > ARGV_LIMIT:
        names = " ".join(sorted({f"%{n.upper()}%" for w in words for n in TOKEN_RE.findall(w)
                                 if n}))
        raise TooLong(f"{names} make {len(argv)} arguments of {size} bytes in all, over the "
                      f"limit of {ARGV_LIMIT} (half of this system's ARG_MAX, at most 1 MiB)")
    return argv


def _lookup(vals, name):
    found = vals.get(name.upper())  # a dict of values(), or Values
    if not found:
        raise KeyError(name)
    return found


# Names the daemon sets itself: a status called `home` or `check` must not override them (an
# action with HA_CHECK would pass for a leftover check, see leftovers.py).
RESERVED = {"HA_HOME", "HA_CHECK", "HA_JOB", "HA_RESUMED", "HA_MANUAL", "HA_NODE",
            "HA_FENCE_NODE"}


def environment(transition):
    """HA_* variables describing the transition, for commands that prefer the environment."""
    env = {f"HA_{name.replace('-', '_')}": " ".join(hosts)
           for name, hosts in values(transition).items()}
    env = {k: v for k, v in env.items() if k not in RESERVED}
    env["HA_MANUAL"] = "1" if transition.manual else "0"
    return env


ENV_LIST_LIMIT = 16 * 1024  # bytes of one HA_ variable set in the environment
ENV_LISTS_LIMIT = 64 * 1024  # bytes of all of them together


def spill(env):
    """Split a job's HA_ variables into those set inline and those handed over as files.

    Smallest first (then by name, so a resumed command gets the same split), a variable is set
    inline while it and the running total stay within ENV_LIST_LIMIT and ENV_LISTS_LIMIT; any
    other becomes {name: its hosts, one per line} for a file named by NAME_FILE, and NAME is
    not set. Returns (inline, files).
    """
    inline, files, total = {}, {}, 0
    for name, value in sorted(env.items(), key=lambda kv: (len(kv[1].encode()), kv[0])):
        size = len(name) + len(value.encode()) + 2  # '=' and the NUL
        if size <= ENV_LIST_LIMIT and total + size <= ENV_LISTS_LIMIT:
            inline[name] = value
            total += size
        else:
            files[name] = "".join(f"{host}\n" for host in value.split())
    return inline, files


def plan(sections, transition, timeout, on_failure):
    """The steps of the transition's sequence, planned whole before its first command runs.

    A command that cannot be expanded refuses the whole sequence, never half a failover: a
    variable with no value (no host has that status right after the transition), or a result
    Linux would refuse to start (TooLong). Every step then gets the reason and `refused`, so
    none runs (journal.initial_state records the job failed). The environment is apart
    (environment()): the journal keeps it by reference to the table (journal.py).
    """
    vals = Values(transition)
    steps, refused = [], None
    for section in matching(sections, transition):
        for command in section.commands:
            # program: resolved when the config was loaded and checked, journalled with the
            # step, so that what runs, also after a restart, is what was checked.
            step = {"section": section.name, "text": command.text, "where": command.where,
                    "keep_going": command.keep_going or on_failure == "continue",
                    "timeout": timeout, "program": command.program, "argv": None,
                    "error": None}
            try:
                step["argv"] = expand(command.words, vals)
            except KeyError as e:
                name = e.args[0].upper()
                refused = refused or (f"{command.where}: {command.text!r}: %{name}% has no "
                                      f"value (no host is {name.lower()} right after the "
                                      f"transition)")
            except TooLong as e:
                refused = refused or f"{command.where}: {command.text!r}: {e}"
            steps.append(step)
    if refused:
        for step in steps:
            step.update(argv=None, error=f"sequence refused: {refused}", refused=True)
    return steps

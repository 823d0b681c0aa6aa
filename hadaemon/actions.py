"""From a transition to the commands to run: match sections, expand variables.

All matching sections run as one sequence, in the order they appear in actions.conf, so the
file reads top to bottom as what happens. Expansion uses the table as it is right after the
transition (its snapshot), so a sequence resumed after a crash runs with the same arguments.
"""

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
    result.update(HOST=[transition.host], FROM=[transition.source], TO=[transition.target])
    return result


def expand(words, vals):
    """Expand one command's words; raise KeyError(name) for a variable with no value.

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
        argv.append(TOKEN_RE.sub(one, word))
    return argv


def _lookup(vals, name):
    found = vals.get(name.upper())
    if not found:
        raise KeyError(name)
    return found


# Names the daemon sets itself: a status called `home` or `check` must not override them (an
# action with HA_CHECK would pass for a leftover check, see leftovers.py).
RESERVED = {"HA_HOME", "HA_CHECK", "HA_JOB", "HA_RESUMED", "HA_MANUAL", "HA_NODE",
            "HA_FENCE_NODE"}


def environment(transition, vals):
    """HA_* variables describing the transition, for commands that prefer the environment."""
    env = {f"HA_{name.replace('-', '_')}": " ".join(hosts) for name, hosts in vals.items()}
    env = {k: v for k, v in env.items() if k not in RESERVED}
    env["HA_MANUAL"] = "1" if transition.manual else "0"
    return env


def plan(sections, transition, timeout, on_failure):
    """The steps of the transition's sequence: each with argv, or the error that stops it."""
    vals = values(transition)
    steps = []
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
                step["error"] = f"variable %{e.args[0]}% has no value (no host has that status)"
            steps.append(step)
    return steps, environment(transition, vals)

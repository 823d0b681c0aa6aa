"""The known set of statuses: the ones the daemon itself gives, plus those the user declares.

A status outside the set is a typo until proven otherwise: `[slave_to_mastre]` would never fire
and `%MASTR%` would stop a failover half-way. So actions.conf may only name declared statuses,
a check that reports another one has its result rejected, and `transition` refuses one.
"""

import difflib
import re

from .names import valid_status, variable

# The Nagios reading of an exit code (protocol.NAGIOS) and what a failed check gives, plus the
# two roles of the shipped example.
DEFAULT = ("up", "warning", "down", "unknown", "master", "slave")
TRANSITION_VARIABLES = ("HOST", "FROM", "TO")  # %VAR%s that name the transition, not a status
SEPARATOR_RE = re.compile(r"[,\s]+")
MORE = "more statuses go in `statuses =` in [daemon] of checks.conf"


def declared(extra):
    """The known set from the `statuses =` setting's text: DEFAULT plus every valid name in it
    (an invalid one is config.py's to report; the valid ones still count, so one bad name does
    not make every section that uses the others an error too)."""
    return frozenset(DEFAULT) | {s for s in names(extra) if valid_status(s)}


def names(text):
    return [s for s in SEPARATOR_RE.split(text.strip()) if s]


def vet(text):
    """Raise ValueError naming what is not a status name in a `statuses =` setting."""
    bad = [s for s in names(text) if not valid_status(s)]
    if bad:
        raise ValueError(f"{bad[0]!r} is not a status name (lower case letters, digits and '-',"
                         f" starting with a letter; separate names with commas)")


def undeclared(status, known):
    """Why `status` is refused: it names the status and the closest declared one, if any."""
    hint = _closest(status, known, "{!r}")
    return f"status {status!r} is not declared{hint}; declared: {', '.join(sorted(known))}; {MORE}"


def variable_problem(name, known):
    """Why %name% can never have a value, or None if it can: the transition's own variables
    and one per declared status, in upper case."""
    allowed = {variable(s) for s in known} | set(TRANSITION_VARIABLES)
    if name in allowed:
        return None
    if name.upper() in allowed:
        return (f"%{name}% is not a variable: variables are upper case (did you mean "
                f"%{name.upper()}%?)")
    hint = _closest(name.upper(), allowed, "%{}%")
    return (f"%{name}% can never have a value{hint}: variables are %HOST%, %FROM%, %TO% and one"
            f" per declared status ({', '.join(f'%{v}%' for v in sorted(map(variable, known)))};"
            f" {MORE})")


def _closest(name, options, form):
    """' (did you mean X?)' for the one option that looks like a typo of name, else ''."""
    close = difflib.get_close_matches(name, sorted(options), 1, 0.75)
    return f" (did you mean {form.format(close[0])}?)" if close else ""

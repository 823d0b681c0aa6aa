"""The safe character sets for host and status names.

Both end up as arguments and environment values of commands run as root, so anything a shell or
a command line could read specially is refused at the door.
"""

import re

HOST_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,252}\Z")
# No '_' in statuses: section names are FROM_to_TO, and a status may never make that ambiguous.
STATUS_RE = re.compile(r"[a-z][a-z0-9-]{0,31}\Z")
# Section patterns: a status or '*'.
UNKNOWN = "unknown"


def valid_host(value):
    return isinstance(value, str) and bool(HOST_RE.match(value))


def valid_status(value):
    return isinstance(value, str) and bool(STATUS_RE.match(value))


def variable(status):
    """The %VAR% name under which the hosts in a status are expanded: master -> MASTER."""
    return status.upper()

"""The pure rules of cluster mode: how the nodes' opinions combine into a status, and which
node runs a command of a section (`[FROM_to_TO on NODE]`). No I/O."""

import re
from collections import Counter

from ..names import valid_host

ON_RE = re.compile(r"(.*\S)\s+on\s+(\S+)\Z")  # [FROM_to_TO on NODE]


def split_section(name):
    """'slave_to_master on %HOST%' -> ('slave_to_master', '%HOST%'); no 'on': (name, '')."""
    m = ON_RE.match(name)
    return (m.group(1), m.group(2)) if m else (name, "")


def valid_on(node):
    return node == "leader" or bool(re.fullmatch(r"%[A-Za-z][A-Za-z0-9_-]*%", node)) \
        or valid_host(node)


def step_node(section_name, vals):
    """The node that runs a step of this section: a name, or '' for whoever leads."""
    _, on = split_section(section_name)
    if not on or on == "leader":
        return ""
    if on.startswith("%"):
        hosts = vals.get(on.strip("%").upper()) or []
        return hosts[0] if len(hosts) == 1 else ""
    return on


# -- the rule that combines the nodes' opinions ------------------------------------------------

def combine(opinions, host):
    """The status a strict majority of the live nodes reporting `host` agree on, else None.

    opinions: {node: {host: status}}. A node that does not report the host does not vote, so one
    node that loses its network (its results vanish with its lease) or sees a host differently
    cannot move it alone while others see it.
    """
    votes = [o[host] for o in opinions.values() if host in o]
    if not votes:
        return None
    status, count = Counter(votes).most_common(1)[0]
    return status if 2 * count > len(votes) else None

"""Log lines about hosts that change at once: one per host when they are few, one in all when
they are many. A pool stuck for a moment or a node lost at 100 000 hosts would otherwise log
100 000 lines, and as many again when it is over."""

import logging

log = logging.getLogger("hadaemon")
LOG_HOSTS = 20  # more hosts than this at once: one line


def span(hosts):
    """A few of sorted hosts, for a log line."""
    return ", ".join(hosts) if len(hosts) <= 3 else f"{hosts[0]}, {hosts[1]} ... {hosts[-1]}"


def log_hosts(level, hosts, each, many, *args):
    """Log `each % (host, *args)` for every host of sorted `hosts`, or `many % (how many, a
    span of them, *args)` once if they are more than LOG_HOSTS."""
    if len(hosts) > LOG_HOSTS:
        log.log(level, many, len(hosts), span(hosts), *args)
    else:
        for host in hosts:
            log.log(level, each, host, *args)

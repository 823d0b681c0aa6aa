"""Who holds a node name: the daemon (host and pid) that wrote a node key."""

import os
import socket


def identity():
    """This node's daemon, as its node key records it. Called in the agent and the runner, both
    children of the supervisor, so both give the same answer."""
    return {"host": socket.gethostname(), "pid": os.getppid()}


def is_us(node_value):
    """Whether a node key's value (split_live's nodes[name]) was written by this daemon."""
    return bool(node_value) and all(node_value.get(k) == v for k, v in identity().items())

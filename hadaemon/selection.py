"""The selector the loop turns on: whether a file is watched, and forgetting one safely."""


def registered(sel, fileobj):
    try:
        sel.get_key(fileobj)
        return True
    except (KeyError, ValueError, RuntimeError):  # ValueError: a closed file; RuntimeError: a
        return False  # closed selector


def unregister(sel, fileobj):
    if registered(sel, fileobj):
        sel.unregister(fileobj)


def close(sel, sock):
    """Out of the selector before its fd is closed: a closed fd left registered would keep the
    next file given that number from being registered."""
    unregister(sel, sock)
    sock.close()

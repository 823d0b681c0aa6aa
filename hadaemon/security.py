"""Strict mode: refuse scripts and configs that someone other than root could have changed.

hadaemon usually runs as root and executes what the config names, so a check or action script, a
config file, the home's own folders (where a program may appear later: actions/NAME comes before
PATH), or any directory above them that another user can write is a way to root. Like
keepalived's enable_script_security, such a path is refused. A world-writable directory with the
sticky bit (/tmp) is accepted: others cannot replace the entries in it that they do not own.
"""

import os
import stat


def enabled(setting):
    return setting == "yes" or (setting == "auto" and os.geteuid() == 0)


def problems(paths):
    """paths: (where, path) pairs. One message per unsafe component, prefixed with the `where`
    of the first path that has it (none if where is empty: the message names the path)."""
    trusted = {0, os.geteuid()}
    found, seen = [], {}
    for where, path in paths:
        for problem in _walk(os.path.realpath(path), trusted, seen):
            found.append(f"{where}: {problem}" if where else problem)
    return found


def _walk(path, trusted, seen):
    """Check path and every directory above it, top-down; stop at the first problem.

    Every component must be owned by a trusted uid, which is what makes a sticky directory safe:
    the entry below it is trusted, and others cannot rename or delete it. seen: component ->
    whether it was safe; an unsafe one is reported once, for the first path under it.
    """
    parts = []
    while path not in parts:
        parts.append(path)
        path = os.path.dirname(path)
    for p in reversed(parts):
        if p in seen:
            if seen[p]:
                continue
            return
        seen[p] = False
        try:
            st = os.stat(p)
        except OSError as e:
            yield f"cannot check {p}: {e.strerror}"
            return
        if st.st_uid not in trusted:
            yield (f"strict mode: {p} is owned by uid {st.st_uid}, not root or the daemon user "
                   f"(chown it, or set strict = no in [daemon])")
            return
        sticky_dir = stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky_dir:
            who = "others" if st.st_mode & stat.S_IWOTH else "its group"
            yield (f"strict mode: {p} is writable by {who} (chmod go-w {p}, "
                   f"or set strict = no in [daemon])")
            return
        seen[p] = True

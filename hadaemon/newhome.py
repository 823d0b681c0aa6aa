"""`hadaemon init DIR`: a new home, written from the example the package carries.

The example is the repository root's own etc/, checks/ and actions/ (hadaemon/example/ links to
them; a built package holds copies), so a new home is the walkthrough's home, comments included.
"""

import os
from importlib import resources
from pathlib import Path

PARTS = ("etc", "checks", "actions")


class InitError(Exception):
    """Nothing was written, or what was written is named."""


def example():
    """Every file of the shipped example as (path relative to a home, bytes), sorted."""
    root = resources.files(__package__) / "example"
    return [(f"{part}/{entry.name}", entry.read_bytes())
            for part in PARTS
            for entry in sorted((root / part).iterdir(), key=lambda e: e.name)
            if entry.is_file() and not entry.name.startswith(".")]


def create(dest):
    """Write the example into dest (created if need be); returns the paths written.

    Refuses, before writing anything, if one of those paths exists: a home holds an HA
    daemon's config, and no option overwrites it. Modes are set whatever the umask, on every
    directory it makes too, so that strict mode (owner only may write) accepts the new home.
    """
    dest = Path(dest)
    files = example()
    taken = [dest / rel for rel, _ in files if os.path.lexists(dest / rel)]
    if taken:
        raise InitError(f"{taken[0]} exists: init writes a new home and overwrites nothing "
                        "(choose another directory, or move that file away)")
    written = []
    try:
        missing = [d for d in (*reversed(dest.parents), dest) if not d.is_dir()]
        for d in missing + [dest / part for part in PARTS if not (dest / part).is_dir()]:
            d.mkdir()
            d.chmod(0o755)
        for rel, data in files:
            path = dest / rel
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with open(fd, "wb") as f:
                f.write(data)
            path.chmod(0o644 if rel.startswith("etc/") else 0o755)
            written.append(path)
    except OSError as e:
        done = f" (written before it: {len(written)} file(s))" if written else ""
        raise InitError(f"cannot write the new home in {dest}: {e}{done}") from None
    return written

"""Host lists too long for a command's environment, handed over as files it inherits.

Each list is a sealed memfd passed to the command as an open descriptor and named by
HA_<STATUS>_FILE=/dev/fd/N. Nothing is written to disk, so there is nothing to remove after a
crash, a command started as `user =` can read it (var/ is not its), and a command resumed
after a crash gets a file with the same content, made again from the job's stored environment.
The file exists for as long as the command (or a child that inherited the descriptor) runs.
"""

import contextlib
import fcntl
import os

SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


@contextlib.contextmanager
def opened(files):
    """{NAME: text} -> ({NAME_FILE: /dev/fd/N}, descriptors to pass), closed on exit."""
    fds, env = [], {}
    try:
        for name, text in sorted(files.items()):
            fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
            fds.append(fd)
            data = text.encode()
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.lseek(fd, 0, os.SEEK_SET)  # a command reading the descriptor itself starts at 0
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALS)
            os.set_inheritable(fd, True)
            env[f"{name}_FILE"] = f"/dev/fd/{fd}"
        yield env, tuple(fds)
    finally:
        for fd in fds:
            os.close(fd)

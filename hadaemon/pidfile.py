"""var/hadaemon.pid: a plain pidfile, held with a POSIX record lock for the supervisor's life.

The file's content alone proves nothing: after a kill -9 it names a pid the kernel may give to
any process, an editor on /etc/hadaemon/... included. The lock does: the kernel drops it when
its holder dies, and F_GETLK names the process that holds it. So the pid `stop` signals is the
lock holder's, never the file's; a pidfile nobody holds is stale whatever pid it names.

The lock is taken before anything is written, and the file is only removed by its holder, so
two daemons starting at once cannot both win (a loser that opened a file being removed sees
that its inode is no longer the path's and tries again).
"""

import errno
import fcntl
import os
import struct

# struct flock: l_type, l_whence, l_start, l_len, l_pid (native layout, padded at the end).
FLOCK = "@hhqqi"
FLOCK_SIZE = struct.calcsize(FLOCK) + 8


class AlreadyRunning(Exception):
    def __init__(self, pid):
        super().__init__(pid)
        self.pid = pid


class CannotCreate(Exception):
    pass


class PidFile:
    """A context manager python-daemon can enter in the detached process (DaemonContext's
    `pidfile`), or used directly by `run`."""

    def __init__(self, path):
        self.path = str(path)
        self.fd = None

    def acquire(self):
        """Lock and write our pid; AlreadyRunning(pid) if a live holder has it, CannotCreate if
        the file cannot be written."""
        try:
            self._acquire()
        except OSError as e:
            raise CannotCreate(e) from None

    def _acquire(self):
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.EACCES, errno.EAGAIN):
                    raise
                pid = holder(self.path)
                if pid is None:
                    continue  # its holder left just now
                raise AlreadyRunning(pid) from None
            if _same_file(fd, self.path):
                break
            os.close(fd)  # removed (or replaced) by its holder before we locked it
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self):
        """Remove the file, then let the lock go (in that order: see the module's docstring)."""
        if self.fd is None:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


def holder(path):
    """The pid of the process that holds path's lock (this home's supervisor), or None."""
    try:
        fd = os.open(str(path), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        # F_GETLK needs a lock type the file was opened for only to set it; asking about a
        # write lock reports any lock held.
        query = struct.pack(FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0).ljust(FLOCK_SIZE, b"\0")
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
    finally:
        os.close(fd)
    l_type, _, _, _, pid = struct.unpack_from(FLOCK, answer)
    return pid if l_type != fcntl.F_UNLCK and pid > 0 else None


def clear_stale(path):
    """Remove a pidfile nobody holds (left by a kill -9): under its lock, so never one a
    daemon starting right now has just taken."""
    try:
        fd = os.open(str(path), os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if _same_file(fd, path):
            os.unlink(path)
    except OSError:
        pass  # held: not stale after all
    finally:
        os.close(fd)


def _same_file(fd, path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)

"""What /proc says about processes: the tests' one place for it (Linux only, as the daemon)."""

import os
import subprocess


def _stat(pid):
    """The fields of /proc/PID/stat after the command name (which may hold spaces and ')')."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def state(pid):
    """The process's state letter (R, S, T, Z, ...), None if there is no such process."""
    try:
        return _stat(pid)[0]
    except OSError:
        return None


def alive(pid):
    """Process pid runs (a zombie does not count)."""
    return state(pid) not in (None, "Z")


def exists(pid):
    """There is a process pid, a zombie included."""
    return os.path.exists(f"/proc/{pid}")


def parent(pid):
    return int(_stat(pid)[1])


def children(pid):
    """The direct children of pid's main thread; [] once it is gone."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def tree(root):
    """root and every process below it, the children of all its threads included."""
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return pids


def descendants(pid):
    """Every process whose parent chain reaches pid, found from each process's parent (this
    also finds those a dead intermediate left behind re-parented below pid)."""
    kids = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                kids.setdefault(parent(entry), []).append(int(entry))
            except OSError:
                continue
    found, todo = [], [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cmdline(pid):
    """The raw command line (NUL-separated), b"" once the process is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def naming(text):
    """Pids of the live processes (this one aside) whose command line contains text."""
    needle = str(text).encode()
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and needle in cmdline(e)
            and alive(e) and int(e) != os.getpid()]


def rss_kib(pids):
    """The resident memory of pids together, in KiB (those gone count 0)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                total += int(next(line for line in f if line.startswith("VmRSS")).split()[1])
        except (OSError, StopIteration):
            pass
    return total


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def nofile(pid):
    """pid's open-files limit as "soft:hard"."""
    with open(f"/proc/{pid}/limits") as f:
        soft, hard = next(line for line in f if line.startswith("Max open files")).split()[3:5]
    return f"{soft}:{hard}"


def set_nofile(pid, limits):
    """Set the limit (soft:hard); raising a hard limit again needs more than root may have in
    a container, so tests lower the soft one only."""
    subprocess.run(["prlimit", "--pid", str(pid), f"--nofile={limits}"], check=True)

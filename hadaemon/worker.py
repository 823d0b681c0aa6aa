"""A worker's main: take one job, run the check, send one result, until recycled or orphaned."""

import errno
import os
import signal
import time

from . import execute, protocol, sshscope

_current = {"pid": None}


def _terminate(signum, frame):
    # The supervisor is stopping: take the running check (and what it started) down with us.
    if _current["pid"]:
        execute.signal_group(_current["pid"], signal.SIGKILL)
    os._exit(0)


def main(sock, home, max_jobs):
    signal.signal(signal.SIGTERM, _terminate)
    os.chdir(home)  # checks run in the home; without a cwd per run, execute takes posix_spawn
    for _ in range(max_jobs):
        data = sock.recv(protocol.MAX_MESSAGE)
        if not data:
            return  # the supervisor is gone
        job = protocol.decode(data)
        result = run_job(job, home)
        try:
            sock.send(protocol.encode_result(result))
        except (ValueError, OSError) as e:
            # Escaping can grow big output past one datagram, or past the socket's buffer where
            # the kernel caps it (EMSGSIZE): the check's result is lost, the reason is not.
            if not isinstance(e, ValueError) and e.errno != errno.EMSGSIZE:
                raise
            why = f"result too large to pass on: {e}"
            result.update(results=protocol.failed(job["host"], why), error=why)
            sock.send(protocol.encode_result(result))
    # Recycled: leaving is enough, the supervisor reaps us and forks a fresh worker.


def run_job(job, home):
    env = execute.base_environment(home, {"HA_CHECK": job["check"], "HA_HOST": job["host"]})
    outcome = execute.run(job["argv"], job["timeout"], job["limit"], env,
                          user=job.get("user") or None, on_start=_started,
                          stdin=job.get("stdin"))
    _current["pid"] = None
    read_at = time.monotonic()
    remote = job.get("remote")
    error = remote and outcome.rc is not None and sshscope.failure(
        outcome.rc, outcome.timed_out, outcome.errors, remote)
    if error:  # ssh's own failure: its message is the reason, the check's stderr means nothing
        return _answer(job, protocol.failed(job["host"], error), error, outcome, read_at)
    error = outcome.reason()
    results = []
    if not error:
        try:
            results = protocol.parse_output(outcome.output, outcome.rc, job["host"],
                                            job.get("statuses"))
        except protocol.Rejected as e:
            error = str(e)
    if error:
        stderr = outcome.errors.decode("utf-8", "replace").strip().splitlines()
        if stderr:
            error += f" (stderr: {stderr[0][:200]})"
        results = protocol.failed(job["host"], error)
    return _answer(job, results, error, outcome, read_at)


def _answer(job, results, error, outcome, read_at):
    return {"job": job["job"], "check": job["check"], "results": results, "error": error,
            "duration": outcome.duration, "read_at": read_at}


def _started(pid):
    _current["pid"] = pid

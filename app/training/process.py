"""Child processes of admin jobs: start them in their own session, find them again, stop them.

A child starts in a new session (``start_new_session``), so it is the leader of its own process
group (pgid = pid) and survives the server: a crash or restart of the server leaves it running,
and the restarted server finds it again by pid, command line and start time
(:func:`find_child`). Every child and its descendants carry ``SYNTUMOR_ADMIN_JOB=<job id>`` in
their environment, so leftovers of a job can be found even when their parent is gone
(:func:`job_processes`). :func:`stop_tree` stops a child gracefully (SIGINT, then SIGTERM),
then kills its whole process group and every descendant after a grace period.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

logger = logging.getLogger(__name__)

JOB_ENV = "SYNTUMOR_ADMIN_JOB"
START_TIME_TOLERANCE_S = 1.0
DEFAULT_GRACE_S = 5.0


@dataclass
class Child:
    """A running child: our own (``popen`` set) or one re-attached after a restart."""

    pid: int
    started: float
    popen: subprocess.Popen | None = None

    def running(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return is_alive(self.pid)

    @property
    def returncode(self) -> int | None:
        """The exit status when known (only for our own children)."""
        return self.popen.poll() if self.popen is not None else None


def is_alive(pid: int | None) -> bool:
    """True while ``pid`` is a process that has not exited (a zombie counts as exited)."""
    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def launch(
    command: list[str], *, env: dict[str, str], cwd: Path, log_path: Path, job_id: int
) -> Child:
    """Start ``command`` in a new session, its output appended to ``log_path``.

    Args:
        command: the program and its arguments.
        env: the environment (``SYNTUMOR_ADMIN_JOB`` is added).
        cwd: working folder.
        log_path: file receiving stdout and stderr.
        job_id: the job, recorded in the child's environment.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            command,
            cwd=cwd,
            env={**env, JOB_ENV: str(job_id)},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    try:
        started = psutil.Process(popen.pid).create_time()
    except psutil.NoSuchProcess:
        started = time.time()
    logger.info("job %s: started pid %s: %s", job_id, popen.pid, " ".join(command))
    return Child(popen.pid, started, popen)


def find_child(pid: int | None, command: list[str] | None, started: float | None) -> Child | None:
    """The child ``pid`` if it is still the process that was started (same command line and
    start time) and has not exited; None otherwise (gone, or the pid now belongs to another)."""
    if not pid or not command:
        return None
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        same_command = process.cmdline() == [str(part) for part in command]
        same_start = started is None or abs(process.create_time() - started) < (
            START_TIME_TOLERANCE_S
        )
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return Child(pid, process.create_time()) if same_command and same_start else None


def job_processes(job_id: int) -> list[psutil.Process]:
    """Every live process of ours whose environment marks it as part of job ``job_id``."""
    marker = str(job_id)
    found = []
    for process in psutil.process_iter(["pid", "status"]):
        if process.pid == os.getpid() or process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            if process.environ().get(JOB_ENV) == marker:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


def _tree(pid: int) -> list[psutil.Process]:
    """The process, its descendants and the rest of its process group."""
    members: dict[int, psutil.Process] = {}
    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
        root = psutil.Process(pid)
        members[root.pid] = root
        for child in root.children(recursive=True):
            members[child.pid] = child
    for process in psutil.process_iter():
        with contextlib.suppress(ProcessLookupError, PermissionError, psutil.Error):
            if process.pid != os.getpid() and os.getpgid(process.pid) == pid:
                members[process.pid] = process
    return list(members.values())


def _signal_all(processes: Iterable[psutil.Process], group: int | None, signum: int) -> None:
    if group:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signum)
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.send_signal(signum)


def _wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until the processes exit (zombies count as exited); returns those still alive."""
    deadline = time.monotonic() + timeout
    alive = list(processes)
    while alive:
        for process in alive:  # reap our own children so they do not linger as zombies
            with contextlib.suppress(psutil.Error, ChildProcessError):
                process.wait(timeout=0)
        alive = [p for p in alive if is_alive(p.pid)]
        if not alive or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    return alive


def _reap(popen: subprocess.Popen | None) -> None:
    if popen is not None:
        with contextlib.suppress(subprocess.TimeoutExpired, ChildProcessError):
            popen.wait(timeout=1.0)


def stop_tree(
    child: Child | None,
    *,
    job_id: int | None = None,
    grace_s: float = DEFAULT_GRACE_S,
) -> list[int]:
    """Stop a child and everything it started; returns the pids that were signalled.

    SIGINT first (Python and torchrun shut down cleanly), SIGTERM after half of ``grace_s``,
    SIGKILL to the process group and every remaining descendant after ``grace_s``. Processes
    marked with ``job_id`` in their environment are included (leftovers whose parent died).

    Args:
        child: the job's child process, if any is known.
        job_id: also stop every process marked with this job.
        grace_s: seconds before SIGKILL.
    """
    group = child.pid if child is not None else None
    processes = {p.pid: p for p in (_tree(child.pid) if child is not None else [])}
    if job_id is not None:
        processes.update({p.pid: p for p in job_processes(job_id)})
    if not processes:
        _reap(child.popen if child else None)
        return []
    members = list(processes.values())
    _signal_all(members, group, signal.SIGINT)
    alive = _wait_gone(members, grace_s / 2)
    if alive:
        _signal_all(alive, group, signal.SIGTERM)
        alive = _wait_gone(alive, grace_s / 2)
    if alive:
        logger.warning("killing %s after %.0f s", [p.pid for p in alive], grace_s)
        _signal_all(alive, group, signal.SIGKILL)
        _wait_gone(alive, 2.0)
    elif group:  # anything that joined the group meanwhile
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
    _reap(child.popen if child else None)
    return sorted(processes)

"""Which devices admin jobs may take: one job per GPU at a time, and one CPU job at a time.

The devices a running job holds are recorded in its :class:`~app.db.training_tables.TrainingRun`
(``devices``: GPU indices, ``[]`` for the CPU; ``host``: the machine), so the accounting is the
database's and survives a server restart.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.tables import Job, JobStatus
from app.db.training_tables import TrainingRun
from app.training.specs import ADMIN_KINDS

CPU_SLOTS = 1  # admin jobs on the CPU at once (they use every core)


def this_host() -> str:
    return socket.gethostname()


@dataclass(frozen=True)
class Usage:
    """Devices held by running admin jobs on one host."""

    gpus: frozenset[int]
    cpu_jobs: int


def usage(session: Session, host: str | None = None, *, exclude_job: int | None = None) -> Usage:
    """The GPUs and CPU slots held by running admin jobs on ``host`` (default: this one)."""
    host = host or this_host()
    rows = session.execute(
        select(TrainingRun.devices, TrainingRun.job_id)
        .join(Job, Job.id == TrainingRun.job_id)
        .where(
            Job.status == JobStatus.RUNNING,
            Job.kind.in_(ADMIN_KINDS),
            TrainingRun.host == host,
        )
    ).all()
    gpus: set[int] = set()
    cpu_jobs = 0
    for devices, job_id in rows:
        if job_id == exclude_job:
            continue
        if devices:
            gpus.update(int(d) for d in devices)
        else:
            cpu_jobs += 1
    return Usage(frozenset(gpus), cpu_jobs)


def holders(session: Session, host: str | None = None) -> tuple[dict[int, int], list[int]]:
    """Which running admin job holds each GPU of ``host`` (default: this one), and the ids of
    the jobs on its CPU."""
    rows = session.execute(
        select(TrainingRun.job_id, TrainingRun.devices)
        .join(Job, Job.id == TrainingRun.job_id)
        .where(
            Job.status == JobStatus.RUNNING,
            Job.kind.in_(ADMIN_KINDS),
            TrainingRun.host == (host or this_host()),
        )
    ).all()
    gpus = {int(device): job_id for job_id, devices in rows for device in (devices or [])}
    return gpus, [job_id for job_id, devices in rows if not devices]


def allocate(needed_gpus: int, gpu_indices: list[int], held: Usage) -> list[int] | None:
    """The devices for a job wanting ``needed_gpus`` GPUs (0: the CPU), or None while busy.

    Args:
        needed_gpus: GPUs the job asks for; 0 runs it on the CPU.
        gpu_indices: the GPUs of this machine.
        held: what running jobs hold.

    Returns:
        GPU indices (``[]`` for the CPU), or None when the job has to wait.

    Raises:
        ValueError: the job asks for more GPUs than the machine has (it would wait forever).
    """
    if needed_gpus <= 0:
        return [] if held.cpu_jobs < CPU_SLOTS else None
    if needed_gpus > len(gpu_indices):
        raise ValueError(
            f"the job asks for {needed_gpus} GPU(s) but this machine has {len(gpu_indices)}"
            + ("" if gpu_indices else " (nvidia-smi finds none): run it on the CPU (0 GPUs)")
        )
    free = [index for index in gpu_indices if index not in held.gpus]
    return free[:needed_gpus] if len(free) >= needed_gpus else None


def waiting_message(needed_gpus: int) -> str:
    if needed_gpus <= 0:
        return "queued: waiting for the CPU (another CPU job is running)"
    return f"queued: waiting for {needed_gpus} free GPU(s)"

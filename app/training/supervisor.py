"""The training supervisor: starts queued admin jobs when their devices are free, re-attaches
jobs after a server restart.

One thread in the server (started by the admin router's lifespan when the embedded worker is
on) looks at the queued ``train`` and ``evaluate`` jobs in order; a job whose devices are free
(:mod:`app.training.devices`: one job per GPU, one CPU job) is claimed, its devices are
recorded, and a thread of its own runs it through :meth:`app.jobs.worker.Worker.run_job` (the handler
of :mod:`app.training.jobs` launches the child and follows it). The others stay queued,
their message saying what they wait for.

At start, and every few seconds, running admin jobs whose worker process is gone (the server
was killed or restarted) are taken over: the handler re-attaches to a child that still runs
(same pid, command line and start time) and follows it to its end, or — when the child is
gone — reads what it left and marks the job succeeded or failed with the reason. A job asked
to stop meanwhile is stopped. Nothing is requeued: a training run is not silently started
again.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db.tables import Job, JobStatus
from app.db.training_tables import TrainingRun
from app.jobs.worker import Worker, new_worker_id
from app.settings import Settings
from app.training import devices as training_devices
from app.training.gpu import Gpu, query_gpus
from app.training.process import find_child, stop_tree
from app.training.specs import ADMIN_KINDS
from app.volumes.storage import Storage

logger = logging.getLogger(__name__)

RECOVER_EVERY_S = 5.0


def utcnow() -> datetime:
    return datetime.now(UTC)


def worker_alive(worker_id: str | None) -> bool | None:
    """True/False for a worker on this host (its pid checked); None for another host."""
    parts = (worker_id or "").split(":")
    if len(parts) < 2 or not parts[1].isdigit():
        return False
    if parts[0] != socket.gethostname():
        return None
    from app.training.process import is_alive

    return is_alive(int(parts[1]))


def _note(job: Job, line: str) -> None:
    job.log = (job.log or "") + f"{utcnow():%H:%M:%S} {line}\n"


class TrainingSupervisor:
    """Schedules and re-attaches admin jobs; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        session_factory: sessionmaker[Session],
        storage: Storage,
        *,
        gpus: Callable[[], list[Gpu]] = query_gpus,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.storage = storage
        self.gpus = gpus
        self.worker_id = new_worker_id("training")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._jobs: dict[int, threading.Thread] = {}
        self._lock = threading.Lock()
        self._last_recovery = 0.0

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.run_forever, name="syntumor-training", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop scheduling. Children keep running: a restarted server re-attaches them."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run_forever(self) -> None:
        while not self._stop.is_set():
            try:
                if time.monotonic() - self._last_recovery > RECOVER_EVERY_S:
                    self.recover()
                self.schedule_once()
            except Exception:  # the loop survives database hiccups
                logger.exception("training supervisor error")
            self._stop.wait(self.settings.worker_poll_s)

    def running_jobs(self) -> list[int]:
        with self._lock:
            return [job_id for job_id, thread in self._jobs.items() if thread.is_alive()]

    # --- scheduling -----------------------------------------------------------------------------

    def schedule_once(self) -> list[int]:
        """Start the queued admin jobs whose devices are free; returns their ids."""
        indices = [gpu.index for gpu in self.gpus()]
        started = []
        with self.session_factory() as session:
            queued = session.scalars(
                select(Job)
                .where(Job.status == JobStatus.QUEUED, Job.kind.in_(ADMIN_KINDS))
                .order_by(Job.id)
            ).all()
            held = training_devices.usage(session)
            for job in queued:
                needed = int((job.params or {}).get("gpus", 0))
                try:
                    devices = training_devices.allocate(needed, indices, held)
                except ValueError as error:
                    self._fail(job, str(error))
                    continue
                if devices is None:
                    waiting = training_devices.waiting_message(needed)
                    if job.message != waiting:
                        job.message = waiting
                    continue
                if self._claim(session, job, devices):
                    started.append(job.id)
                    held = training_devices.Usage(
                        held.gpus | frozenset(devices), held.cpu_jobs + (0 if devices else 1)
                    )
            session.commit()
        for job_id in started:
            self._spawn(job_id)
        return started

    def _claim(self, session: Session, job: Job, devices: list[int]) -> bool:
        now = utcnow()
        claimed = session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status == JobStatus.QUEUED)
            .values(
                status=JobStatus.RUNNING,
                worker_id=self.worker_id,
                started_at=now,
                heartbeat_at=now,
                attempts=Job.attempts + 1,
                message="starting",
            )  # fmt: skip
            .execution_options(synchronize_session=False)
        ).rowcount
        if claimed != 1:
            return False
        run = session.scalar(select(TrainingRun).where(TrainingRun.job_id == job.id))
        if run is None:
            run_dir = str(self.storage.result_dir(job.id))
            run = TrainingRun(job_id=job.id, kind=job.kind, run_dir=run_dir)
            session.add(run)
        run.devices, run.host = devices, training_devices.this_host()
        session.flush()
        return True

    def _fail(self, job: Job, reason: str) -> None:
        job.status, job.error, job.message = JobStatus.FAILED, reason, "failed"
        job.finished_at = utcnow()
        _note(job, f"failed: {reason}")

    def _spawn(self, job_id: int) -> None:
        worker = Worker(self.settings, self.session_factory, self.storage,
                        worker_id=self.worker_id, kinds=ADMIN_KINDS)  # fmt: skip

        def run() -> None:
            try:
                worker.run_job(job_id)
            finally:
                with self._lock:
                    self._jobs.pop(job_id, None)

        thread = threading.Thread(target=run, name=f"syntumor-job-{job_id}", daemon=True)
        with self._lock:
            self._jobs[job_id] = thread
        thread.start()

    # --- recovery -------------------------------------------------------------------------------

    def recover(self) -> list[int]:
        """Take over running admin jobs whose worker is gone; returns the ids taken over."""
        self._last_recovery = time.monotonic()
        mine = set(self.running_jobs())
        stale_before = utcnow() - timedelta(seconds=self.settings.stale_job_s)
        resume = []
        with self.session_factory() as session:
            running = session.scalars(
                select(Job).where(Job.status == JobStatus.RUNNING, Job.kind.in_(ADMIN_KINDS))
            ).all()
            for job in running:
                if job.id in mine:
                    continue
                alive = worker_alive(job.worker_id)
                if alive and job.worker_id != self.worker_id:
                    continue  # another live worker on this host runs it
                run = session.scalar(select(TrainingRun).where(TrainingRun.job_id == job.id))
                ours = run is not None and run.host in (None, training_devices.this_host())
                if alive is None or not ours:
                    heartbeat = job.heartbeat_at
                    if heartbeat is not None and heartbeat.tzinfo is None:
                        heartbeat = heartbeat.replace(tzinfo=UTC)
                    if heartbeat is None or heartbeat < stale_before:
                        self._fail(
                            job, f"interrupted: its worker {job.worker_id} stopped answering"
                        )
                    continue
                if self._take_over(job, run):
                    resume.append(job.id)
            session.commit()
        for job_id in resume:
            self._spawn(job_id)
        if resume:
            logger.warning("training supervisor took over jobs %s", resume)
        return resume

    def _take_over(self, job: Job, run: TrainingRun) -> bool:
        """Re-claim an interrupted job for this supervisor (False when it ends here instead)."""
        child = find_child(run.pid, run.command, run.process_started)
        if job.cancel_requested and child is None:
            stop_tree(None, job_id=job.id, grace_s=2.0)
            job.status, job.error, job.message = (
                JobStatus.CANCELLED,
                "cancelled by request",
                "cancelled",
            )
            job.finished_at = utcnow()
            _note(job, "cancelled while the server was down")
            return False
        where = f"process {run.pid} still runs" if child else (
            f"process {run.pid} is gone" if run.pid else "its process had not started")  # fmt: skip
        _note(job, f"server restarted: taking the job over ({where})")
        job.worker_id, job.heartbeat_at = self.worker_id, utcnow()
        return True

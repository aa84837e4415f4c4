"""The job worker: claims queued jobs from the database and runs them.

Jobs are rows of :class:`app.models.Job`. A worker claims the oldest queued job atomically
(``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL; a conditional ``UPDATE`` that only one writer
can win on both databases), runs its handler, and records progress, log lines, heartbeats and the
result. The embedded worker is one thread in the server that keeps loaded models warm;
``syntumor worker`` runs the same loop as a process on any machine that reaches the database and
the data folder.

Interrupted jobs (a worker killed mid-job) are found by :meth:`Worker.recover`: a running job
whose worker process is gone (same host) or whose heartbeat is older than ``stale_job_s`` is
queued again while it has attempts left, else marked failed.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.models import FINISHED_STATUSES, Job, JobStatus
from app.settings import Settings
from app.storage import Storage

logger = logging.getLogger(__name__)

MAX_LOG_CHARS = 200_000
PROGRESS_WRITE_INTERVAL_S = 0.5

Handler = Callable[["JobContext"], dict[str, Any]]
HANDLERS: dict[str, Handler] = {}


def job_handler(kind: str) -> Callable[[Handler], Handler]:
    """Register the function that runs jobs of ``kind``."""

    def register(function: Handler) -> Handler:
        HANDLERS[kind] = function
        return function

    return register


class JobCancelled(Exception):
    """Raised inside a handler when the job's cancellation was requested."""


class JobFailed(Exception):
    """A handler's clean failure: the message is shown to the user as the job's error."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:  # SQLite returns naive datetimes
        return moment.replace(tzinfo=UTC)
    return moment


def new_worker_id(label: str = "worker") -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{label}:{uuid.uuid4().hex[:8]}"


def _worker_alive(worker_id: str | None) -> bool | None:
    """True/False when the worker ran on this host (its pid checked); None when unknown."""
    if not worker_id:
        return False
    parts = worker_id.split(":")
    if len(parts) < 2 or parts[0] != socket.gethostname():
        return None
    try:
        pid = int(parts[1])
    except ValueError:
        return None
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class JobContext:
    """What a handler gets: its job's parameters and ways to report back."""

    job_id: int
    kind: str
    params: dict[str, Any]
    owner_id: int | None
    settings: Settings
    storage: Storage
    session_factory: sessionmaker[Session]
    cache: dict[str, Any]
    _last_write: float = 0.0
    _lines: list[str] = field(default_factory=list)

    def progress(self, fraction: float, message: str | None = None, *, force: bool = False) -> None:
        """Record progress in [0, 1]; raises JobCancelled if a cancel was requested."""
        now = time.monotonic()
        if not force and now - self._last_write < PROGRESS_WRITE_INTERVAL_S:
            return
        self._last_write = now
        with self.session_factory() as session:
            job = session.get(Job, self.job_id)
            job.progress = float(min(1.0, max(0.0, fraction)))
            if message is not None:
                job.message = message[:300]
            job.heartbeat_at = utcnow()
            self._flush_log(job)
            cancelled = job.cancel_requested
            session.commit()
        if cancelled:
            raise JobCancelled()

    def log(self, line: str) -> None:
        """Append a line to the job's log (written with the next progress update)."""
        self._lines.append(f"{utcnow():%H:%M:%S} {line}")
        logger.info("job %s: %s", self.job_id, line)

    def check_cancelled(self) -> None:
        """Raise JobCancelled now if a cancel was requested (also beats the heartbeat)."""
        with self.session_factory() as session:
            job = session.get(Job, self.job_id)
            job.heartbeat_at = utcnow()
            self._flush_log(job)
            cancelled = job.cancel_requested
            session.commit()
        if cancelled:
            raise JobCancelled()

    def _flush_log(self, job: Job) -> None:
        if self._lines:
            job.log = ((job.log or "") + "\n".join(self._lines) + "\n")[-MAX_LOG_CHARS:]
            self._lines.clear()


class Worker:
    """Claims and runs jobs; one job at a time."""

    def __init__(
        self,
        settings: Settings,
        session_factory: sessionmaker[Session],
        storage: Storage,
        *,
        worker_id: str | None = None,
        kinds: tuple[str, ...] | None = None,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.storage = storage
        self.worker_id = worker_id or new_worker_id()
        self.kinds = kinds
        self.cache: dict[str, Any] = {}  # loaded models, kept warm between jobs
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._current_job: int | None = None
        self._last_recovery = 0.0

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Run the loop in a daemon thread (the embedded worker)."""
        self._thread = threading.Thread(
            target=self.run_forever, name="syntumor-worker", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run_forever(self) -> None:
        self.recover()
        while not self._stop.is_set():
            try:
                ran = self.run_once()
            except Exception:  # the loop survives database hiccups
                logger.exception("worker loop error")
                ran = False
            if not ran:
                self._stop.wait(self.settings.worker_poll_s)
            if time.monotonic() - self._last_recovery > self.settings.stale_job_s / 2:
                self.recover()

    # --- claiming -------------------------------------------------------------------------------

    def claim(self) -> int | None:
        """Atomically take the oldest queued job; returns its id or None."""
        with self.session_factory() as session:
            query = select(Job.id).where(Job.status == JobStatus.QUEUED)
            if self.kinds:
                query = query.where(Job.kind.in_(self.kinds))
            query = query.order_by(Job.id).limit(1).with_for_update(skip_locked=True)
            job_id = session.scalar(query)
            if job_id is None:
                return None
            now = utcnow()
            claimed = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
                .values(
                    status=JobStatus.RUNNING,
                    worker_id=self.worker_id,
                    started_at=now,
                    heartbeat_at=now,
                    attempts=Job.attempts + 1,
                    message="started",
                )
            ).rowcount
            session.commit()
            return job_id if claimed == 1 else None

    def run_once(self) -> bool:
        """Claim and run one job; False when none was queued."""
        job_id = self.claim()
        if job_id is None:
            return False
        self.run_job(job_id)
        return True

    # --- running --------------------------------------------------------------------------------

    def run_job(self, job_id: int) -> None:
        with self.session_factory() as session:
            job = session.get(Job, job_id)
            context = JobContext(
                job_id=job.id,
                kind=job.kind,
                params=dict(job.params or {}),
                owner_id=job.owner_id,
                settings=self.settings,
                storage=self.storage,
                session_factory=self.session_factory,
                cache=self.cache,
            )
        handler = HANDLERS.get(context.kind)
        self._current_job = job_id
        beat = threading.Thread(target=self._heartbeat, args=(job_id,), daemon=True)
        beat.start()
        try:
            if handler is None:
                raise JobFailed(f"no handler for jobs of kind {context.kind!r}")
            context.log(f"{context.kind} job started by {self.worker_id}")
            result = handler(context)
        except JobCancelled:
            self._finish(context, JobStatus.CANCELLED, None, "cancelled by request")
        except (JobFailed, ValueError) as error:
            self._finish(context, JobStatus.FAILED, None, str(error))
        except Exception as error:
            logger.exception("job %s crashed", job_id)
            context.log(traceback.format_exc(limit=5))
            self._finish(context, JobStatus.FAILED, None, f"internal error: {error}")
        else:
            self._finish(context, JobStatus.SUCCEEDED, result, None)
        finally:
            self._current_job = None
            beat.join(1.0)

    def _heartbeat(self, job_id: int) -> None:
        interval = self.settings.job_heartbeat_s
        while self._current_job == job_id and not self._stop.wait(interval):
            if self._current_job != job_id:
                break
            try:
                with self.session_factory() as session:
                    session.execute(
                        update(Job)
                        .where(Job.id == job_id, Job.status == JobStatus.RUNNING)
                        .values(heartbeat_at=utcnow())
                    )
                    session.commit()
            except Exception:
                logger.exception("heartbeat of job %s failed", job_id)

    def _finish(
        self, context: JobContext, status: str, result: dict | None, error: str | None
    ) -> None:
        with self.session_factory() as session:
            job = session.get(Job, context.job_id)
            if error:
                context.log(f"{status}: {error}")
            context._flush_log(job)
            job.status = status
            job.result = result
            job.error = error
            job.finished_at = utcnow()
            job.message = {"succeeded": "done", "cancelled": "cancelled"}.get(status, "failed")
            if status == JobStatus.SUCCEEDED:
                job.progress = 1.0
            session.commit()

    # --- recovery -------------------------------------------------------------------------------

    def recover(self) -> list[int]:
        """Requeue or fail running jobs whose worker is gone; returns the ids touched."""
        self._last_recovery = time.monotonic()
        stale_before = utcnow() - timedelta(seconds=self.settings.stale_job_s)
        touched = []
        with self.session_factory() as session:
            running = session.scalars(
                select(Job).where(Job.status == JobStatus.RUNNING).with_for_update(skip_locked=True)
            ).all()
            for job in running:
                if job.id == self._current_job and job.worker_id == self.worker_id:
                    continue
                alive = _worker_alive(job.worker_id)
                if job.worker_id == self.worker_id:
                    alive = False  # this worker is not running it: a leftover of this process
                heartbeat = _aware(job.heartbeat_at)
                if alive is True or (alive is None and heartbeat and heartbeat > stale_before):
                    continue
                touched.append(job.id)
                note = f"interrupted (worker {job.worker_id} gone)"
                if job.cancel_requested:
                    job.status, job.error = JobStatus.CANCELLED, "cancelled by request"
                    job.finished_at = utcnow()
                elif job.attempts < self.settings.max_job_attempts:
                    job.status, job.message = JobStatus.QUEUED, f"{note}; queued again"
                    job.progress = 0.0
                else:
                    job.status, job.error = (
                        JobStatus.FAILED,
                        f"{note} after {job.attempts} attempts",
                    )
                    job.finished_at = utcnow()
                    job.message = "failed"
                job.log = (job.log or "") + f"{utcnow():%H:%M:%S} {note}\n"
            session.commit()
        if touched:
            logger.warning("recovered interrupted jobs %s", touched)
        return touched


def request_cancel(session: Session, job: Job) -> Job:
    """Cancel a queued job now, or ask a running one to stop at its next progress report."""
    if job.status in FINISHED_STATUSES:
        return job
    if job.status == JobStatus.QUEUED:
        job.status = JobStatus.CANCELLED
        job.finished_at = utcnow()
        job.message = "cancelled"
        job.error = "cancelled by request"
    job.cancel_requested = True
    session.flush()
    return job

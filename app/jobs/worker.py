"""The job worker: claims queued jobs from the database and runs them.

Jobs are rows of :class:`app.db.tables.Job`. A worker claims the oldest queued job atomically
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
import shutil
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

from app.db.tables import FINISHED_STATUSES, Job, JobStatus
from app.settings import Settings
from app.volumes.storage import Storage

logger = logging.getLogger(__name__)

MAX_LOG_CHARS = 200_000
PROGRESS_WRITE_INTERVAL_S = 0.5

Handler = Callable[["JobContext"], dict[str, Any]]
HANDLERS: dict[str, Handler] = {}
# Kinds run by their own supervisor (training and evaluation: child processes, see
# app.training.supervisor): a worker claims them only when it names them in ``kinds``,
# and never recovers them (the supervisor re-attaches or fails them).
SUPERVISED_KINDS: set[str] = set()


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


# Tells this process from an earlier one with the same pid on the same host name (a container
# restarted: its server is pid 1 again).
PROCESS_TOKEN = uuid.uuid4().hex[:8]
MAX_HOST_CHARS = 48  # a worker id fits the 100 characters of jobs.worker_id


def _host() -> str:
    return socket.gethostname()[:MAX_HOST_CHARS]


def new_worker_id(label: str = "worker") -> str:
    """``host:pid:label:token.random``: enough for :func:`_worker_alive` to judge it later."""
    return f"{_host()}:{os.getpid()}:{label[:16]}:{PROCESS_TOKEN}.{uuid.uuid4().hex[:6]}"


def _worker_alive(worker_id: str | None) -> bool | None:
    """True/False when the worker ran on this host (its pid checked); None when unknown.

    A worker id with this process's pid but another process token belongs to an earlier
    process that had the same pid: gone.
    """
    if not worker_id:
        return False
    parts = worker_id.split(":")
    if len(parts) < 2 or parts[0] != _host():
        return None
    try:
        pid = int(parts[1])
    except ValueError:
        return None
    if pid == os.getpid():
        return len(parts) < 4 or "." not in parts[-1] or parts[-1].startswith(PROCESS_TOKEN + ".")
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
    worker_id: str = ""
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
            elif SUPERVISED_KINDS:
                query = query.where(Job.kind.not_in(SUPERVISED_KINDS))
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
                worker_id=self.worker_id,
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
        """Record the outcome, unless the job was meanwhile taken from this worker."""
        with self.session_factory() as session:
            job = session.get(Job, context.job_id, with_for_update=True)
            if job.status != JobStatus.RUNNING or job.worker_id != self.worker_id:
                logger.warning(
                    "job %s is %s under worker %s now; not recording this worker's %s",
                    job.id, job.status, job.worker_id, status,
                )  # fmt: skip
                return
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
        """Requeue or fail running jobs whose worker is gone; returns the ids touched.

        A running job's worker is gone when the job is a leftover of this very worker (claimed
        but not being run), when it ran on this host and its process has exited, or, on any
        host, when its heartbeat is older than ``stale_job_s`` (a worker on another machine
        that died, or a pid since reused by another process). Such a job is queued again while
        it has attempts left (``max_job_attempts``), else failed; a job whose cancellation was
        asked for is cancelled. Supervised kinds (training) are left to their supervisor.
        """
        self._last_recovery = time.monotonic()
        stale_before = utcnow() - timedelta(seconds=self.settings.stale_job_s)
        touched = []
        with self.session_factory() as session:
            running = session.scalars(
                select(Job).where(Job.status == JobStatus.RUNNING).with_for_update(skip_locked=True)
            ).all()
            for job in running:
                if job.kind in SUPERVISED_KINDS or not self._worker_gone(job, stale_before):
                    continue
                touched.append(job.id)
                _requeue_or_fail(job, self.settings.max_job_attempts)
            session.commit()
        for job_id in touched:  # a retry starts afresh; a failed job keeps no partial output
            shutil.rmtree(self.storage.results_dir / str(job_id), ignore_errors=True)
        if touched:
            logger.warning("recovered interrupted jobs %s", touched)
        return touched

    def _worker_gone(self, job: Job, stale_before: datetime) -> bool:
        if job.worker_id == self.worker_id:
            return job.id != self._current_job  # claimed here, not running here: a leftover
        heartbeat = _aware(job.heartbeat_at or job.started_at)
        if heartbeat is None or heartbeat < stale_before:
            return True
        return _worker_alive(job.worker_id) is False


def _requeue_or_fail(job: Job, max_attempts: int) -> None:
    """Put an interrupted job back in the queue, or end it (cancelled, or failed when its
    attempts are used up); the job's log says what happened."""
    note = f"interrupted (worker {job.worker_id} gone)"
    now = utcnow()
    if job.cancel_requested:
        job.status, job.error, job.message = JobStatus.CANCELLED, "cancelled by request", note
        job.finished_at = now
    elif job.attempts < max_attempts:
        job.status, job.message = JobStatus.QUEUED, f"{note}; queued again"
        job.progress, job.worker_id, job.heartbeat_at = 0.0, None, None
    else:
        job.status, job.message = JobStatus.FAILED, "failed"
        job.error = (
            f"{note} after {job.attempts} of {max_attempts} attempt(s); start it again once "
            "the cause (e.g. the server running out of memory) is fixed"
        )
        job.finished_at = now
    job.log = (job.log or "") + f"{now:%H:%M:%S} {note}\n"


def request_cancel(session: Session, job: Job) -> Job:
    """Cancel a queued job now, or ask a running one to stop at its next progress report.

    Both are conditional updates, so a worker claiming the job at the same moment never has
    its ``running`` overwritten by a stale ``cancelled`` (it sees the request instead).
    """
    if job.status in FINISHED_STATUSES:
        return job
    now = utcnow()
    dequeued = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == JobStatus.QUEUED)
        .values(
            status=JobStatus.CANCELLED,
            cancel_requested=True,
            finished_at=now,
            message="cancelled",
            error="cancelled by request",
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if not dequeued:
        session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status == JobStatus.RUNNING)
            .values(cancel_requested=True, message="stopping at the next progress report")
            .execution_options(synchronize_session=False)
        )
    session.flush()
    session.refresh(job)
    return job

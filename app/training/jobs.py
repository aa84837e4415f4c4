"""Job handlers for training and evaluation (admin): each runs a child process and follows it.

``train`` runs ``python -m app.cli train …`` (under torchrun for several GPUs), ``evaluate``
runs ``python -m app.cli evaluate …``; both in the job's folder ``<data_dir>/results/<job id>``.
The handler's thread polls the child about twice a second: new lines of ``metrics.jsonl`` become
:class:`~app.db.training_tables.TrainingPoint` rows (the curves), new lines of the child's output
go to the job's log, progress and message follow the steps (or the cases scored), and a cancel
request stops the child's whole process tree. Offsets of what was read are stored with what was
read, so after a server restart a child that is still running is re-attached and followed from
where it was left (see :mod:`app.training.supervisor`).

The handlers are registered with :func:`app.jobs.worker.job_handler`; the kinds are
:data:`app.jobs.worker.SUPERVISED_KINDS`, so the generic worker leaves them to the training
supervisor (or to a ``syntumor worker --kind train --kind evaluate`` process).
"""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from app.db.tables import Job, User
from app.db.training_tables import TrainingPoint, TrainingRun
from app.jobs.worker import SUPERVISED_KINDS, JobCancelled, JobContext, JobFailed, job_handler
from app.training import devices as training_devices
from app.training import results as training_results
from app.training import specs as training_specs
from app.training.gpu import query_gpus
from app.training.process import Child, find_child, launch, stop_tree

logger = logging.getLogger(__name__)

POLL_S = 0.5
WAIT_FOR_DEVICE_S = 2.0
MAX_READ_BYTES = 1 << 20
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

SUPERVISED_KINDS.update(training_specs.ADMIN_KINDS)


def read_new_lines(path: Path, offset: int) -> tuple[list[str], int]:
    """Complete lines of ``path`` after byte ``offset``, and the offset after them."""
    try:
        size = path.stat().st_size
    except OSError:
        return [], offset
    if size < offset:  # the file was replaced: start again
        offset = 0
    with path.open("rb") as stream:
        stream.seek(offset)
        data = stream.read(MAX_READ_BYTES)
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    text = data[: end + 1].decode("utf-8", errors="replace")
    return text.splitlines(), offset + end + 1


def clean_line(line: str) -> str:
    """A line of terminal output as plain text (colours gone, the last of ``\\r`` rewrites)."""
    return _ANSI.sub("", line.rsplit("\r", 1)[-1]).rstrip()


def point_from_record(run_id: int, record: dict[str, Any]) -> TrainingPoint:
    """A curve point from one line of ``metrics.jsonl`` (NaN and infinities become None)."""
    return TrainingPoint(
        run_id=run_id,
        event=str(record.get("event", "train"))[:16],
        step=int(record.get("step", 0)),
        epoch=int(record.get("epoch", 0)),
        loss=_number(record.get("loss")),
        lr=_number(record.get("lr")),
        liver_dice=_number(record.get("liver_dice")),
        tumor_dice=_number(record.get("tumor_dice")),
        seconds=_number(record.get("seconds")),
    )


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


class ChildJob:
    """The parts common to ``train`` and ``evaluate``: devices, the child, following, stopping."""

    kind = ""

    def __init__(self, context: JobContext) -> None:
        self.context = context
        self.job_id = context.job_id
        self.params = context.params
        self.factory = context.session_factory
        self.data_dir = Path(context.settings.data_dir).resolve()
        with self.factory() as session:
            run = session.scalar(select(TrainingRun).where(TrainingRun.job_id == self.job_id))
            if run is None:  # a job made without the admin API
                run_dir = str(context.storage.result_dir(self.job_id))
                run = TrainingRun(job_id=self.job_id, kind=self.kind, run_dir=run_dir, devices=[])
                session.add(run)
                session.commit()
            self.run_id = run.id
            self.run_dir = Path(run.run_dir)
            self.earlier_pid = run.pid
            self.command = run.command
            self.process_started = run.process_started
        self.run_dir.mkdir(parents=True, exist_ok=True)

    # --- the whole job ----------------------------------------------------------------------

    def execute(self) -> dict[str, Any]:
        child: Child | None = None
        if self.earlier_pid:
            child = find_child(self.earlier_pid, self.command, self.process_started)
            if child is None:
                self.context.log(f"process {self.earlier_pid} is gone: reading what it left")
                self.follow_files()
                stop_tree(None, job_id=self.job_id)  # leftovers of its tree, if any
                return self.finish(None, reattached=True)
            self.context.log(f"re-attached to process {child.pid} after a restart")
        else:
            devices = self.devices()
            command = self.prepare(devices)
            child = self.start(command, devices)
        try:
            self.follow(child)
        except BaseException as error:  # cancelled, or following failed: no orphan is left
            why = "cancel requested" if isinstance(error, JobCancelled) else f"error: {error}"
            self.context.log(f"stopping process {child.pid} and its children ({why})")
            stopped = stop_tree(child, job_id=self.job_id)
            self.record_exit(child)
            self.context.log(f"stopped processes {stopped}")
            raise
        self.record_exit(child)
        stop_tree(None, job_id=self.job_id)
        return self.finish(child, reattached=child.popen is None)

    def devices(self) -> list[int]:
        """The devices the supervisor assigned, or (run by a plain worker) wait for free ones."""
        needed = int(self.params.get("gpus", 0))
        while True:
            with self.factory() as session:
                run = session.get(TrainingRun, self.run_id)
                if run.host == training_devices.this_host():
                    return list(run.devices or [])
                indices = [gpu.index for gpu in query_gpus()]
                held = training_devices.usage(session, exclude_job=self.job_id)
                try:
                    chosen = training_devices.allocate(needed, indices, held)
                except ValueError as error:
                    raise JobFailed(str(error)) from None
                if chosen is not None:
                    run.devices, run.host = chosen, training_devices.this_host()
                    session.commit()
                    return chosen
            self.context.progress(0.0, training_devices.waiting_message(needed), force=True)
            time.sleep(WAIT_FOR_DEVICE_S)

    def start(self, command: list[str], devices: list[int]) -> Child:
        child = launch(command, env=training_specs.child_environment(devices),
                       cwd=training_specs.REPO_ROOT, log_path=self.run_dir / training_specs.RUN_LOG,
                       job_id=self.job_id)  # fmt: skip
        where = f"GPU {','.join(map(str, devices))}" if devices else "the CPU"
        with self.factory() as session:  # no cancel check here: the caller stops the child
            run = session.get(TrainingRun, self.run_id)
            run.command, run.pid, run.process_started = command, child.pid, child.started
            run.launched_at = datetime.now(UTC)
            job = session.get(Job, self.job_id)
            job.pid, job.message = child.pid, f"preparing data (process {child.pid} on {where})"
            session.commit()
        self.context.log(f"started process {child.pid} on {where}: {' '.join(command)}")
        return child

    def follow(self, child: Child) -> None:
        while True:
            running = child.running()
            self.follow_files()
            if not running:
                return
            self.context.check_cancelled()
            time.sleep(POLL_S)

    def follow_files(self) -> None:
        """Move new output lines into the job's log (and, for training, new metric points)."""
        with self.factory() as session:
            run = session.get(TrainingRun, self.run_id)
            job = session.get(Job, self.job_id)
            lines, run.log_offset = read_new_lines(
                self.run_dir / training_specs.RUN_LOG, run.log_offset
            )
            cleaned = [clean_line(line) for line in lines]
            cleaned = [line for line in cleaned if line]
            if cleaned:
                job.log = ((job.log or "") + "\n".join(cleaned) + "\n")[-200_000:]
            update = self.read_progress(session, run)
            if update is not None:
                job.progress, job.message = update[0], update[1][:300]
            job.heartbeat_at = datetime.now(UTC)
            session.commit()

    def record_exit(self, child: Child) -> None:
        with self.factory() as session:
            session.get(TrainingRun, self.run_id).exit_code = child.returncode
            session.commit()

    def last_output(self, lines: int = 3) -> str:
        try:
            text = (self.run_dir / training_specs.RUN_LOG).read_text(errors="replace")
        except OSError:
            return "(no output)"
        kept = [clean_line(line) for line in text.splitlines()]
        kept = [line for line in kept if line]
        return " | ".join(kept[-lines:]) or "(no output)"

    def failure(self, what: str, child: Child | None, reattached: bool) -> JobFailed:
        code = child.returncode if child is not None else None
        if code not in (None, 0):
            why = f"exited with status {code}"
        elif reattached and child is None:
            why = "ended while the server was down (it was not watched when it stopped)"
        else:
            why = "ended without finishing"
        return JobFailed(f"the {what} process {why}; last output: {self.last_output()}")

    # --- per kind ----------------------------------------------------------------------------

    def prepare(self, devices: list[int]) -> list[str]:
        raise NotImplementedError

    def read_progress(self, session, run: TrainingRun) -> tuple[float, str] | None:
        raise NotImplementedError

    def finish(self, child: Child | None, *, reattached: bool) -> dict[str, Any]:
        raise NotImplementedError


class TrainJob(ChildJob):
    kind = "train"

    def prepare(self, devices: list[int]) -> list[str]:
        self.context.progress(0.0, "preparing the data list", force=True)
        with self.factory() as session:
            data_file, root, cases = training_specs.training_data(
                session, self.context.storage, self.params, self.run_dir
            )
            run = session.get(TrainingRun, self.run_id)
            run.total_steps = training_specs.steps_planned(self.params, cases)
            session.commit()
        arguments = training_specs.train_arguments(self.params, self.run_dir, data_file, root)
        return training_specs.child_command(arguments, max(1, len(devices)))

    def read_progress(self, session, run: TrainingRun) -> tuple[float, str] | None:
        lines, run.metrics_offset = read_new_lines(
            self.run_dir / "metrics.jsonl", run.metrics_offset
        )
        latest = None
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            latest = point_from_record(run.id, record)
            session.add(latest)
        if latest is None:
            return None
        total = run.total_steps or 0
        fraction = min(1.0, latest.step / total) if total else 0.0
        if latest.event == "validation":
            organ, tumor = latest.liver_dice or 0.0, latest.tumor_dice or 0.0
            message = f"validation at step {latest.step}: organ Dice {organ:.3f}, tumor {tumor:.3f}"
        else:
            loss = f"{latest.loss:.4f}" if latest.loss is not None else "nan"
            steps = f"{latest.step}/{total or '?'}"
            message = f"step {steps} · epoch {latest.epoch + 1} · loss {loss}"
        return fraction, message

    def finish(self, child: Child | None, *, reattached: bool) -> dict[str, Any]:
        config = training_results.read_json(self.run_dir / "config.json") or {}
        finished = config.get("status") == "finished" and (self.run_dir / "model.pt").is_file()
        if not finished or (child is not None and child.returncode not in (None, 0)):
            raise self.failure("training", child, reattached)
        with self.factory() as session:
            job = session.get(Job, self.job_id)
            owner = session.get(User, job.owner_id) if job.owner_id else None
            about = {"id": self.job_id, "owner": owner.username if owner else "unknown",
                     "finished": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
        self.context.progress(1.0, "registering the model", force=True)
        model = training_results.register_trained_model(
            self.params, self.run_dir, self.data_dir, about
        )
        with self.factory() as session:
            session.get(TrainingRun, self.run_id).model_name = model["name"]
            session.commit()
        self.context.log(f"registered model {model['name']!r} ({model['folder']})")
        result = config.get("result") or {}
        return training_results._finite({
            "model": model["name"], "model_card": model["card"], "arch": model["arch"],
            "steps": result.get("steps"), "epochs": result.get("epochs"),
            "best_score": result.get("best_score"), "best_step": result.get("best_step"),
            "last_loss": result.get("last_loss"), "seconds": result.get("seconds"),
            "device": result.get("device"), "world_size": result.get("world_size"),
            "run_dir": str(self.run_dir),
        })  # fmt: skip


class EvaluateJob(ChildJob):
    kind = "evaluate"

    def prepare(self, devices: list[int]) -> list[str]:
        self.context.progress(0.0, "preparing the cases", force=True)
        with self.factory() as session:
            cases = training_specs.evaluation_cases(
                session, self.context.storage, self.params["dataset"], self.run_dir / "data",
                self.context.check_cancelled,
            )  # fmt: skip
        data_file = training_specs.write_data_list(
            self.run_dir / training_specs.DATA_FILE,
            [],
            cases,
            f"evaluation cases of job {self.job_id}",
        )
        selection = training_results.selection_cases(self.params["model"], self.data_dir)
        names = selection if selection else ["unknown-selection-cases"]
        training_specs.write_data_list(
            self.run_dir / training_specs.SELECTION_FILE, [],
            [{"image": f"{name}.nii.gz", "label": f"{name}.nii.gz"} for name in names],
            "cases that selected the checkpoint" if selection else
            "unknown: the model was not trained by an admin job here",
        )  # fmt: skip
        with self.factory() as session:
            session.get(TrainingRun, self.run_id).total_steps = len(cases)
            session.commit()
        arguments = training_specs.evaluate_arguments(
            self.params,
            self.run_dir,
            data_file,
            self.run_dir / training_specs.SELECTION_FILE,
            self.data_dir,
        )
        return training_specs.child_command(arguments, 1)

    def read_progress(self, session, run: TrainingRun) -> tuple[float, str] | None:
        total = run.total_steps or 0
        done = len(list((self.run_dir / "predictions").glob("*.nii.gz"))) if total else 0
        if not total:
            return None
        return min(1.0, done / total), f"scored {done} of {total} case(s)"

    def finish(self, child: Child | None, *, reattached: bool) -> dict[str, Any]:
        if child is not None and child.returncode not in (None, 0):
            raise self.failure("evaluation", child, reattached)
        try:
            result = training_results.evaluation_result(self.run_dir)
        except (OSError, ValueError):
            raise self.failure("evaluation", child, reattached) from None
        known = training_results.selection_cases(self.params["model"], self.data_dir)
        return {**result, "selection_known": known is not None}


@job_handler("train")
def run_train(context: JobContext) -> dict[str, Any]:
    """Train a model in a child process; register the checkpoint as a model."""
    return TrainJob(context).execute()


@job_handler("evaluate")
def run_evaluate(context: JobContext) -> dict[str, Any]:
    """Score a model on a data set in a child process."""
    return EvaluateJob(context).execute()

"""The training supervisor's queue: one job per GPU, one CPU job, the rest wait (real database;
the GPUs are the one thing faked, through the supervisor's injectable GPU query)."""

from __future__ import annotations

import pytest

from app.db import make_engine, make_session_factory, upgrade_database
from app.db.tables import Job, JobStatus
from app.db.training_tables import TrainingRun
from app.settings import Settings
from app.training.devices import Usage, allocate
from app.training.gpu import Gpu, describe_devices, parse_gpus
from app.training.supervisor import TrainingSupervisor
from app.volumes.storage import Storage

ONE_GPU = [Gpu(0, "NVIDIA H100 80GB HBM3", 1000, 81559)]


class RecordingSupervisor(TrainingSupervisor):
    """Schedules for real but does not start the jobs it claims (they would need CUDA)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.spawned: list[int] = []

    def _spawn(self, job_id: int) -> None:
        self.spawned.append(job_id)


@pytest.fixture
def supervisor(tmp_path):
    url = f"sqlite:///{tmp_path / 'syntumor.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    settings = Settings(data_dir=tmp_path, database_url=url)
    made = RecordingSupervisor(settings, make_session_factory(engine), Storage(tmp_path),
                               gpus=lambda: ONE_GPU)  # fmt: skip
    yield made
    engine.dispose()


def _queue(supervisor, kind: str, gpus: int) -> int:
    with supervisor.session_factory() as session:
        job = Job(kind=kind, params={"gpus": gpus}, message="queued")
        session.add(job)
        session.flush()
        session.add(TrainingRun(job_id=job.id, kind=kind, run_dir="/tmp/unused", devices=[]))
        session.commit()
        return job.id


def _state(supervisor, job_id: int) -> tuple[str, str, list | None]:
    with supervisor.session_factory() as session:
        job = session.get(Job, job_id)
        run = session.query(TrainingRun).filter_by(job_id=job_id).one()
        return job.status, job.message, run.devices


def test_one_job_per_gpu_and_one_on_the_cpu(supervisor):
    first_gpu = _queue(supervisor, "train", 1)
    second_gpu = _queue(supervisor, "evaluate", 1)
    first_cpu = _queue(supervisor, "train", 0)
    second_cpu = _queue(supervisor, "evaluate", 0)
    too_big = _queue(supervisor, "train", 2)

    assert supervisor.schedule_once() == [first_gpu, first_cpu]
    assert _state(supervisor, first_gpu) == ("running", "starting", [0])
    assert _state(supervisor, first_cpu) == ("running", "starting", [])
    assert _state(supervisor, second_gpu) == ("queued", "queued: waiting for 1 free GPU(s)", [])
    assert _state(supervisor, second_cpu)[:2] == (
        "queued", "queued: waiting for the CPU (another CPU job is running)")  # fmt: skip
    status, _, _ = _state(supervisor, too_big)
    with supervisor.session_factory() as session:
        error = session.get(Job, too_big).error
    assert status == "failed"
    assert error == "the job asks for 2 GPU(s) but this machine has 1"

    assert supervisor.schedule_once() == []  # nothing freed
    with supervisor.session_factory() as session:
        session.get(Job, first_gpu).status = JobStatus.SUCCEEDED
        session.commit()
    assert supervisor.schedule_once() == [second_gpu]
    assert _state(supervisor, second_gpu) == ("running", "starting", [0])
    assert supervisor.spawned == [first_gpu, first_cpu, second_gpu]


def test_allocation_rules():
    nothing = Usage(frozenset(), 0)
    assert allocate(0, [], nothing) == []
    assert allocate(0, [0], Usage(frozenset(), 1)) is None
    assert allocate(2, [0, 1, 2], Usage(frozenset({1}), 0)) == [0, 2]
    assert allocate(2, [0, 1], Usage(frozenset({1}), 0)) is None
    with pytest.raises(ValueError, match=r"has 0 \(nvidia-smi finds none\): run it on the CPU"):
        allocate(1, [], nothing)


def test_nvidia_smi_output_is_parsed():
    text = "NVIDIA H100 80GB HBM3, 1234 MiB, 81559 MiB\nNVIDIA A100-SXM4-40GB, 3 MiB, 40960 MiB\n"
    gpus = parse_gpus(text)
    assert gpus == [Gpu(0, "NVIDIA H100 80GB HBM3", 1234, 81559),
                    Gpu(1, "NVIDIA A100-SXM4-40GB", 3, 40960)]  # fmt: skip
    assert describe_devices([], gpus)[0]["name"] == "CPU"
    assert describe_devices([1], gpus)[0]["name"] == "NVIDIA A100-SXM4-40GB"

"""Importing this module registers every job kind's handler with :mod:`app.jobs.worker`."""

from app.jobs import diagnostics  # noqa: F401  sleep (checks of the job machinery)
from app.processing import service  # noqa: F401  segment, synthesize
from app.registry import pull_jobs  # noqa: F401  model_pull (admin downloads of registered models)
from app.studies import prepare  # noqa: F401  study_prepare, study_synthesize, study_encode
from app.training import jobs  # noqa: F401  train, evaluate (admin)

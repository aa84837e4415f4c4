"""Importing this module registers every job kind's handler with :mod:`app.worker`."""

from app.services import (
    diagnostics,  # noqa: F401  sleep (checks of the job machinery)
    model_pulls,  # noqa: F401  model_pull (admin downloads of registered models)
    processing,  # noqa: F401  segment, synthesize
    studies_prepare,  # noqa: F401  study_prepare, study_synthesize, study_encode
    training_jobs,  # noqa: F401  train, evaluate (admin)
)

"""Importing this module registers every job kind's handler with :mod:`app.worker`."""

from app.services import (
    processing,  # noqa: F401  segment, synthesize
    training_jobs,  # noqa: F401  train, evaluate (admin)
)

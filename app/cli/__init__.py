"""The ``syntumor`` command line: one module per command group, shared helpers in
:mod:`app.cli.common`.

Every command prints a one-line error and exits with status 2 on bad input; heavy libraries
are imported inside the commands so that ``syntumor --help`` is instant.
"""

from __future__ import annotations

import logging
import sys

import typer

from app.cli import realism, registry, segmentation, server, studies, synthesis, training, users

app = typer.Typer(
    name="syntumor",
    help="SynTumor: label-free tumor synthesis in CT.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

COMMAND_GROUPS = (synthesis, registry, segmentation, training, server, users, studies, realism)


def _register_command_groups() -> None:
    """Add every group's commands to :data:`app` (idempotent)."""
    for module in COMMAND_GROUPS:
        module.register(app)


_register_command_groups()


def main() -> None:
    """Entry point of the ``syntumor`` console script (and of ``python -m app.cli``)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)

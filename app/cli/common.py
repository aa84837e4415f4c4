"""Helpers shared by the ``syntumor`` command groups: one-line errors, progress bars, options."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer

EXIT_USAGE = 2


def fail(message: str) -> None:
    """Print ``error: message`` on stderr and exit with status 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the core's typed errors and missing files into one-line messages."""
    from syntumor_core.errors import SynTumorError

    try:
        yield
    except SynTumorError as error:
        fail(str(error))
    except FileNotFoundError as error:
        fail(f"no such file: {error.filename}")
    except PermissionError as error:
        fail(f"permission denied: {error.filename}")


@contextlib.contextmanager
def progress_bar(description: str) -> Iterator[Callable[[float], None]]:
    """A rich progress bar on stderr; yields a callback taking a fraction in [0, 1]."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=not console.is_terminal,
    ) as progress:
        task = progress.add_task(description, total=1.0)
        yield lambda fraction: progress.update(task, completed=min(1.0, max(0.0, fraction)))
        progress.update(task, completed=1.0)


def parse_triple(text: str, name: str, cast) -> tuple:
    parts = text.replace("x", ",").replace("×", ",").split(",")
    try:
        values = tuple(cast(p) for p in parts if p.strip())
    except ValueError:
        fail(f"--{name} must be three numbers like 256,256,120; got {text!r}")
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        fail(f"--{name} must be one or three numbers; got {text!r}")
    return values


DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data folder (default $SYNTUMOR_DATA_DIR or ./var)."),
]


def app_settings(data_dir: Path | None = None, **overrides):
    """The web app's settings, with ``data_dir`` and any non-None ``overrides`` applied."""
    from app.settings import Settings

    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values)

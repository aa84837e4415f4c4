"""``syntumor models list | pull NAME | add PATH --arch A``: the model registry on the command line.

:func:`register` adds the ``models`` group to the main Typer app. Errors are one line on stderr
with exit status 2 (``app.cli.user_errors``); heavy imports happen inside the commands.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

models_app = typer.Typer(
    help="Segmentation models: the published checkpoints, the demo model and your own.",
    no_args_is_help=True,
)

DataDirOption = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="SYNTUMOR_DATA_DIR",
        help="Data folder; models go to DATA_DIR/models/NAME/model.pt.",
    ),
]
DEFAULT_DATA_DIR = Path("var")
_STATUS_NOTES = {
    "local": "the file is here",
    "remote": "downloadable with `syntumor models pull NAME`",
    "missing": "not here and no download link recorded: `pull NAME --url URL`, `models add`, "
    "or (demo) train it as models/README.md says",
}


def register(app: typer.Typer) -> None:
    """Add the ``models`` command group to ``app`` (a second call does nothing).

    Args:
        app: the ``syntumor`` Typer application.
    """
    if any(group.name == "models" for group in app.registered_groups):
        return
    app.add_typer(models_app, name="models")


@contextlib.contextmanager
def _download_bar(name: str) -> Iterator[Callable[[int, int | None], None]]:
    """A rich download bar on stderr, shown from the first byte on (not for failures before).

    Yields a callback taking (bytes received, total bytes or ``None``).
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn())
    columns += (TransferSpeedColumn(), TimeRemainingColumn())
    with contextlib.ExitStack() as stack:
        shown: list[tuple[Progress, TaskID]] = []

        def update(received: int, total: int | None) -> None:
            if not shown:
                bar = stack.enter_context(
                    Progress(*columns, console=console, transient=not console.is_terminal)
                )
                shown.append((bar, bar.add_task(f"pull {name}", total=total)))
            bar, task = shown[0]
            bar.update(task, completed=received, total=total)

        yield update


@models_app.command("list")
def list_command(
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the registered models: name, architecture, tumors, pretrained, status."""
    from app.cli.common import user_errors
    from app.registry.catalog import list_models

    with user_errors():
        statuses = list_models(data_dir)
    if as_json:
        rows = [
            {
                "name": s.entry.name,
                "arch": s.entry.arch,
                "tumors": s.entry.tumors,
                "pretrained": s.entry.pretrained,
                "status": s.status,
                "origin": s.entry.origin,
                "path": str(s.local_path),
                "url": s.entry.url,
                "description": s.entry.description,
            }
            for s in statuses
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    header = ("NAME", "ARCH", "TUMORS", "PRETRAINED", "STATUS")
    rows = [header] + [
        (
            s.entry.name,
            s.entry.arch,
            s.entry.tumors,
            "yes" if s.entry.pretrained else "no",
            s.status,
        )
        for s in statuses
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        typer.echo("  ".join(cells).rstrip())
    typer.echo("")
    for status in sorted({s.status for s in statuses}):
        typer.echo(f"{status}: {_STATUS_NOTES[status]}")


@models_app.command("pull")
def pull_command(
    name: Annotated[
        str | None,
        typer.Argument(help="Registered model name (see `syntumor models list`); or --all."),
    ] = None,
    pull_all: Annotated[
        bool,
        typer.Option("--all", help="All published models, from the one archive runs.tar.gz."),
    ] = False,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
    url: Annotated[
        str | None,
        typer.Option(
            help="Download from this exact URL instead (the file, or with --all the archive)."
        ),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url",
            envvar="SYNTUMOR_MODELS_BASE_URL",
            help="A mirror: fetch the registered links' paths from this server instead.",
        ),
    ] = None,
) -> None:
    """Download published checkpoints (resumable), verify that each loads strictly as its
    architecture and has the sha256 of its first download, and put them in place."""
    from app.cli.common import user_errors
    from app.registry.pull import pull_all as fetch_all
    from app.registry.pull import pull_one

    if (name is None) == (not pull_all):
        raise typer.BadParameter("give a model NAME or --all (not both)")
    if not pull_all:
        with user_errors(), _download_bar(name) as progress:
            path = pull_one(name, data_dir, progress, url=url, base_url=base_url)
        typer.echo(f"pulled {name} -> {path}")
        return
    with user_errors(), _download_bar("runs.tar.gz") as progress:
        outcomes = fetch_all(data_dir, progress, url=url, base_url=base_url)
    for outcome in outcomes:
        if outcome.path is not None:
            typer.echo(f"pulled {outcome.name} -> {outcome.path}")
        else:
            typer.echo(f"error: {outcome.name}: {outcome.error}", err=True)
    failed = sum(outcome.path is None for outcome in outcomes)
    if failed:
        typer.echo(f"error: {failed} of {len(outcomes)} models were not installed", err=True)
        raise typer.Exit(2)


@models_app.command("add")
def add_command(
    path: Annotated[Path, typer.Argument(help="Checkpoint file (model.pt).")],
    arch: Annotated[
        str, typer.Option(help="unet, swin_unetrv2_tiny, swin_unetrv2_small or swin_unetrv2_base.")
    ],
    name: Annotated[
        str | None, typer.Option(help="Registry name (default: the file's folder or stem).")
    ] = None,
    tumors: Annotated[
        str, typer.Option(help="Trained on real, synthetic or mixed tumors (or unknown).")
    ] = "unknown",
    description: Annotated[str, typer.Option(help="One line about the model.")] = "",
    replace: Annotated[bool, typer.Option(help="Overwrite your model of the same name.")] = False,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Register a local checkpoint: copy it into the data folder after checking that it loads."""
    from app.cli.common import user_errors
    from app.registry.catalog import add

    with user_errors():
        entry = add(
            path,
            arch,
            name,
            data_dir,
            tumors=tumors,
            description=description,
            replace=replace,
        )
    typer.echo(f"added {entry.name} ({entry.arch}) -> {data_dir / 'models' / entry.name}")

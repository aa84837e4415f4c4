"""``syntumor serve`` and ``syntumor worker``: run the web app and extra job workers."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Annotated

import typer

from app.cli.common import DataDirOption, app_settings

HostOption = Annotated[str | None, typer.Option(help="Interface to listen on (default 127.0.0.1).")]
PortOption = Annotated[int | None, typer.Option(help="Port (default 8000).")]


def serve(
    demo: Annotated[bool, typer.Option("--demo", help="Seed demo data and a demo admin.")] = False,
    host: HostOption = None,
    port: PortOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Start the web app (with its embedded job worker)."""
    import uvicorn

    from app.main import create_app

    settings = app_settings(data_dir, host=host, port=port)
    if demo:
        from app.demo_seed import seed_demo

        report = seed_demo(settings, echo=lambda line: typer.echo(line, err=True))
        typer.echo(f"\nSynTumor demo: http://{settings.host}:{settings.port}/")
        for line in report:
            typer.echo(f"  {line}")
        typer.echo("")
    # Proxy headers are handled by the app (SYNTUMOR_TRUSTED_PROXIES), not by uvicorn's default.
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info",
                proxy_headers=False)  # fmt: skip


def worker(
    data_dir: DataDirOption = None,
    kinds: Annotated[
        list[str] | None, typer.Option("--kind", help="Only jobs of this kind (repeatable).")
    ] = None,
    once: Annotated[bool, typer.Option(help="Run the queued jobs, then exit.")] = False,
) -> None:
    """Run jobs from the database (scale-out: point several machines at one PostgreSQL)."""
    from app import handlers  # noqa: F401
    from app.db import make_engine, make_session_factory, upgrade_database
    from app.jobs.worker import Worker, new_worker_id
    from app.volumes.storage import Storage

    settings = app_settings(data_dir)
    url = settings.resolved_database_url
    upgrade_database(url)
    runner = Worker(
        settings,
        make_session_factory(make_engine(url)),
        Storage(settings.data_dir),
        worker_id=new_worker_id("worker"),
        kinds=tuple(kinds) if kinds else None,
    )
    if once:
        runner.recover()
        while runner.run_once():
            pass
        return
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: (stop.set(), runner.stop(0)))
    typer.echo(f"worker {runner.worker_id} polling {url.split('@')[-1]}", err=True)
    runner.run_forever()


def register(app: typer.Typer) -> None:
    """Add ``serve`` and ``worker`` to the ``syntumor`` app."""
    present = {info.name for info in app.registered_commands}
    if "serve" not in present:
        app.command("serve")(serve)
        app.command("worker")(worker)
    logging.getLogger("app").setLevel(logging.INFO)

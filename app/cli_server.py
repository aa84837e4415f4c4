"""``syntumor serve``, ``syntumor worker`` and ``syntumor users …``: run and administer the app."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

users_app = typer.Typer(help="Accounts of the web app.", no_args_is_help=True)

HostOption = Annotated[str | None, typer.Option(help="Interface to listen on (default 127.0.0.1).")]
PortOption = Annotated[int | None, typer.Option(help="Port (default 8000).")]
DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data folder (default $SYNTUMOR_DATA_DIR or ./var)."),
]


def _settings(data_dir: Path | None = None, **overrides):
    from app.settings import Settings

    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values)


def serve(
    demo: Annotated[bool, typer.Option("--demo", help="Seed demo data and a demo admin.")] = False,
    host: HostOption = None,
    port: PortOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Start the web app (with its embedded job worker)."""
    import uvicorn

    from app.main import create_app

    settings = _settings(data_dir, host=host, port=port)
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
    from app.storage import Storage
    from app.worker import Worker, new_worker_id

    settings = _settings(data_dir)
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


@users_app.command("create-admin")
def create_admin(
    username: Annotated[str, typer.Option(help="User name of the admin.")] = "admin",
    password: Annotated[
        str | None,
        typer.Option(help="Password (default: ask; or generate one with --generate)."),
    ] = None,
    generate: Annotated[bool, typer.Option(help="Generate a password and print it once.")] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Create an admin account."""
    _create(username, password, generate, "admin", data_dir)


@users_app.command("create")
def create_user(
    username: Annotated[str, typer.Option(help="User name.")],
    role: Annotated[str, typer.Option(help="admin, researcher or reader.")] = "researcher",
    password: Annotated[str | None, typer.Option(help="Password (default: ask).")] = None,
    generate: Annotated[bool, typer.Option(help="Generate a password and print it once.")] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Create an account of any role."""
    _create(username, password, generate, role, data_dir)


def _create(username: str, password: str | None, generate: bool, role: str, data_dir) -> None:
    from app import auth
    from app.db import make_engine, make_session_factory, session_scope, upgrade_database

    if generate:
        password = auth.generate_password()
    elif password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    settings = _settings(data_dir)
    url = settings.resolved_database_url
    upgrade_database(url)
    try:
        with session_scope(make_session_factory(make_engine(url))) as session:
            user = auth.create_user(session, username, password, role)
            name = user.username
    except auth.AuthError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"created {role} {name!r}" + (f" with password {password}" if generate else ""))


def register(app: typer.Typer) -> None:
    """Add ``serve``, ``worker`` and ``users`` to the ``syntumor`` app."""
    from app import cli_users  # noqa: F401  (list, set-password, deactivate, ... on users_app)

    present = {info.name for info in app.registered_commands}
    if "serve" not in present:
        app.command("serve")(serve)
        app.command("worker")(worker)
        app.add_typer(users_app, name="users")
    logging.getLogger("app").setLevel(logging.INFO)

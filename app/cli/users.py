"""``syntumor users list | set-password | deactivate | activate | revoke-tokens``.

They work on the database directly (like ``users create``), for the machine's own operator:
``set-password`` and ``deactivate`` end the user's browser sessions at once; ``revoke-tokens``
deletes the user's API tokens. Errors are one line on stderr with exit status 2.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from app.cli.common import DataDirOption, app_settings

users_app = typer.Typer(help="Accounts of the web app.", no_args_is_help=True)

UsernameArgument = Annotated[str, typer.Argument(help="User name.")]


def _with_user(username: str, data_dir: Path | None, change: Callable) -> str:
    """Run ``change(session, user)`` in one transaction; returns its message."""
    from app.accounts import auth
    from app.db import make_engine, make_session_factory, session_scope, upgrade_database

    url = app_settings(data_dir).resolved_database_url
    upgrade_database(url)
    try:
        with session_scope(make_session_factory(make_engine(url))) as session:
            return change(session, auth.find_user(session, username))
    except auth.AuthError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


@users_app.command("list")
def list_users(data_dir: DataDirOption = None) -> None:
    """Every account: name, role, whether active, API tokens."""
    from sqlalchemy import select

    from app.db import make_engine, make_session_factory, upgrade_database
    from app.db.tables import User

    url = app_settings(data_dir).resolved_database_url
    upgrade_database(url)
    with make_session_factory(make_engine(url))() as session:
        users = session.scalars(select(User).order_by(User.id)).all()
        typer.echo(f"{'id':>4}  {'user':<32} {'role':<10} {'active':<6} tokens")
        for user in users:
            active = "yes" if user.is_active else "no"
            typer.echo(
                f"{user.id:>4}  {user.username:<32} {user.role:<10} {active:<6} {len(user.tokens)}"
            )


@users_app.command("set-password")
def set_password(
    username: UsernameArgument,
    password: Annotated[str | None, typer.Option(help="New password (default: ask).")] = None,
    generate: Annotated[bool, typer.Option(help="Generate a password and print it once.")] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Set a user's password; their browser sessions end."""
    from app.accounts import auth

    if generate:
        password = auth.generate_password()
    elif password is None:
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)

    def change(session, user) -> str:
        auth.set_password(session, user, password)
        return f"password of {user.username!r} set" + (f" to {password}" if generate else "")

    typer.echo(_with_user(username, data_dir, change) + "; their sessions ended")


@users_app.command("deactivate")
def deactivate(username: UsernameArgument, data_dir: DataDirOption = None) -> None:
    """Lock an account: sessions end, API tokens stop working (they are kept)."""
    from app.accounts import auth

    def change(session, user) -> str:
        auth.set_active(session, user, False)
        return f"deactivated {user.username!r}; their sessions ended"

    typer.echo(_with_user(username, data_dir, change))


@users_app.command("activate")
def activate(username: UsernameArgument, data_dir: DataDirOption = None) -> None:
    """Unlock a deactivated account."""
    from app.accounts import auth

    def change(session, user) -> str:
        auth.set_active(session, user, True)
        return f"activated {user.username!r}"

    typer.echo(_with_user(username, data_dir, change))


@users_app.command("revoke-tokens")
def revoke_tokens(username: UsernameArgument, data_dir: DataDirOption = None) -> None:
    """Delete every API token of a user."""
    from app.accounts import auth

    def change(session, user) -> str:
        return f"revoked {auth.revoke_tokens(session, user)} API token(s) of {user.username!r}"

    typer.echo(_with_user(username, data_dir, change))


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
    from app.accounts import auth
    from app.db import make_engine, make_session_factory, session_scope, upgrade_database

    if generate:
        password = auth.generate_password()
    elif password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    settings = app_settings(data_dir)
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
    """Add ``users …`` to the ``syntumor`` app."""
    if not any(group.name == "users" for group in app.registered_groups):
        app.add_typer(users_app, name="users")

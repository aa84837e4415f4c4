"""Database engine, sessions and migrations (SQLAlchemy 2 + Alembic).

SQLite (the default, one file in the data folder) is opened in WAL mode with a busy timeout so
the server's threads and a CLI can share it; PostgreSQL is used by URL
(``postgresql+psycopg://…``) and is what several ``syntumor worker`` processes need.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

from annotated_types import Interval
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MAX_DB_INT = 2**31 - 1
"""The largest value of an ``INTEGER`` column in every database the app runs on (PostgreSQL's;
SQLite's is 2**63 - 1). Every integer a request carries, in its path, query or body, is bounded
by it through the types below, so a huge number is refused before it reaches the database (and
the bounds show in the OpenAPI schema). An id out of range in a path is answered 404 like any
unknown id (see ``app.main``)."""

Id = Annotated[int, Interval(ge=1, le=MAX_DB_INT)]
"""A row id (path, query or body)."""
Count = Annotated[int, Interval(ge=0, le=MAX_DB_INT)]
"""An offset or a count."""
DbInt = Annotated[int, Interval(ge=-MAX_DB_INT - 1, le=MAX_DB_INT)]
"""Any other integer the database may store (label values, voxel indices)."""

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Connections to a SQLite file are cheap; enough for every thread of the server's thread pool
# (40) to hold one, so a burst of requests waits on the database, never on the pool.
SQLITE_POOL_SIZE, SQLITE_MAX_OVERFLOW = 10, 40


def make_engine(url: str) -> Engine:
    """An engine for ``url`` with the pragmas SQLite needs for concurrent use."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_pre_ping=True,
            **_sqlite_pool_options(url),
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _sqlite_pool_options(url: str) -> dict:
    """Pool sizes for a SQLite file (an in-memory database keeps SQLAlchemy's own pool)."""
    if url in ("sqlite://", "sqlite:///") or ":memory:" in url or "mode=memory" in url:
        return {}
    return {"pool_size": SQLITE_POOL_SIZE, "max_overflow": SQLITE_MAX_OVERFLOW}


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions on ``engine``, with every table module loaded (foreign keys resolve)."""
    load_all_tables()
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(url: str):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_database(url: str) -> None:
    """Create or migrate the database at ``url`` to the newest schema."""
    from alembic import command

    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), "head")


def load_all_tables():
    """Import every table module (so ``Base.metadata`` is complete) and return the ``Base``."""
    from app.db import study_tables, tables, training_tables  # noqa: F401
    from app.db.base import Base

    return Base

"""Alembic migrations: an empty database upgrades to head, head matches the ORM models exactly,
and the way back down to an empty database works.

``compare_metadata`` sees every table registered on ``Base`` (the core tables, the reader
study's, the training runs'), so a model changed without its migration fails here. The same
checks run on PostgreSQL when ``SYNTUMOR_TEST_DATABASE_URL`` is set (CI's second pass).
"""

from __future__ import annotations

import os

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from app.db import alembic_config, load_all_tables, upgrade_database
from tests.live_server import test_database_url as fresh_database_url

Base = load_all_tables()

DATABASES = ["sqlite"] + (["postgresql"] if os.environ.get("SYNTUMOR_TEST_DATABASE_URL") else [])


@pytest.fixture(params=DATABASES)
def empty_database(request, tmp_path, monkeypatch) -> str:
    if request.param == "sqlite":
        monkeypatch.delenv("SYNTUMOR_TEST_DATABASE_URL", raising=False)
    return fresh_database_url(tmp_path)


def _differences(url: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_one_linear_history_ending_at_a_single_head():
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1, script.get_heads()
    revisions = list(script.walk_revisions())
    assert revisions[-1].down_revision is None
    assert len({r.revision for r in revisions}) == len(revisions)


def test_upgrade_matches_the_models_and_downgrade_empties(empty_database):
    url = empty_database
    upgrade_database(url)
    assert {"users", "api_tokens", "volumes", "jobs", "segmentations", "syntheses"} <= _tables(url)
    assert set(Base.metadata.tables) <= _tables(url)
    assert _differences(url) == []

    command.downgrade(alembic_config(url), "base")
    assert _tables(url) <= {"alembic_version"}
    upgrade_database(url)  # and up again: the downgrade left nothing in the way
    assert _differences(url) == []

"""``syntumor serve --demo``: a database with demo cases, the demo model and a demo admin.

Seeds (once; a second start finds them and adds nothing):

- two procedural phantoms (seeds 100 and 101, not among the demo model's training seeds) with their organ label maps;
- the real LiTS case 117 with its liver/tumor labels, when its package is installed (it is
  loaded from the package at run time and stored only in the local data folder);
- any extra seeding registered in :data:`DEMO_SEEDERS` (the reader study adds its demo study).

Each start makes a new one-time password for the account ``demo-admin`` and prints it; there
is no default password. Nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.accounts import auth
from app.db import make_engine, make_session_factory, session_scope, upgrade_database
from app.db.tables import Role, User, Volume
from app.settings import Settings
from app.volumes.service import store_core_volume
from app.volumes.storage import Storage

DEMO_ADMIN = "demo-admin"
# Held-out seeds (the demo model trained on seeds 0-15) on the demo model's training grid.
PHANTOM_SEEDS = (100, 101)
PHANTOM_SHAPE = (192, 160, 120)
PHANTOM_SPACING_MM = (2.0, 2.0, 2.0)

# Extra seeding steps: functions (session, storage, admin) -> list of report lines.
DEMO_SEEDERS: list[Callable[[Session, Storage, User], list[str]]] = []


def _has_source(session: Session, source: str, name: str) -> bool:
    query = select(Volume.id).where(Volume.source == source, Volume.name == name)
    return session.scalar(query) is not None


def seed_phantoms(session: Session, storage: Storage, owner: User) -> list[str]:
    from syntumor_core.phantom import make_phantom

    lines = []
    for seed in PHANTOM_SEEDS:
        name = f"Phantom {seed}"
        if _has_source(session, "phantom", name):
            continue
        phantom = make_phantom(seed=seed, shape=PHANTOM_SHAPE, spacing=PHANTOM_SPACING_MM)
        image = store_core_volume(
            session,
            storage,
            phantom.image,
            name=name,
            source="phantom",
            owner_id=owner.id,
            meta={"phantom_seed": seed},
        )
        store_core_volume(
            session,
            storage,
            phantom.labels,
            name=f"{name} – organs",
            kind="label",
            source="phantom",
            owner_id=owner.id,
            image_id=image.id,
            meta={"labels": _organ_legend()},
        )
        lines.append(f"phantom {seed}: {PHANTOM_SHAPE} at {PHANTOM_SPACING_MM} mm")
    return lines


def _organ_legend() -> dict[str, str]:
    from syntumor_core.phantom import LABELS

    return {str(value): name for name, value in LABELS.items()}


def seed_lits117(session: Session, storage: Storage, owner: User) -> list[str]:
    from syntumor_core.errors import SampleNotInstalledError
    from syntumor_core.samples import load_lits117

    name = "LiTS case 117"
    if _has_source(session, "sample", name):
        return []
    try:
        sample = load_lits117()
    except SampleNotInstalledError as error:
        return [f"LiTS-117 not seeded: {error}"]
    image = store_core_volume(
        session,
        storage,
        sample.image,
        name=name,
        source="sample",
        owner_id=owner.id,
        meta={"licence": sample.licence_note, "origin": sample.source, "real_tumors": True},
    )
    store_core_volume(
        session,
        storage,
        sample.labels,
        name=f"{name} – liver and tumors",
        kind="label",
        source="sample",
        owner_id=owner.id,
        image_id=image.id,
        meta={"labels": {"1": "liver", "2": "tumor"}},
    )
    return [f"LiTS case 117 (real CT, {sample.source}; local use only)"]


def ensure_demo_admin(session: Session) -> tuple[User, str]:
    """The demo admin with a fresh one-time password."""
    password = auth.generate_password()
    user = session.scalar(select(User).where(User.username == DEMO_ADMIN))
    if user is None:
        user = auth.create_user(session, DEMO_ADMIN, password, Role.ADMIN)
    else:
        user.password_hash = auth.hash_password(password)
    session.flush()
    return user, password


def seed_demo(settings: Settings, echo: Callable[[str], None] = lambda line: None) -> list[str]:
    """Create and fill the demo database; returns lines to print (URL and credentials)."""
    url = settings.resolved_database_url
    upgrade_database(url)
    engine = make_engine(url)
    storage = Storage(settings.data_dir)
    report: list[str] = []
    try:
        with session_scope(make_session_factory(engine)) as session:
            admin, password = ensure_demo_admin(session)
            for step in (seed_phantoms, seed_lits117, *DEMO_SEEDERS):
                echo(f"seeding: {step.__name__}")
                report.extend(step(session, storage, admin))
                session.flush()
    finally:
        engine.dispose()
    return [*report, f"log in as {DEMO_ADMIN!r} with the one-time password {password}"]


def _register_study_seeder() -> None:
    """The reader study's demo study (one real scan: real and synthetic tumors)."""
    from app.studies.demo import seed_demo_study

    if seed_demo_study not in DEMO_SEEDERS:
        DEMO_SEEDERS.append(seed_demo_study)


_register_study_seeder()

"""``syntumor study create | prepare | invite | list | results | export``: reader studies.

The commands work on the app's database and data folder directly (like ``syntumor users``),
with the same services as ``/api/v1/studies``. Preparation is a worker job: a running server
(or ``syntumor worker``) does it, or ``--run-jobs`` does it here and waits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from app.cli.common import DataDirOption, app_settings

study_app = typer.Typer(help="Reader studies (Visual Turing Test).", no_args_is_help=True)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _database(data_dir: Path | None):
    from app.db import make_engine, make_session_factory, upgrade_database
    from app.volumes.storage import Storage

    settings = app_settings(data_dir)
    url = settings.resolved_database_url
    upgrade_database(url)
    return settings, make_session_factory(make_engine(url)), Storage(settings.data_dir)


def _owner(session, username: str | None):
    from sqlalchemy import select

    from app.db.tables import Role, User

    query = (
        select(User).where(User.username == username.lower())
        if username
        else (select(User).where(User.role == Role.ADMIN).order_by(User.id))
    )
    user = session.scalar(query)
    if user is None:
        _fail(
            f"no user {username!r}"
            if username
            else "no admin account: create one with `syntumor users create-admin`"
        )
    if user.role not in ("admin", "researcher"):
        _fail(f"user {user.username!r} is a {user.role}; studies belong to admins or researchers")
    return user


def _study(session, study_id: int):
    from app.db.study_tables import Study

    study = session.get(Study, study_id)
    if study is None:
        _fail(f"study {study_id} not found")
    return study


def _spec(options: dict, spec_file: Path | None) -> dict:
    from pydantic import ValidationError

    from app.studies.schemas import StudyCreate

    if spec_file is not None:
        raw = json.loads(spec_file.read_text(encoding="utf-8"))
    else:
        synthesize = bool(options["healthy"])
        arm1 = {"name": options["arm2_name"], "truth": "synthetic",
                "source": "synthesize" if synthesize else "volumes", "organ": options["organ"],
                "profile": options["profile"]}  # fmt: skip
        if synthesize:
            arm1["healthy"] = [{"image_id": i, "mask_labels": options["mask_label"] or [1]}
                               for i in options["healthy"]]  # fmt: skip
        else:
            arm1["volumes"] = [{"image_id": i} for i in options["synthetic_volume"]]
        raw = {
            "title": options["title"], "description": options["description"],
            "instructions": options["instructions"], "allow_unsure": options["unsure"],
            "confidence_scale": options["confidence"], "allow_change": options["allow_change"],
            "repeats": options["repeats"], "click_synthetic": options["click"],
            "box_mm": options["box_mm"],
            "arms": [{"name": options["arm1_name"], "truth": "real", "source": "volumes",
                      "volumes": [{"image_id": i} for i in options["real"]]}, arm1],
            "examples": [{"image_id": i, "caption": "Real tumor (example)"} for i in options["example"]],
            "practice": [{"image_id": i, "truth": t} for t in ("real", "synthetic")
                         for i in options[f"practice_{t}"]],
            "questions": {"comment": options["ask_comment"], "features": options["ask_features"]},
        }  # fmt: skip
    if options["acknowledge"]:
        raw["acknowledge"] = [*raw.get("acknowledge", []), *options["acknowledge"]]
    try:
        return StudyCreate.model_validate(raw).model_dump()
    except ValidationError as error:
        _fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()))


@study_app.command("create")
def create(
    title: Annotated[str, typer.Option(help="Title shown to readers.")] = "Visual Turing Test",
    real: Annotated[
        list[int] | None, typer.Option(help="Image volume id of a real-tumor case (repeat).")
    ] = None,
    healthy: Annotated[
        list[int] | None,
        typer.Option(
            help="Healthy image volume id to synthesize into (repeat); its label map is the organ mask."
        ),
    ] = None,
    synthetic_volume: Annotated[
        list[int] | None, typer.Option(help="Stored synthetic case instead of --healthy (repeat).")
    ] = None,
    example: Annotated[
        list[int] | None, typer.Option(help="Image volume id shown as an example (repeat).")
    ] = None,
    mask_label: Annotated[
        list[int] | None, typer.Option(help="Organ label value(s) in the healthy volumes' masks.")
    ] = None,
    organ: Annotated[str, typer.Option(help="liver, pancreas or kidney.")] = "liver",
    profile: Annotated[str, typer.Option(help="paper or realistic.")] = "paper",
    description: Annotated[
        str, typer.Option(help="Shown to readers: where the cases come from.")
    ] = "",
    instructions: Annotated[str, typer.Option(help="Instructions shown before the test.")] = "",
    arm1_name: Annotated[str, typer.Option(help="Name of the real arm.")] = "Real tumors",
    arm2_name: Annotated[str, typer.Option(help="Name of the synthetic arm.")] = "Synthetic tumors",
    unsure: Annotated[bool, typer.Option(help="Allow the answer 'unsure'.")] = True,
    confidence: Annotated[bool, typer.Option(help="Ask a confidence 1-5.")] = True,
    allow_change: Annotated[bool, typer.Option(help="Let readers change answers.")] = False,
    repeats: Annotated[int, typer.Option(help="Cases shown twice (intra-reader kappa).")] = 0,
    click: Annotated[bool, typer.Option(help="Ask where a case looks synthetic.")] = False,
    box_mm: Annotated[float | None, typer.Option(help="Largest field of view shown, mm.")] = None,
    practice_real: Annotated[
        list[int] | None, typer.Option(help="Practice case of a real tumor, read first (repeat).")
    ] = None,
    practice_synthetic: Annotated[
        list[int] | None, typer.Option(help="Practice case of a synthetic tumor (repeat).")
    ] = None,
    ask_comment: Annotated[bool, typer.Option(help="Ask for a comment per case.")] = False,
    ask_features: Annotated[
        bool, typer.Option(help="Ask which features gave a case away.")
    ] = False,
    acknowledge: Annotated[
        list[str] | None,
        typer.Option(
            help="Code of a design warning to accept (repeat; also added to a --spec file's).",
        ),
    ] = None,
    spec: Annotated[
        Path | None,
        typer.Option(help="A JSON spec as POST /api/v1/studies takes (overrides the options)."),
    ] = None,
    owner: Annotated[
        str | None, typer.Option(help="Owner's user name (default: the first admin).")
    ] = None,
    run_jobs: Annotated[
        bool, typer.Option(help="Run the preparation here and wait (no server needed).")
    ] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Create a study and queue its preparation (measure, synthesize matched cases, blind)."""
    from app.studies import service

    options = dict(locals())
    for key in ("real", "healthy", "synthetic_volume", "example", "practice_real",
                "practice_synthetic", "acknowledge"):  # fmt: skip
        options[key] = options[key] or []
    if spec is None and not options["real"]:
        _fail("give the real arm's cases with --real ID (repeat), or a --spec file")
    if spec is None and not (options["healthy"] or options["synthetic_volume"]):
        _fail("give the synthetic arm with --healthy ID (synthesize) or --synthetic-volume ID")
    settings, factory, _storage = _database(data_dir)
    with factory() as session:
        user = _owner(session, owner)
        try:
            study = service.create_study(session, user, _spec(options, spec))
            job = service.queue_prepare(session, study, user.id)
        except service.StudyError as error:
            _echo_checks(getattr(error, "checks", None) or [])
            _fail(str(error))
        session.commit()
        study_id, job_id = study.id, job.id
    typer.echo(f"study {study_id} created; preparation queued as job {job_id}")
    if run_jobs:
        _run_jobs(settings, data_dir, study_id)


def _echo_checks(checks: list[dict]) -> None:
    """The design checks, one a line: level, code, message (warnings: what --acknowledge takes)."""
    for check in checks:
        typer.echo(f"{check['level']:7s}  {check['code']}: {check['message']}", err=True)


def _run_jobs(settings, data_dir, study_id: int) -> None:
    from app import handlers  # noqa: F401
    from app.db.study_tables import Study
    from app.jobs.worker import Worker, new_worker_id

    _, factory, storage = _database(data_dir)
    worker = Worker(settings, factory, storage, worker_id=new_worker_id("cli"),
                    kinds=("study_prepare", "study_synthesize", "study_encode"))  # fmt: skip
    while worker.run_once():
        pass
    with factory() as session:
        study = session.get(Study, study_id)
        typer.echo(
            f"study {study_id} is {study.status}"
            + (f": {study.status_message}" if study.status_message else "")
        )
        if study.status != "ready":
            raise typer.Exit(1)


@study_app.command("prepare")
def prepare(
    study_id: Annotated[int, typer.Argument(help="Study id.")],
    run_jobs: Annotated[bool, typer.Option(help="Run the preparation here and wait.")] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Queue the preparation of a draft or failed study again."""
    from app.studies import service

    settings, factory, _ = _database(data_dir)
    with factory() as session:
        study = _study(session, study_id)
        try:
            job = service.queue_prepare(session, study, study.owner_id)
        except service.StudyError as error:
            _fail(str(error))
        session.commit()
        typer.echo(f"preparation of study {study_id} queued as job {job.id}")
    if run_jobs:
        _run_jobs(settings, data_dir, study_id)


@study_app.command("invite")
def invite(
    study_id: Annotated[int, typer.Argument(help="Study id.")],
    label: Annotated[str, typer.Option(help="Reader's label, e.g. 'Reader 1 (senior)'.")],
    username: Annotated[str | None, typer.Option(help="Bind to an existing account.")] = None,
    base_url: Annotated[
        str, typer.Option(help="The server's address for the link.")
    ] = "http://127.0.0.1:8000",
    data_dir: DataDirOption = None,
) -> None:
    """Invite a reader; prints the invitation link (shown only now)."""
    from sqlalchemy import select

    from app.db.tables import User
    from app.studies import service

    _, factory, _ = _database(data_dir)
    with factory() as session:
        study = _study(session, study_id)
        account = None
        if username:
            account = session.scalar(select(User).where(User.username == username.lower()))
            if account is None:
                _fail(f"no user {username!r}")
        try:
            reader, token = service.invite_reader(session, study, label, account)
        except service.StudyError as error:
            _fail(str(error))
        session.commit()
        typer.echo(f"reader {reader.label!r} invited ({len(reader.readings)} readings)")
    typer.echo(f"{base_url.rstrip('/')}/r/{token}")


@study_app.command("list")
def list_studies(data_dir: DataDirOption = None) -> None:
    """Every study with its status, arms and answers."""
    from sqlalchemy import select

    from app.db.study_tables import Study
    from app.studies import service

    _, factory, _ = _database(data_dir)
    with factory() as session:
        for study in session.scalars(select(Study).order_by(Study.id)):
            data = service.study_json(session, study, detail=True)
            answered = sum(r["answered"] for r in data["readers"])
            arms = ", ".join(f"{a['name']} ({a['truth']}, {a['cases']})" for a in data["arms"])
            typer.echo(f"{study.id:4d}  {study.status:9s}  {study.title}  [{arms}]  "
                       f"{len(data['readers'])} reader(s), {answered} answer(s)")  # fmt: skip


def _pct(proportion: dict | None) -> str:
    if not proportion or proportion["value"] is None:
        return "n/a"
    return f"{100 * proportion['value']:.1f} % [{100 * proportion['low']:.1f}, {100 * proportion['high']:.1f}]"


@study_app.command("results")
def results(
    study_id: Annotated[int, typer.Argument(help="Study id.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the full results as JSON.")
    ] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Per reader and pooled statistics (positive class named; unsure left out of rates)."""
    from rich.console import Console
    from rich.table import Table

    from app.studies import views

    _, factory, _ = _database(data_dir)
    with factory() as session:
        data = views.results(session, _study(session, study_id))
    if as_json:
        typer.echo(json.dumps(data, indent=1))
        return
    table = Table(title=f"Study {study_id}: positive class = {data['positive_class']}; "
                  "rates exclude unsure; 95 % Wilson intervals")  # fmt: skip
    for column in ("reader", "TP", "FP", "TN", "FN", "unsure", "sensitivity", "specificity",
                   "accuracy", "PPV", "p vs 0.5", "AUC"):  # fmt: skip
        table.add_column(column)
    rows = data["per_reader"] + ([data["pooled"]] if data["pooled"] else [])
    for s in rows:
        auc = "n/a" if s["auc"] is None else f"{s['auc']:.2f}"
        p = "n/a" if s["binomial_p_value"] is None else f"{s['binomial_p_value']:.3g}"
        table.add_row(s["reader"], *(str(s[k]) for k in ("tp", "fp", "tn", "fn", "unsure")),
                      _pct(s["sensitivity"]), _pct(s["specificity"]), _pct(s["accuracy"]),
                      _pct(s["ppv"]), p, auc)  # fmt: skip
    console = Console(width=200)
    console.print(table)
    if data.get("agreement"):
        fleiss = data["agreement"]["fleiss_kappa"]
        console.print(f"Fleiss' kappa: {'n/a' if fleiss is None else f'{fleiss:.3f}'}")
    if not rows:
        console.print("no answers yet")


@study_app.command("export")
def export(
    study_id: Annotated[int, typer.Argument(help="Study id.")],
    out: Annotated[Path, typer.Option(help="Folder to write the files into.")] = Path("."),
    data_dir: DataDirOption = None,
) -> None:
    """Write answers.csv, mrmc.csv, mrmc-imrmc.csv, summary.json and the plots."""
    from app.studies import views

    _, factory, storage = _database(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    with factory() as session:
        study = _study(session, study_id)
        files = {name: views.export_csv(session, study, name)
                 for name in ("answers.csv", "mrmc.csv", "mrmc-imrmc.csv")}  # fmt: skip
        files["summary.json"] = json.dumps(views.summary(session, study), indent=1)
        plots = {f"{name}.png": views.plot(session, storage, study, name)
                 for name in ("confusion", "roc", "clicks")}  # fmt: skip
    for name, text in files.items():
        (out / f"study-{study_id}-{name}").write_text(text, encoding="utf-8")
    for name, png in plots.items():
        (out / f"study-{study_id}-{name}").write_bytes(png)
    typer.echo(f"wrote {len(files) + len(plots)} files to {out}")


def register(app: typer.Typer) -> None:
    """Add ``study`` to the ``syntumor`` app."""
    if "study" not in {group.name for group in app.registered_groups}:
        app.add_typer(study_app, name="study")

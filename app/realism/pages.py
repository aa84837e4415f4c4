"""``/realism``: the published realism report (admins and researchers).

The page shows what ``syntumor realism --publish`` last wrote to ``<data_dir>/realism``
(:mod:`app.realism.service`): the real-vs-synthetic table per profile, the machine reader's AUC
and the plots. It runs nothing; with no report it says which command makes one.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse

from app.realism.service import latest_report, plot_path
from app.volumes.pages import researcher_page
from app.web import render
from syntumor_core.errors import VolumeError

router = APIRouter(include_in_schema=False)
PUBLISH_COMMAND = "syntumor realism --publish"


@router.get("/realism")
def realism_page(request: Request):
    from syntumor_core.realism.report import reader_line, table_rows

    user = researcher_page(request)
    error = None
    try:
        document = latest_report(request.app.state.settings.data_dir)
    except VolumeError as problem:
        document, error = None, str(problem)
    reports = [
        {**report, "rows": table_rows(report), "reader_text": reader_line(report)}
        for report in (document or {}).get("reports", [])
    ]
    return render(
        request,
        "realism/index.html",
        user=user,
        document=document,
        reports=reports,
        error=error,
        command=PUBLISH_COMMAND,
    )


@router.get("/realism/plots/{name}")
def realism_plot(request: Request, name: str):
    researcher_page(request)
    path = plot_path(request.app.state.settings.data_dir, name)
    if path is None:
        raise HTTPException(404, f"no realism plot {name!r}")
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-store"})

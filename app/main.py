"""The FastAPI application: ``create_app(settings)`` wires database, storage, worker and routes.

Start it with ``syntumor serve`` (uvicorn). The lifespan migrates the database to the newest
schema, finds jobs interrupted by a crash, and starts the embedded worker thread (unless
``SYNTUMOR_EMBEDDED_WORKER=false``, when ``syntumor worker`` processes do the work).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from app.db import make_engine, make_session_factory, upgrade_database
from app.settings import Settings
from app.storage import Storage

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
STATIC_DIR = ROOT / "static"
NIIVUE_DIST = ROOT / "node_modules" / "@niivue" / "niivue" / "dist"
API_PREFIX = "/api/v1"


def _routers():
    """Every router of the app: (module, prefix). Each module exposes ``router``."""
    from app.api import admin, auth, jobs, processing, studies, volumes
    from app.pages import admin as admin_pages
    from app.pages import main as main_pages
    from app.pages import studies as study_pages

    return [
        (auth.router, API_PREFIX),
        (volumes.router, API_PREFIX),
        (jobs.router, API_PREFIX),
        (processing.router, API_PREFIX),
        (studies.router, API_PREFIX),
        (admin.router, API_PREFIX),
        (main_pages.router, ""),
        (study_pages.router, ""),
        (admin_pages.router, ""),
    ]


def _error_body(status: int, detail, **extra) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status)


def _describe_validation(errors) -> str:
    parts = []
    for error in errors:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
    return "; ".join(parts) or "invalid request"


def _install_error_handlers(app: FastAPI) -> None:
    """One error body everywhere: ``{"detail": "<what to fix>"}`` (plus ``errors`` for 422)."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if not request.url.path.startswith("/api/") and exc.status_code in (401, 403, 404):
            from app.pages.common import error_page

            return error_page(request, exc.status_code, str(exc.detail))
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError):
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors()
        ]
        return _error_body(422, _describe_validation(errors), errors=errors)

    @app.exception_handler(Exception)
    async def unexpected_error(_request: Request, exc: Exception):
        logger.exception("unhandled error", exc_info=exc)
        return _error_body(500, "internal error: the server logged the details")


def create_app(settings: Settings | None = None, *, start_worker: bool | None = None) -> FastAPI:
    """Build the application.

    Args:
        settings: configuration; default read from ``SYNTUMOR_*`` environment variables.
        start_worker: run the embedded job worker; default ``settings.embedded_worker``.
    """
    settings = settings or Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.resolved_database_url
    engine = make_engine(url)
    session_factory = make_session_factory(engine)
    storage = Storage(settings.data_dir)
    run_worker = settings.embedded_worker if start_worker is None else start_worker

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        upgrade_database(url)
        cleaned = storage.clean_tmp_at_start()
        if cleaned:
            logger.info("removed %d partial upload(s) left in tmp/ by an earlier run", cleaned)
        worker = None
        if run_worker:
            from app import handlers  # noqa: F401  (registers the job kinds)
            from app.worker import Worker, new_worker_id

            worker = Worker(settings, session_factory, storage, worker_id=new_worker_id("embedded"))
            worker.start()
        app.state.worker = worker
        yield
        if worker is not None:
            worker.stop()
        engine.dispose()

    app = FastAPI(
        title="SynTumor",
        version="0.1.0",
        description="Label-free tumor synthesis in CT: volumes, segmentation, synthesis, "
        "reader studies and training jobs.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = session_factory
    app.state.storage = storage
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.resolved_secret_key(),
        session_cookie="syntumor_session",
        same_site="lax",
        https_only=settings.secure_cookies,
        max_age=14 * 24 * 3600,
    )
    _install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    if NIIVUE_DIST.is_dir():
        app.mount("/vendor/niivue", StaticFiles(directory=NIIVUE_DIST), name="niivue")
    else:
        logger.warning("NiiVue not installed (run `npm ci`): the viewer pages will not render")
    for router, prefix in _routers():
        app.include_router(router, prefix=prefix)

    @app.get("/healthz", include_in_schema=False)
    def health() -> dict:
        return {"ok": True}

    return app

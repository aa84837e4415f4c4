"""The FastAPI application: ``create_app(settings)`` wires database, storage, worker and routes.

Start it with ``syntumor serve`` (uvicorn). The lifespan migrates the database to the newest
schema, finds jobs interrupted by a crash, and starts the two background services: the embedded job
worker thread and the training supervisor (unless ``SYNTUMOR_EMBEDDED_WORKER=false``, when
``syntumor worker`` processes do the work).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app.accounts.sessions import SecurityHeadersMiddleware, ServerSessionMiddleware
from app.db import make_engine, make_session_factory, upgrade_database
from app.errors import AppError, code_for_status
from app.settings import Settings
from app.volumes.storage import Storage

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
STATIC_DIR = ROOT / "static"
NIIVUE_DIST = ROOT / "node_modules" / "@niivue" / "niivue" / "dist"
# The API docs' browser code, pinned in package-lock.json like NiiVue: /docs and /redoc work
# without internet (FastAPI's default pages load Swagger UI and ReDoc from a CDN).
API_DOCS_VENDOR = {"/vendor/swagger-ui": ROOT / "node_modules" / "swagger-ui-dist"}
REDOC_BUNDLE = ROOT / "node_modules" / "redoc" / "bundles" / "redoc.standalone.js"
# ReDoc's sidebar footer always shows a logo from its CDN; ours instead, so nothing is asked of
# another host (the CSP would block it, with an error in the console).
REDOC_CDN_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
API_DOCS_PAGES = {"/docs": "docs.html", "/redoc": "redoc.html"}
API_PREFIX = "/api/v1"


def _routers():
    """Every router of the app: (module, prefix). Each module exposes ``router``."""
    from app import home as main_pages
    from app.accounts import api as auth
    from app.accounts import pages as account_pages
    from app.jobs import api as jobs
    from app.processing import api as processing
    from app.studies import api as studies
    from app.studies import pages as study_pages
    from app.studies import reader_api, reader_pages
    from app.training import api as admin
    from app.training import pages as admin_pages
    from app.volumes import api as volumes

    return [
        (auth.router, API_PREFIX),
        (volumes.router, API_PREFIX),
        (jobs.router, API_PREFIX),
        (processing.router, API_PREFIX),
        (studies.router, API_PREFIX),
        (reader_api.router, API_PREFIX),
        (admin.router, API_PREFIX),
        (main_pages.router, ""),
        (study_pages.router, ""),
        (reader_pages.router, ""),
        (admin_pages.router, ""),
        (account_pages.router, ""),
    ]


def wants_html(request: Request) -> bool:
    """A browser asking for a page: not under ``/api/``, and not asking for JSON only."""
    if request.url.path.startswith("/api/"):
        return False
    accept = request.headers.get("accept", "")
    return "text/html" in accept or "application/json" not in accept


def error_response(
    request: Request, status: int, detail, *, code: str | None = None, headers=None, **extra
) -> Response:
    """The one place that answers an error: an HTML page for browsers, JSON for the API (the
    body of :class:`app.errors.ErrorBody`)."""
    if wants_html(request):
        from app.web import error_page

        try:
            page = error_page(request, status, detail if isinstance(detail, str) else str(detail))
        except Exception:  # the page itself failed (e.g. no database): a bare page
            logger.exception("error page failed")
            return HTMLResponse(f"<h1>{status}</h1>", status_code=status)
        if headers and page.status_code == status:
            page.headers.update(headers)
        return page
    body = {"detail": detail, "code": code or code_for_status(status), **extra}
    return JSONResponse(body, status_code=status, headers=headers)


def _describe_validation(errors) -> str:
    parts = []
    for error in errors:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
    return "; ".join(parts) or "invalid request"


def _path_out_of_range(errors) -> str | None:
    """For a request with an id out of range in its path (say 2**64, past what the database
    holds, see ``app.common.Id``): "<thing> <id> not found", as for any unknown id. A path
    that is not a number at all stays a 422."""
    out_of_range = ("less_than_equal", "greater_than_equal")
    ids = [e for e in errors if tuple(e.get("loc", ()))[:1] == ("path",)
           and e.get("type") in out_of_range]  # fmt: skip
    if not ids:
        return None
    name, value = ids[-1]["loc"][-1], ids[-1].get("input")
    return f"{str(name).removesuffix('_id').replace('_', ' ')} {value} not found"


def _install_error_handlers(app: FastAPI) -> None:
    """One error body everywhere (:class:`app.errors.ErrorBody`): ``{"detail", "code"}``, plus
    ``errors`` for 422.

    Browsers asking for a page get the same status with the error page instead
    (:func:`error_response`).
    """

    @app.exception_handler(AppError)
    async def app_error(request: Request, exc: AppError):
        return error_response(
            request, exc.status, exc.detail, code=exc.code, headers=exc.headers, **exc.extra
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return error_response(request, exc.status_code, exc.detail, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors()
        ]
        unknown = _path_out_of_range(exc.errors())
        if unknown is not None:
            return await http_error(request, StarletteHTTPException(404, unknown))
        return error_response(
            request, 422, _describe_validation(errors), code="invalid", errors=errors
        )

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception):
        logger.exception("unhandled error", exc_info=exc)
        return error_response(
            request, 500, "internal error: the server logged the details", code="internal"
        )


def _install_api_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc (ReDoc) from node_modules; no CDN, no inline script."""
    for prefix, folder in API_DOCS_VENDOR.items():
        if not folder.is_dir():
            logger.warning("%s not installed (run `npm ci`): the API docs will not render", folder)
            return
        app.mount(prefix, StaticFiles(directory=folder), name=prefix.rsplit("/", 1)[1])
    app.add_api_route("/vendor/redoc/redoc.standalone.js", _redoc_bundle,
                      include_in_schema=False, methods=["GET"])  # fmt: skip
    for path, page in API_DOCS_PAGES.items():
        app.add_api_route(path, _docs_page(ROOT / "templates" / "api" / page),
                          include_in_schema=False, methods=["GET"])  # fmt: skip


@lru_cache(maxsize=1)
def _redoc_bytes() -> bytes:
    return REDOC_BUNDLE.read_bytes().replace(REDOC_CDN_LOGO, b"/static/favicon.svg")


def _redoc_bundle() -> Response:
    return Response(_redoc_bytes(), media_type="text/javascript",
                    headers={"Cache-Control": "public, max-age=86400"})  # fmt: skip


def _docs_page(page: Path):
    def serve() -> FileResponse:
        return FileResponse(page, media_type="text/html")

    return serve


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
            from app.jobs.worker import Worker, new_worker_id

            worker = Worker(settings, session_factory, storage, worker_id=new_worker_id("embedded"))
            worker.start()
        app.state.worker = worker
        # The training supervisor runs admins' training jobs as child processes (one per
        # job, its devices held) whenever this server runs jobs itself.
        supervisor = None
        if settings.embedded_worker:
            from app import handlers  # noqa: F401, F811  (registers the job kinds)
            from app.training.supervisor import TrainingSupervisor

            supervisor = TrainingSupervisor(settings, session_factory, storage)
            supervisor.start()
        app.state.training_supervisor = supervisor
        yield
        if supervisor is not None:
            supervisor.stop()
        if worker is not None:
            worker.stop()
        engine.dispose()

    app = FastAPI(
        title="SynTumor",
        version="0.1.0",
        description="Label-free tumor synthesis in CT: volumes, segmentation, synthesis, "
        "reader studies and training jobs.",
        lifespan=lifespan,
        docs_url=None,  # served from our own copies below
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = session_factory
    app.state.storage = storage
    # Outermost last: the proxy's headers are believed (or not) before anything reads the
    # scheme or the client address; sessions are kept on the server (app.accounts.sessions).
    app.add_middleware(ServerSessionMiddleware, secure_cookies=settings.secure_cookies)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxy_list)
    _install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    if NIIVUE_DIST.is_dir():
        app.mount("/vendor/niivue", StaticFiles(directory=NIIVUE_DIST), name="niivue")
    else:
        logger.warning("NiiVue not installed (run `npm ci`): the viewer pages will not render")
    _install_api_docs(app)
    for router, prefix in _routers():
        app.include_router(router, prefix=prefix)

    @app.get("/healthz", include_in_schema=False)
    def health() -> dict:
        return {"ok": True}

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(STATIC_DIR / "favicon.ico", media_type="image/x-icon",
                            headers={"Cache-Control": "public, max-age=86400"})  # fmt: skip

    return app

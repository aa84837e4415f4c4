"""A real SynTumor server for tests: uvicorn in a child process on a free port.

``LiveServer`` starts ``python -m app.cli serve`` with its own data folder and database (SQLite
by default; PostgreSQL when ``SYNTUMOR_TEST_DATABASE_URL`` is set, as ``.ci/run`` does for its
second pass), waits for ``/healthz``, and can be killed (SIGKILL, for crash tests) and started
again on the same data. Users are created directly in its database; clients are httpx clients
with a bearer token or with a logged-in session cookie and its CSRF header.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_database_url(data_dir: Path) -> str:
    """SQLite in ``data_dir``, or a fresh PostgreSQL database when the env asks for it."""
    base = os.environ.get("SYNTUMOR_TEST_DATABASE_URL")
    if not base:
        return f"sqlite:///{data_dir / 'syntumor.db'}"
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"syntumor_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(base).set(database=name).render_as_string(hide_password=False)


def _complete(response: bytes) -> bool:
    """Whether a raw HTTP response with a Content-Length has all its body."""
    head, _, body = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return False


class LiveServer:
    """One server process over one data folder."""

    def __init__(
        self,
        data_dir: Path,
        *,
        env: dict[str, str] | None = None,
        database_url: str | None = None,
    ) -> None:
        """A server over ``data_dir``; ``database_url`` reuses a database (e.g. of a server
        that was killed), else a fresh one is made."""
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.database_url = database_url or test_database_url(self.data_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_env = env or {}
        self.process: subprocess.Popen | None = None
        self.log_path = self.data_dir / "server.log"
        self._engine = None

    # --- process --------------------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "SYNTUMOR_DATA_DIR": str(self.data_dir),
            "SYNTUMOR_DATABASE_URL": self.database_url,
            "SYNTUMOR_WORKER_POLL_S": "0.2",
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }

    def start(self) -> LiveServer:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port)],
            cwd=REPO,
            env=self.environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server did not start in {START_TIMEOUT_S} s:\n{self.log_tail()}")

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server: SIGTERM and wait, or SIGKILL its whole process group (a crash)."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    # --- database -------------------------------------------------------------------------------

    def session(self):
        """A SQLAlchemy session on the server's database (for set-up and checks)."""
        from app.db import make_engine, make_session_factory, upgrade_database

        if self._engine is None:
            upgrade_database(self.database_url)
            self._engine = make_engine(self.database_url)
        return make_session_factory(self._engine)()

    def create_user(self, role: str = "researcher", username: str | None = None) -> tuple[str, str]:
        """A new user of ``role``; returns (user name, password)."""
        from app.accounts import auth

        username = username or f"{role}-{uuid.uuid4().hex[:8]}"
        password = auth.generate_password()
        with self.session() as session:
            auth.create_user(session, username, password, role)
            session.commit()
        return username, password

    # --- clients --------------------------------------------------------------------------------

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 30), **kwargs)

    def login(self, username: str, password: str) -> httpx.Client:
        """A client with the session cookie and the CSRF header of a logged-in user."""
        client = self.client()
        answer = client.post(
            "/api/v1/auth/login", json={"username": username, "password": password}
        )
        answer.raise_for_status()
        client.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
        return client

    def token_client(self, role: str = "researcher") -> httpx.Client:
        """A client authenticated with a new API token of a new user of ``role``."""
        session_client = self.login(*self.create_user(role))
        try:
            answer = session_client.post("/api/v1/auth/tokens", json={"name": "tests"})
            answer.raise_for_status()
            token = answer.json()["token"]
        finally:
            session_client.close()
        return self.client(headers={"Authorization": f"Bearer {token}"})

    def wait_for_job(self, client: httpx.Client, job_id: int, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = client.get(f"/api/v1/jobs/{job_id}").json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(0.3)
        raise TimeoutError(f"job {job_id} still {job['status']} after {timeout} s")

    def raw_request(
        self, head: str, body: bytes = b"", *, timeout: float = 30.0
    ) -> tuple[int, str]:
        """Send a hand-written HTTP/1.1 request (``head``: request line and headers, no blank
        line) and return (status, response text). For what httpx will not send, such as a
        Content-Length that the body does not match."""
        request = head.rstrip("\r\n").replace("\n", "\r\n") + "\r\n\r\n"
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as connection:
            connection.sendall(request.encode("latin-1") + body)
            received = b""
            while b"\r\n\r\n" not in received or not _complete(received):
                chunk = connection.recv(65536)
                if not chunk:
                    break
                received += chunk
        text = received.decode("latin-1")
        status = int(text.split(" ", 2)[1]) if text.startswith("HTTP/") else 0
        return status, text

    def close(self) -> None:
        self.stop()
        if self._engine is not None:
            self._engine.dispose()

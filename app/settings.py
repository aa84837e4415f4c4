"""Settings of the web app, read from ``SYNTUMOR_*`` environment variables (pydantic-settings).

Defaults keep everything under the data folder ``./var``: the SQLite database, the stored
volumes and results, the pulled models and the secret key used to sign session cookies (made
once, on first start, and kept in ``<data_dir>/secret_key``).
"""

from __future__ import annotations

import secrets
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from syntumor_core.volume import MAX_RESAMPLED_VOXELS

MiB = 1024 * 1024


class Settings(BaseSettings):
    """Everything the server, the worker and the CLI need to agree on."""

    model_config = SettingsConfigDict(env_prefix="SYNTUMOR_", extra="ignore")

    data_dir: Path = Field(Path("var"), description="Folder for the database, volumes, results.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default a SQLite file <data_dir>/syntumor.db."
    )
    host: str = "127.0.0.1"
    port: int = 8000
    secret_key: str | None = Field(None, description="Cookie signing key; default made once.")
    max_upload_mb: int = Field(1024, ge=1, description="Largest upload accepted, in MiB.")
    embedded_worker: bool = Field(True, description="Run one job worker thread in the server.")
    device: str | None = Field(None, description="torch device for jobs (default: CUDA if any).")
    job_heartbeat_s: float = Field(5.0, gt=0, description="How often a running job says alive.")
    stale_job_s: float = Field(60.0, gt=0, description="A running job silent this long is dead.")
    max_job_attempts: int = Field(2, ge=1, description="Tries before an interrupted job fails.")
    worker_poll_s: float = Field(0.5, gt=0, description="Idle worker's wait between polls.")
    secure_cookies: bool = Field(
        False,
        description="Always mark the session cookie Secure (it is anyway on requests that came "
        "over HTTPS, directly or through a trusted proxy).",
    )
    trusted_proxies: str = Field(
        "",
        description="Comma-separated IP addresses or networks of reverse proxies whose "
        "X-Forwarded-Proto and X-Forwarded-For are believed (e.g. '127.0.0.1,10.0.0.0/8'); "
        "empty: none, the connection itself counts.",
    )
    login_attempts: int = Field(
        5,
        ge=1,
        description="Failed logins an account gets before each further one doubles "
        "the wait (429 with Retry-After).",
    )
    login_attempts_per_address: int = Field(
        20, ge=1, description="The same for a client address (logins, and API or reader tokens)."
    )
    login_backoff_s: float = Field(
        2.0,
        gt=0,
        le=900,
        description="First wait after the free attempts, in seconds; it "
        "doubles with every further failure, up to 15 minutes.",
    )
    max_voxels: int = Field(
        MAX_RESAMPLED_VOXELS,
        ge=1_000_000,
        description="Memory budget: the most voxels a volume may have once resampled to a "
        "model's grid (checked at upload, at job start and by the CLI); 2**28 is 1 GiB per "
        "float32 copy.",
    )
    models_base_url: str | None = Field(
        None,
        description="A mirror for model downloads: the registered links' paths are fetched "
        "from this http(s) server instead (as `syntumor models pull --base-url`).",
    )

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to the SQLite file in the data folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'syntumor.db').resolve()}"

    @property
    def trusted_proxy_list(self) -> list[str]:
        return [host.strip() for host in self.trusted_proxies.split(",") if host.strip()]

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * MiB

    def resolved_secret_key(self) -> str:
        """The signing key: the configured one, else one made once and kept in the data folder."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret_key"
        if path.is_file():
            return path.read_text(encoding="utf-8").strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        path.write_text(key, encoding="utf-8")
        path.chmod(0o600)
        return key

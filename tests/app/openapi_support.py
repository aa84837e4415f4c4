"""Reading the app's OpenAPI document in tests (no server needed: the schema is static)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings


def load_spec(folder: Path) -> dict:
    """``/openapi.json`` of an app over an empty data folder (its lifespan migrates it)."""
    app = create_app(Settings(data_dir=folder, embedded_worker=False), start_worker=False)
    with TestClient(app) as client:
        answer = client.get("/openapi.json")
    assert answer.status_code == 200
    return answer.json()


def operations(spec: dict, paths: re.Pattern) -> Iterator[tuple[str, str, dict]]:
    """(METHOD, path, operation) of every operation whose path matches ``paths``."""
    for path, methods in spec["paths"].items():
        if paths.match(path):
            for method, operation in methods.items():
                yield method.upper(), path, operation


def component(spec: dict, ref: str) -> dict:
    """The schema a ``$ref`` names."""
    return spec["components"]["schemas"][ref.rsplit("/", 1)[1]]

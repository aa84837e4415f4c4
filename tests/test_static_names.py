"""Front-end files are named one way: lower case words joined by underscores (like Python)."""

import re
from pathlib import Path

STATIC = Path(__file__).resolve().parents[1] / "static"
NAME = re.compile(r"^[a-z][a-z0-9_]*\.(js|css)$")


def test_script_and_style_names_are_snake_case():
    files = [p for p in STATIC.rglob("*") if p.suffix in (".js", ".css")]
    assert files
    assert [p.name for p in files if not NAME.match(p.name)] == []

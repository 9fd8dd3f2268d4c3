"""Fixtures for the API tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    """A client of a fresh app on its own data directory."""
    with TestClient(create_app(Settings(data_dir=tmp_path / "data"))) as c:
        yield c

"""Shared fixtures: an isolated working directory and the real database/cache servers.

Service fixtures skip with a clear reason when a server is unreachable, except under
``KLEPTO_REQUIRE_SERVICES=1`` (set by ``.ci/run``), where unreachable means the test fails.
"""

from __future__ import annotations

import os
import socket
import uuid

import pytest

REQUIRE_SERVICES = os.environ.get("KLEPTO_REQUIRE_SERVICES") == "1"

POSTGRES_URL = os.environ.get(
    "KLEPTO_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MARIADB_URL = os.environ.get("KLEPTO_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
REDIS_URL = os.environ.get("KLEPTO_REDIS_URL", "redis://127.0.0.1:6379/0")


def _unavailable(service: str, reason: str) -> None:
    message = f"{service} unavailable: {reason}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} (KLEPTO_REQUIRE_SERVICES=1)")
    pytest.skip(message)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _sql_service(name: str, url: str, port: int) -> str:
    if not _port_open("127.0.0.1", port):
        _unavailable(name, f"nothing listens on 127.0.0.1:{port}")
    try:
        import sqlalchemy
    except ImportError as exc:  # the test extra installs the drivers
        _unavailable(name, f"driver missing ({exc}); pip install 'klepto[test]'")
    try:
        engine = sqlalchemy.create_engine(url)
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any driver or auth error makes the service unusable here
        _unavailable(name, f"{type(exc).__name__}: {exc}")
    return url


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """SQLAlchemy URL of the real PostgreSQL server (database ``test``)."""
    return _sql_service("PostgreSQL", POSTGRES_URL, 5432)


@pytest.fixture(scope="session")
def mariadb_url() -> str:
    """SQLAlchemy URL of the real MariaDB server (database ``test``)."""
    return _sql_service("MariaDB", MARIADB_URL, 3306)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the real Redis server."""
    if not _port_open("127.0.0.1", 6379):
        _unavailable("Redis", "nothing listens on 127.0.0.1:6379")
    try:
        import redis
    except ImportError as exc:
        _unavailable("Redis", f"client missing ({exc}); pip install 'klepto[test]'")
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except Exception as exc:  # connection or auth failure
        _unavailable("Redis", f"{type(exc).__name__}: {exc}")
    return REDIS_URL


@pytest.fixture
def unique_name() -> str:
    """A name no other test (or concurrent test run) uses, valid as a SQL identifier."""
    return "t_" + uuid.uuid4().hex[:16]


@pytest.fixture
def in_tmpdir(tmp_path, monkeypatch):
    """Run the test with the current directory set to a fresh temporary directory.

    Classic klepto creates files with default names (``memo.pkl``, ``memo``) in the CWD.
    """
    monkeypatch.chdir(tmp_path)
    return tmp_path

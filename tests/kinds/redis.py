"""The Redis archive on the real Redis server: a unique archive name per test, dropped after."""

from __future__ import annotations

import pytest

from klepto.archives import redis_archive
from tests.kinds import Kind


def _redis(tmp_path, request):
    url = request.getfixturevalue("redis_url")
    name = request.getfixturevalue("unique_name")
    request.addfinalizer(lambda: drop_redis_archive(url, name))
    return redis_archive(name, url=url, cached=False)


def drop_redis_archive(url: str, name: str) -> None:
    """Remove every Redis key of the archive ``name`` (entries, settings, locks)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        names = list(client.scan_iter(match=f"klepto:{name}:*", count=1000))
        if names:
            client.delete(*names)
    finally:
        client.close()


def _reopen(archive):
    return redis_archive(archive.name, cached=False)


KINDS = [Kind("redis", _redis, _reopen, marks=[pytest.mark.services])]

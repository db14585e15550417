"""Logging: per-call DEBUG records under ``klepto.memo`` (decided when a function is
decorated), evictions of ``size_limit`` at INFO, and never a print."""

from __future__ import annotations

import logging
import os

import pytest

import klepto
from klepto._memolog import call_logger


@pytest.fixture
def call_logging():
    klepto.log_calls()
    yield
    klepto.log_calls(False)


def messages(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "klepto.memo"]


def test_calls_are_logged_when_switched_on_before_decorating(call_logging, caplog):
    @klepto.lru_cache(maxsize=1)
    def f(x):
        return x

    with caplog.at_level(logging.DEBUG, logger="klepto.memo"):
        f(1), f(1), f(2)
    assert messages(caplog) == [
        "test_calls_are_logged_when_switched_on_before_decorating.<locals>.f: miss (1,)",
        "test_calls_are_logged_when_switched_on_before_decorating.<locals>.f: hit (1,)",
        "test_calls_are_logged_when_switched_on_before_decorating.<locals>.f: miss (2,)",
        "test_calls_are_logged_when_switched_on_before_decorating.<locals>.f: evict (1,)",
    ]
    assert all(r.levelno == logging.DEBUG for r in caplog.records)


def test_loads_are_logged(call_logging, caplog):
    store = klepto.archives.dict_archive("logged", cached=False)
    store[(3,)] = 9

    @klepto.lru_cache()
    def square(x):
        return x * x

    square.archive(store)
    with caplog.at_level(logging.DEBUG, logger="klepto.memo"):
        square(3)
    assert messages(caplog)[-1].endswith("square: load (3,)")


def test_functions_decorated_earlier_stay_silent(caplog):
    @klepto.lru_cache()
    def quiet(x):
        return x

    klepto.log_calls()
    try:
        with caplog.at_level(logging.DEBUG, logger="klepto.memo"):
            quiet(1), quiet(1)
    finally:
        klepto.log_calls(False)
    assert messages(caplog) == []
    assert quiet.__memo__.log is None


def test_a_debug_enabled_logger_at_decoration_time_switches_it_on():
    logger = logging.getLogger("klepto.memo")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        assert call_logger() is logger
    finally:
        logger.setLevel(level)
    assert call_logger() is None or logger.isEnabledFor(logging.DEBUG)


def test_size_limit_evictions_are_logged_at_info(tmp_path, caplog):
    archive = klepto.archives.dir_archive(str(tmp_path / "d"), cached=False, size_limit=4000)
    with caplog.at_level(logging.DEBUG, logger="klepto.archives"):
        for i in range(12):
            archive[i] = os.urandom(1000)
    info = [r for r in caplog.records if r.levelno == logging.INFO]
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG and "evicted" in r.msg]
    assert info and "least recently written" in info[0].getMessage()
    assert len(debug) >= 1


def test_the_library_never_prints(tmp_path, capsys, call_logging):
    @klepto.lru_cache(maxsize=2, ttl=5, cache=klepto.archives.dir_archive(str(tmp_path / "p")))
    def f(x):
        return x

    for x in range(5):
        f(x)
    f.dump()
    f.expire()
    assert capsys.readouterr() == ("", "")

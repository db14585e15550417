"""Classic semantics of sqltable_archive and sql_archive (spec 7.8, 7.9) and klepto's fixes.

The test_alchemy flow runs against both classes on SQLite and on the real PostgreSQL and
MariaDB servers; settings, plain values and keys are checked on SQLite.
"""

from __future__ import annotations

import pickle

import dill
import pytest
import sqlalchemy as sa

from klepto.archives import _sqlname, cache, sql_archive, sqltable_archive
from klepto.archives._sqlschema import check_identifier, database_url
from klepto.errors import ArchiveClosedError, SignatureError
from tests.kinds.sql import drop_server_database, drop_server_table


# --- names and URLs ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (None, (None, None)),
        ("?table=bar", (None, "bar")),
        ("table=bar", (None, "bar")),
        ("sqlite:///foo.db?table=bar", ("sqlite:///foo.db", "bar")),
        ("sqlite:///foo.db", ("sqlite:///foo.db", None)),
        ("postgresql://user@host/db?table=t", ("postgresql://user@host/db", "t")),
        ("bar", (None, "bar")),
    ],
)
def test_sqlname(name, expected):
    assert _sqlname(name) == expected


@pytest.mark.parametrize(
    ("database", "expected"),
    [
        (None, "sqlite:///:memory:"),
        ("sqlite:///", "sqlite:///:memory:"),
        ("foo", "sqlite:///foo"),
        ("sqlite:///foo.db", "sqlite:///foo.db"),
        ("postgresql://user@host/", "postgresql://user@host/defaultdb"),
        ("mysql+pymysql://root@127.0.0.1:3306", "mysql+pymysql://root@127.0.0.1:3306/defaultdb"),
        ("postgresql://user@host/mydb", "postgresql://user@host/mydb"),
    ],
)
def test_database_url_defaults(database, expected):
    url = database_url(database)
    assert url.render_as_string(hide_password=False).replace("%3A", ":") == expected


@pytest.mark.parametrize(
    "database",
    ["postgresql://u@h/foo; DROP DATABASE bar", "mysql+pymysql://u@h/a'b", "postgresql://u@h/1x"],
)
def test_server_database_names_must_be_identifiers(database):
    with pytest.raises(ValueError, match="database name"):
        database_url(database)


@pytest.mark.parametrize("table", ['x"; DROP TABLE y; --', "a'b", "t" * 200, "1abc", "", "a-b"])
def test_table_names_must_be_identifiers(table):
    with pytest.raises(ValueError, match="table name"):
        check_identifier(table)
    with pytest.raises(ValueError, match="table name"):
        sqltable_archive(f"sqlite:///:memory:?table={table}" if table else "?table=1")


def test_default_table_and_database():
    d = sqltable_archive(cached=False)
    assert d.name == "sqlite:///:memory:?table=memo"
    assert d.state["root"] == "sqlite:///:memory:" and d.state["id"] == "memo"
    word = sqltable_archive("results", cached=False)  # a bare word is a table name
    assert word.name == "sqlite:///:memory:?table=results"
    assert sql_archive(cached=False).name == "sqlite:///:memory:"


def test_file_name_without_slash_is_sqlite(in_tmpdir):
    d = sql_archive("foo.db", cached=False)
    d["a"] = 1
    assert d.name == "sqlite:///foo.db"
    assert (in_tmpdir / "foo.db").exists()
    assert oct((in_tmpdir / "foo.db").stat().st_mode & 0o777) == "0o600"
    d.close()


# --- state, name, repr ------------------------------------------------------------------
def test_sqltable_state_name_repr(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    d = sqltable_archive(f"{url}?table=tab", cached=False, echo=False)
    d["a"] = 1
    assert d.name == f"{url}?table=tab"
    assert repr(d) == f"sqltable_archive('{url}?table=tab' {{'a': 1}}, cached=False)"
    state = d.state
    assert state["root"] == url and state["id"] == "tab"
    assert state["serialized"] is True and state["echo"] is False
    assert state["protocol"] == dill.DEFAULT_PROTOCOL
    assert d.__state__["config"] == {"echo": False}
    for attribute in ("name", "state", "archive"):
        with pytest.raises(ValueError, match="cannot set new archive"):
            setattr(d, attribute, None)
    front = sqltable_archive(f"{url}?table=tab", {"b": 2})
    assert repr(front) == f"sqltable_archive('{url}?table=tab', {{'b': 2}}, cached=True)"
    assert isinstance(front, sqltable_archive) and isinstance(d, sqltable_archive)
    assert front.__type__ is sqltable_archive


def test_sql_state_name_repr(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    d = sql_archive(url, cached=False)
    d["a"] = 1
    assert d.name == url
    assert repr(d) == f"sql_archive('{url}', {{'a': 1}}, cached=False)"
    assert d.state == {"id": url, "serialized": True, "protocol": dill.DEFAULT_PROTOCOL}
    assert not isinstance(d, sqltable_archive)


def test_password_is_hidden_in_name():
    d = sqltable_archive.__backend__.__new__(sqltable_archive.__backend__)
    d._url = database_url("postgresql://user:secret@host/db")
    d._table = "memo"
    assert "secret" not in d.name and "***" in d.name
    assert "secret" in d._location()[0]  # still used to reconnect


# --- the test_alchemy flow ----------------------------------------------------------------
_BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres_url", id="postgresql", marks=pytest.mark.services),
    pytest.param("mariadb_url", id="mariadb", marks=pytest.mark.services),
]


@pytest.fixture(params=_BACKENDS)
def location(request, tmp_path, unique_name):
    """A database URL for one test: a SQLite file, or a fresh server database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/alchemy.db"
    base = sa.engine.make_url(request.getfixturevalue(request.param))
    url = base.set(database="k" + unique_name).render_as_string(hide_password=False)
    request.addfinalizer(lambda: drop_server_database(url))
    return url


def _alchemy_flow(d, copy_name=None):
    d["a"] = 1
    d["b"] = "foo"
    d["min"] = min
    d["square"] = lambda x: x**2
    assert d["a"] == 1 and d["b"] == "foo" and d["min"] is min and d["square"](3) == 9
    del d["square"]
    c = d.copy(copy_name)
    assert c == d
    assert d.get("a") == 1 and d.get("zz") is None
    assert d.pop("a") == 1
    assert c != d
    assert "b" in d and "a" not in d
    assert d.fromkeys("abc") == dict(a=None, b=None, c=None)
    assert set(c.keys()) == {"a", "b", "min"}
    c.pop("a")
    assert set(d.keys()) == set(c.keys())
    assert set(d.items()) == set(c.items())
    assert set(map(repr, d.values())) == set(map(repr, c.values()))
    assert d.setdefault(*d.popitem()) in ("foo", min)
    d.update({"z": 0})
    assert d.popkeys(["z"]) == [0]
    assert next(iter(d)) in d
    d.clear()
    assert d.__asdict__() == {}
    assert len(d) == 0
    return c


@pytest.mark.parametrize("cls", [sqltable_archive, sql_archive], ids=["sqltable", "sql"])
def test_alchemy_flow(cls, location, request):
    if cls is sqltable_archive:
        name, copy_name = f"{location}?table=flow", "flowcopy"  # same database
    else:
        name, copy_name = location, location.replace("alchemy.db", "copy.db") + "c"
        if not location.startswith("sqlite"):
            request.addfinalizer(lambda: drop_server_database(copy_name))
    d = cls(name, cached=False)
    c = _alchemy_flow(d, copy_name)
    assert c.__asdict__().keys() == {"b", "min"}  # a real copy, not a view
    assert len(cls(name, cached=False).copy()) == 0  # copy() at the same place: same rows
    d.__drop__()
    c.__drop__()
    assert d.closed
    with pytest.raises(ArchiveClosedError):
        d["a"] = 1


@pytest.mark.parametrize("cls", [sqltable_archive, sql_archive], ids=["sqltable", "sql"])
def test_alchemy_flow_in_memory(cls):
    d = cls(cached=False)
    c = _alchemy_flow(d)
    assert c.__asdict__().keys() == {"b", "min"}  # an in-memory copy is a real copy
    d.__drop__()


def test_copy_to_another_table_copies_rows(tmp_path):
    d = sqltable_archive(f"sqlite:///{tmp_path}/c.db?table=one", cached=False)
    d.update(a=1, b=[2])
    other = d.copy("two")  # a bare table name: same database
    assert other.name == f"sqlite:///{tmp_path}/c.db?table=two"
    assert other == d
    d["a"] = 5
    assert other["a"] == 1
    elsewhere = d.copy(f"sqlite:///{tmp_path}/d.db?table=three")
    assert elsewhere.__asdict__() == {"a": 5, "b": [2]}


def test_drop_database_removes_sqlite_file(tmp_path):
    path = tmp_path / "gone.db"
    d = sqltable_archive(f"sqlite:///{path}?table=t", cached=False)
    d["a"] = 1
    d.__drop__(database=True)
    assert not path.exists()
    s = sql_archive(f"sqlite:///{tmp_path}/whole.db", cached=False)
    s["a"] = 1
    s.__drop__()  # klepto's tables were all there was: the file goes too
    assert not (tmp_path / "whole.db").exists()


def test_sql_archive_drop_keeps_unrelated_tables(tmp_path):
    url = f"sqlite:///{tmp_path}/shared.db"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE unrelated (x INTEGER)")
    s = sql_archive(url, cached=False)
    s["a"] = 1
    assert list(s) == ["a"]  # unrelated tables never appear as keys
    s.__drop__()
    assert sa.inspect(engine).get_table_names() == ["unrelated"]
    engine.dispose()


@pytest.mark.services
def test_server_database_is_created_and_dropped(postgres_url, unique_name):
    url = sa.engine.make_url(postgres_url).set(database="k" + unique_name)
    text = url.render_as_string(hide_password=False)
    try:
        d = sqltable_archive(f"{text}?table=t", cached=False)
        d["a"] = 1
        assert sqltable_archive(f"{text}?table=t", cached=False)["a"] == 1
        d.__drop__(database=True)
        engine = sa.create_engine(postgres_url)
        with engine.connect() as conn:
            found = conn.exec_driver_sql(
                "SELECT 1 FROM pg_database WHERE datname = %(n)s", {"n": url.database}
            ).first()
        engine.dispose()
        assert found is None
    finally:
        drop_server_database(text)


# --- keys, values, settings ---------------------------------------------------------------
def test_keys_keep_their_types(tmp_path):
    """Classic returned 1 as '1'; here keys round-trip with their types."""
    d = sqltable_archive(f"sqlite:///{tmp_path}/k.db", cached=False)
    keys = [1, "1", 1.5, b"1", (1, "1"), None, frozenset({1}), ("f", (1, 2.5), b"x")]
    for i, key in enumerate(keys):
        d[key] = i
    again = sqltable_archive(f"sqlite:///{tmp_path}/k.db", cached=False)
    assert sorted(map(repr, again)) == sorted(map(repr, keys))
    assert [again[key] for key in keys] == list(range(len(keys)))


def test_serialized_false_stores_plain_values_only(tmp_path):
    d = sqltable_archive(f"sqlite:///{tmp_path}/p.db", cached=False, serialized=False)
    values = {"s": "text", "i": 7, "f": 2.5, "b": b"\x00\xff", "n": None, "t": True}
    d.update(values)
    assert d.__asdict__() == values
    assert type(d["t"]) is bool
    for bad in ([1], {"a": 1}, min, (1, 2)):
        with pytest.raises(TypeError, match="serialized=False"):
            d["bad"] = bad
    assert "bad" not in d
    assert d.state["serialized"] is False
    reopened = sqltable_archive(f"sqlite:///{tmp_path}/p.db", cached=False)
    assert reopened.state["serialized"] is False and reopened["b"] == b"\x00\xff"


def test_settings_are_recorded_and_honoured(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db?table=t"
    d = sqltable_archive(url, cached=False, serializer="safe", codec="zlib")
    d["a"] = (1, b"x")
    settings = d.settings()
    assert settings["serializer"] == "safe" and settings["codec"] == "zlib"
    assert settings["kind"] == "sqltable" and settings["format"] == 1
    again = sqltable_archive(url, cached=False)  # nothing repeated
    assert again.settings() == settings and again["a"] == (1, b"x")
    with pytest.raises(ValueError, match="serializer"):
        sqltable_archive(url, cached=False, serializer="dill")
    with pytest.raises(ValueError, match="codec"):
        sqltable_archive(url, cached=False, codec="bz2")
    with pytest.raises(ValueError, match="not signed"):
        sqltable_archive(url, cached=False, key=b"k")


def test_json_protocol_selects_json(tmp_path):
    d = sqltable_archive(f"sqlite:///{tmp_path}/j.db", cached=False, protocol="json")
    d["a"] = {"x": [1, 2]}
    assert d.settings()["serializer"] == "json"
    assert d["a"] == {"x": [1, 2]}


def test_signed_archive_needs_its_key(tmp_path, monkeypatch):
    monkeypatch.delenv("KLEPTO_HMAC_KEY", raising=False)
    url = f"sqlite:///{tmp_path}/h.db"
    d = sqltable_archive(url, cached=False, key=b"secret")
    d["a"] = 1
    assert d.settings()["signed"] is True
    with pytest.raises(SignatureError):
        sqltable_archive(url, cached=False)
    assert sqltable_archive(url, cached=False, key=b"secret")["a"] == 1
    with pytest.raises(SignatureError):
        sqltable_archive(url, cached=False, key=b"wrong")["a"]


def test_table_kinds_do_not_mix(tmp_path):
    url = f"sqlite:///{tmp_path}/m.db"
    sql_archive(url, cached=False)["a"] = 1
    with pytest.raises(ValueError, match="'sql' archive"):
        sqltable_archive(f"{url}?table=klepto_sql_archive", cached=False)
    with pytest.raises(ValueError, match="reserved"):
        sqltable_archive(f"{url}?table=klepto_settings", cached=False)


def test_add_is_insert_if_absent(tmp_path):
    d = sqltable_archive(f"sqlite:///{tmp_path}/a.db", cached=False)
    assert d.add("k", 1) is True
    assert d.add("k", 2) is False
    assert d["k"] == 1


def test_transaction_is_atomic(tmp_path):
    d = sqltable_archive(f"sqlite:///{tmp_path}/t.db", cached=False)
    d["keep"] = 0
    with pytest.raises(RuntimeError), d.transaction():
        d["a"] = 1
        d["keep"] = 1
        assert d["a"] == 1  # read-your-writes inside the transaction
        raise RuntimeError("abort")
    assert d.__asdict__() == {"keep": 0}
    with d.transaction():
        d.update(x=1, y=2)
        del d["keep"]
    assert d.__asdict__() == {"x": 1, "y": 2}


def test_bulk_update_is_one_transaction(tmp_path):
    d = sqltable_archive(f"sqlite:///{tmp_path}/u.db", cached=False)
    statements = []
    sa.event.listen(d.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    d.update({i: i for i in range(1200)})
    inserts = [s for s in statements if s.startswith("INSERT")]
    assert len(inserts) == 3  # batches of 500 rows, each one executemany
    assert len(d) == 1200


def test_pickles_by_reference_and_opens_lazily(tmp_path):
    d = sqltable_archive(f"sqlite:///{tmp_path}/r.db?table=t", cached=False, codec="zlib")
    d["a"] = 1
    clone = pickle.loads(pickle.dumps(d))
    assert clone._codec is None  # nothing opened yet
    assert clone["a"] == 1 and clone.settings()["codec"] == "zlib"
    front = dill.loads(dill.dumps(sqltable_archive(d.name, {"b": 2})))
    assert front == {"b": 2} and front.archive["a"] == 1


def test_cache_front_dump_and_load(tmp_path):
    url = f"sqlite:///{tmp_path}/f.db"
    front = sql_archive(url)
    assert isinstance(front, cache)
    front["a"] = 1
    front.dump()
    fresh = sql_archive(url)
    assert fresh == {}
    fresh.load()
    assert fresh == {"a": 1}


def test_memoized_function_persists(tmp_path):
    from klepto import inf_cache

    url = f"sqlite:///{tmp_path}/memo.db"
    calls = []

    def work(x, y=1):
        calls.append((x, y))
        return {"sum": x + y}

    first = inf_cache(cache=sql_archive(url, cached=False))(work)
    assert first(1, 2) == {"sum": 3} and first(1, 2) == {"sum": 3}
    second = inf_cache(cache=sql_archive(url, cached=False))(work)
    assert second(1, 2) == {"sum": 3}
    assert calls == [(1, 2)]


def test_server_table_names_differing_in_case_collide_loudly(tmp_path):
    url = f"sqlite:///{tmp_path}/case.db"
    sqltable_archive(f"{url}?table=memo", cached=False)["a"] = 1
    with pytest.raises(ValueError, match="differing only in case"):
        sqltable_archive(f"{url}?table=Memo", cached=False)


@pytest.mark.services
@pytest.mark.parametrize("fixture", ["postgres_url", "mariadb_url"])
def test_case_collision_on_servers(request, fixture, unique_name):
    url = request.getfixturevalue(fixture)
    request.addfinalizer(lambda: drop_server_table(url, unique_name))
    sqltable_archive(f"{url}?table={unique_name}", cached=False)["a"] = 1
    with pytest.raises(ValueError, match="differing only in case"):
        sqltable_archive(f"{url}?table={unique_name.upper()}", cached=False)


@pytest.mark.parametrize("key", ["", "memo", "e\u0301", "\ud800", "k" * 300])
def test_str_key_digest_is_the_general_encoding(key):
    """stable_bytes' fast path for str keys (SQL rows are located by it) changes no byte."""
    from klepto import _canonical

    general = bytearray()
    _canonical._encode_text(key, general)
    assert _canonical.stable_bytes(key) == bytes(general)

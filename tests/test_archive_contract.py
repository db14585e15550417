"""The archive contract: every archive kind (tests/kinds/) behaves as a MutableMapping with
klepto's classic extras, raw and behind a cache, and persistent kinds reopen intact."""

from __future__ import annotations

import pickle

import dill
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from klepto.archives import cache
from klepto.errors import ArchiveClosedError
from tests.kinds import all_kinds

KINDS = all_kinds()


@pytest.fixture(params=[pytest.param(k, id=k.name, marks=k.marks) for k in KINDS])
def kind(request):
    return request.param


@pytest.fixture
def archive(kind, tmp_path, request):
    made = kind.make(tmp_path, request)
    yield made
    if not made.closed:
        made.clear()
        made.close()


def test_empty_archive(archive):
    assert len(archive) == 0
    assert list(archive) == []
    assert archive.__asdict__() == {}
    assert "x" not in archive
    with pytest.raises(KeyError):
        archive["x"]


def test_set_get_delete(archive):
    archive["a"] = 1
    archive["b"] = [1, 2, {"c": None}]
    assert archive["a"] == 1
    assert archive["b"] == [1, 2, {"c": None}]
    assert len(archive) == 2
    assert set(archive) == {"a", "b"}
    archive["a"] = 2  # overwrite
    assert archive["a"] == 2
    assert len(archive) == 2
    del archive["a"]
    assert "a" not in archive
    with pytest.raises(KeyError):
        del archive["a"]
    assert len(archive) == 1


def test_non_string_keys(archive, kind):
    if not kind.exact_keys:
        pytest.skip("keys come back as strings in this kind (classic layout)")
    keys = [1, 2.5, (1, "x"), b"bytes", None, frozenset({1, 2}), ("nested", (1, 2))]
    for i, key in enumerate(keys):
        archive[key] = i
    for i, key in enumerate(keys):
        assert archive[key] == i
    assert sorted(map(repr, archive)) == sorted(map(repr, keys))


def test_equal_numbers_share_a_key(archive, kind):
    if not kind.exact_keys:
        pytest.skip("keys come back as strings in this kind (classic layout)")
    archive[3] = "three"
    assert archive[3.0] == "three"
    archive[3.0] = "again"
    assert len(archive) == 1
    assert archive[3] == "again"


def test_mapping_methods(archive):
    archive.update({"a": 1, "b": 2}, c=3)
    assert archive.__asdict__() == {"a": 1, "b": 2, "c": 3}
    assert archive.get("a") == 1
    assert archive.get("zz") is None
    assert archive.get("zz", 5) == 5
    assert archive.pop("a") == 1
    assert archive.pop("a", "gone") == "gone"
    with pytest.raises(KeyError):
        archive.pop("a")
    assert archive.setdefault("b", 99) == 2
    assert archive.setdefault("d", 4) == 4
    assert archive["d"] == 4
    key, value = archive.popitem()
    assert key not in archive
    assert {"b": 2, "c": 3, "d": 4}[key] == value
    assert set(archive.keys()) | {key} == {"b", "c", "d"}
    assert sorted(archive.values()) == sorted(v for k, v in archive.items())
    archive.clear()
    assert len(archive) == 0


def test_popkeys(archive):
    archive.update(a=1, b=2, c=3)
    with pytest.raises(KeyError):
        archive.popkeys(["a", "zz"])
    assert archive.__asdict__() == {"a": 1, "b": 2, "c": 3}  # nothing popped
    assert archive.popkeys(["a", "b"]) == [1, 2]
    assert archive.popkeys(["c", "zz"], None) == [3, None]
    assert len(archive) == 0


def test_fromkeys_and_equality(archive):
    assert archive.fromkeys("abc") == {"a": None, "b": None, "c": None}
    archive.update(a=1)
    assert archive == {"a": 1}
    assert archive != {"a": 2}


def test_copy_has_same_contents(archive, tmp_path):
    archive.update(a=1, b=[2])
    duplicate = archive.copy()
    assert duplicate == archive
    assert duplicate.__asdict__() == {"a": 1, "b": [2]}


def test_callable_values(archive, kind):
    if not kind.supports_any_value:
        pytest.skip("this kind stores only plain values")
    archive["min"] = min
    archive["square"] = lambda x: x * x
    assert archive["min"] is min
    assert archive["square"](3) == 9


def test_classic_cache_interface_is_inert(archive):
    assert archive.archived() is False
    with pytest.raises(ValueError):
        archive.archived(True)
    with pytest.raises(TypeError):
        archive.archived(True, False)
    archive.load()
    archive.dump()
    archive.sync()
    with pytest.raises(ValueError):
        archive.drop()
    with pytest.raises(ValueError):
        archive.open(archive)
    assert archive.archive is archive
    for attribute in ("name", "state", "archive"):
        with pytest.raises(ValueError):
            setattr(archive, attribute, None)


def test_closed_archive_raises(kind, tmp_path, request):
    made = kind.make(tmp_path, request)
    made["a"] = 1
    made.close()
    assert made.closed
    with pytest.raises(ArchiveClosedError):
        made["a"]
    with pytest.raises(ArchiveClosedError):
        made["b"] = 2
    with pytest.raises(ArchiveClosedError):
        len(made)


def test_context_manager_closes(kind, tmp_path, request):
    with kind.make(tmp_path, request) as made:
        made["a"] = 1
    assert made.closed


def test_transaction_groups_writes(archive):
    with archive.transaction():
        archive["a"] = 1
        archive["b"] = 2
    assert archive.__asdict__() == {"a": 1, "b": 2}


def test_cache_front(archive):
    front = cache(archive=archive)
    assert front.archived()
    front["a"] = 1
    assert "a" not in archive  # memory only until dumped
    front.dump()
    assert archive["a"] == 1
    archive["b"] = 2
    front.load("b", "missing")
    assert front == {"a": 1, "b": 2}
    front.clear()
    front.load()
    assert front == {"a": 1, "b": 2}
    front["c"] = 3
    front.sync()
    assert archive.__asdict__() == {"a": 1, "b": 2, "c": 3}
    front.pop("a")
    front.sync(clear=True)
    assert archive.__asdict__() == {"b": 2, "c": 3}
    front.archived(False)
    assert not front.archived()
    front.archived(True)
    assert front.archive is archive


def test_reopen_sees_committed_data(kind, tmp_path, request):
    if kind.reopen is None:
        pytest.skip("not a persistent kind")
    made = kind.make(tmp_path, request)
    made.update(a=1, b={"x": [1, 2]})
    again = kind.reopen(made)
    assert again.__asdict__() == {"a": 1, "b": {"x": [1, 2]}}
    again["c"] = 3
    assert made["c"] == 3
    again.close()
    made.clear()
    made.close()


def test_pickles_by_reference(kind, tmp_path, request):
    made = kind.make(tmp_path, request)
    made["a"] = 1
    for module in (pickle, dill):
        try:
            clone = module.loads(module.dumps(made))
        except (pickle.PicklingError, TypeError) as exc:  # pragma: no cover - reported below
            pytest.fail(f"{kind.name} archive does not pickle with {module.__name__}: {exc}")
        assert clone["a"] == 1
        if kind.reopen is not None:  # the clone is a second view of the same storage
            clone["b"] = 2
            assert made["b"] == 2
            del made["b"]
    made.clear()
    made.close()


class ArchiveMachine(RuleBasedStateMachine):
    """Random sequences of operations: the archive always equals a plain dict model."""

    archive_factory = None

    def __init__(self):
        super().__init__()
        self.archive = type(self).archive_factory()
        self.model = {}

    keys = st.one_of(st.text(max_size=8), st.integers(-5, 5), st.tuples(st.integers(0, 3)))
    values = st.one_of(st.none(), st.integers(), st.text(max_size=20), st.lists(st.integers()))

    @rule(key=keys, value=values)
    def set(self, key, value):
        self.archive[key] = value
        self.model[key] = value

    @rule(key=keys)
    def delete(self, key):
        if key in self.model:
            del self.archive[key]
            del self.model[key]
        else:
            with pytest.raises(KeyError):
                del self.archive[key]

    @rule(key=keys, default=values)
    def pop(self, key, default):
        assert self.archive.pop(key, default) == self.model.pop(key, default)

    @rule(items=st.dictionaries(keys, values, max_size=4))
    def update(self, items):
        self.archive.update(items)
        self.model.update(items)

    @rule()
    def clear(self):
        self.archive.clear()
        self.model.clear()

    @invariant()
    def same_as_model(self):
        assert len(self.archive) == len(self.model)
        assert self.archive.__asdict__() == self.model

    def teardown(self):
        self.archive.clear()
        self.archive.close()


def test_state_machine_against_dict(kind, tmp_path, request):
    if not kind.exact_keys:
        pytest.skip("keys come back as strings in this kind (classic layout)")
    counter = iter(range(10**6))

    def factory():
        folder = tmp_path / f"sm{next(counter)}"
        folder.mkdir()
        return kind.make(folder, request)

    machine = type("Machine", (ArchiveMachine,), {"archive_factory": staticmethod(factory)})
    machine = settings(
        max_examples=15,
        stateful_step_count=20,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )(machine)
    machine.TestCase().runTest()


def test_add_stores_only_when_absent(archive):
    assert archive.add("k", 1) is True
    assert archive.add("k", 2) is False
    assert archive["k"] == 1
    del archive["k"]
    assert archive.add("k", 3) is True
    assert archive["k"] == 3

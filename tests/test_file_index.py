"""The file_archive key index: sorted tables, merges, the cascade, the recent dict and the
journal, checked against plain dict models."""

from __future__ import annotations

import random
from itertools import pairwise

import pytest

from klepto.archives import _fileindex
from klepto.archives._fileindex import RATIO, TOMB, KeyIndex, Table, cascade, merge, record_order


def digest(n: int, collide: bool = False) -> bytes:
    """A 16-byte digest; ``collide`` makes many digests share their first half."""
    high = (n % 3) if collide else n * 2654435761 % (1 << 64)
    return high.to_bytes(8, "big") + (n * 40503 % (1 << 64)).to_bytes(8, "big")


def table_of(model: dict[bytes, int]) -> Table:
    return Table.from_entries(
        [(d, rec, 0 if rec & TOMB else rec + 1000) for d, rec in model.items()]
    )


def as_dict(table: Table) -> dict[bytes, int]:
    out = {}
    for i in range(len(table)):
        out[table.hi[i].to_bytes(8, "big") + table.lo[i].to_bytes(8, "big")] = table.rec[i]
    return out


@pytest.mark.parametrize("collide", [False, True])
def test_find_and_order(collide):
    model = {digest(n, collide): n for n in range(500)}
    table = table_of(model)
    keys = [(table.hi[i], table.lo[i]) for i in range(len(table))]
    assert keys == sorted(keys)
    for d, rec in model.items():
        hi, lo = int.from_bytes(d[:8], "big"), int.from_bytes(d[8:], "big")
        i = table.find(hi, lo)
        assert table.rec[i] == rec and table.off[i] == rec + 1000
    assert table.find(7, 7) == -1
    assert Table.decode(table.encode()).rec == table.rec
    with pytest.raises(ValueError):
        Table.decode(table.encode()[:-1])


@pytest.mark.parametrize("seed", range(8))
def test_merge_matches_dict_update(seed):
    rng = random.Random(seed)
    collide = seed % 2 == 1
    older = {
        digest(rng.randrange(400), collide): rng.randrange(10**6) for _ in range(rng.randrange(300))
    }
    newer = {
        digest(rng.randrange(400), collide): rng.randrange(10**6)
        | (TOMB if rng.random() < 0.2 else 0)
        for _ in range(rng.randrange(300))
    }
    kept = merge(table_of(newer), table_of(older), keep_tombs=True)
    assert as_dict(kept) == {**older, **newer}
    dropped = merge(table_of(newer), table_of(older), keep_tombs=False)
    assert as_dict(dropped) == {d: r for d, r in {**older, **newer}.items() if not r & TOMB}


def test_cascade_keeps_few_tables_and_the_newest_values():
    rng = random.Random(3)
    tables: list[Table] = []
    model: dict[bytes, int] = {}
    record = 0
    for _ in range(200):
        batch = {}
        for _ in range(50):
            d = digest(rng.randrange(3000))
            batch[d] = record | (TOMB if rng.random() < 0.1 else 0)
            record += 1
        model.update(batch)
        tables = cascade(tables, table_of(batch))
        sizes = [len(t) for t in tables]
        assert all(a > RATIO * b for a, b in pairwise(sizes)), sizes
        assert not any(rec & TOMB for rec in tables[0].rec)  # nothing older to hide
    combined: dict[bytes, int] = {}
    for table in tables:
        combined.update(as_dict(table))
    assert {d: r for d, r in combined.items() if not r & TOMB} == {
        d: r for d, r in model.items() if not r & TOMB
    }
    assert len(tables) <= 5


def test_key_index_counts_lookups_and_rollback():
    index = KeyIndex()
    index.note_set(digest(1), 0, False)
    index.note_set(digest(2), 1, False)
    index.note_set(digest(1), 2, True)
    index.note_delete(digest(2), 3)
    assert (index.live, index.dead) == (1, 3)
    assert index.locate(digest(1)) == (2, 0) and index.locate(digest(2)) is None
    index.begin()
    index.note_set(digest(3), 4, False)
    index.note_clear(5)
    index.note_set(digest(4), 6, False)
    assert index.locate(digest(1)) is None and index.live == 1
    index.rollback()
    assert (index.live, index.dead) == (1, 3)
    assert index.locate(digest(1)) == (2, 0) and index.locate(digest(3)) is None


def test_tables_and_recent_together():
    index = KeyIndex()
    for n in range(40):
        index.note_set(digest(n), n, False)
    saved = cascade([], index.recent_table(lambda numbers: [5000 + n for n in numbers]))
    index.adopt(saved, 40)
    assert index.recent == {} and index.locate(digest(7)) == (7, 5007)
    index.note_delete(digest(7), 40)
    index.note_set(digest(8), 41, True)
    assert index.locate(digest(7)) is None and index.locate(digest(8)) == (41, 0)
    merged = index.merged(lambda numbers: [6000 + n for n in numbers])
    assert len(merged) == 39
    order = [merged.rec[i] for i in record_order(merged)]
    assert order == sorted(order) and order[-1] == 41


@pytest.mark.parametrize("limit", [0, 10, 1 << 16])
@pytest.mark.parametrize("collide", [False, True])
def test_lookups_agree_whether_tables_are_searched_as_lists_or_arrays(monkeypatch, limit, collide):
    monkeypatch.setattr(_fileindex, "SEARCH_LIST_MAX", limit)
    index = KeyIndex()
    small = {digest(n, collide): n for n in range(8)}
    big = {digest(n, collide): n for n in range(100, 160)}
    index.reset([table_of(big), table_of(small)], 200, 68, 0)
    for d, rec in {**big, **small}.items():
        assert index.locate(d) == (rec, rec + 1000)
    assert index.locate(digest(999, collide)) is None
    for table in index.tables:
        assert isinstance(table.search, list) == (len(table) <= limit)

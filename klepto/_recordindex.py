"""The record -> frame index of a record file: an append-only tree of index pages.

Level 0 lists frames as ``(first record number, frame offset)``; level ``h`` lists full pages
of level ``h - 1``. A level's entries are kept in memory until ``fanout`` of them exist; then
the writer appends them as one immutable INDEX page and lists that page one level up. So
memory holds at most ``fanout`` entries per level (the "rightmost path"), a lookup reads one
page per level below the top, and nothing is ever rewritten in place. Checkpoint blocks
save the in-memory part so that opening a file never replays more than a bounded tail.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable

PageLoader = Callable[[int, int], tuple[list[int], list[int]]]


class FrameIndex:
    """The in-memory rightmost path: per level, parallel lists of first records and offsets."""

    __slots__ = ("fanout", "firsts", "offsets")

    def __init__(self, fanout: int, levels: list[tuple[list[int], list[int]]] | None = None):
        self.fanout = fanout
        if levels:
            self.firsts = [list(f) for f, _ in levels]
            self.offsets = [list(o) for _, o in levels]
        else:
            self.firsts = [[]]
            self.offsets = [[]]

    def copy(self) -> FrameIndex:
        return FrameIndex(self.fanout, self.levels())

    def levels(self) -> list[tuple[list[int], list[int]]]:
        return list(zip(self.firsts, self.offsets))

    def add(self, level: int, first: int, offset: int) -> None:
        while len(self.firsts) <= level:
            self.firsts.append([])
            self.offsets.append([])
        firsts = self.firsts[level]
        if firsts and first < firsts[-1]:
            raise ValueError("index entries must be added in record order")
        firsts.append(first)
        self.offsets[level].append(offset)

    def full(self, level: int) -> bool:
        return len(self.firsts[level]) >= self.fanout

    def take(self, level: int) -> tuple[list[int], list[int]]:
        """Remove and return level ``level``'s entries (they are about to become a page)."""
        page = (self.firsts[level], self.offsets[level])
        self.firsts[level] = []
        self.offsets[level] = []
        return page

    def replay_page(self, level: int, first: int, offset: int, count: int) -> None:
        """Mirror the writer when an INDEX page of ``count`` entries appears at ``offset``.

        Raises ``ValueError`` when the page does not match the entries it must replace.
        """
        if level >= len(self.firsts) or len(self.firsts[level]) != count or count != self.fanout:
            raise ValueError("index page does not follow a full level")
        if self.firsts[level][0] != first:
            raise ValueError("index page starts at the wrong record")
        self.take(level)
        self.add(level + 1, first, offset)

    def find(self, record: int, load_page: PageLoader) -> tuple[int, int]:
        """``(first record, offset)`` of the frame holding ``record`` (which must exist)."""
        for height, firsts in enumerate(self.firsts):
            if firsts and record >= firsts[0]:
                j = bisect_right(firsts, record) - 1
                first, offset = firsts[j], self.offsets[height][j]
                for below in range(height - 1, -1, -1):
                    page_firsts, page_offsets = load_page(offset, below)
                    j = bisect_right(page_firsts, record) - 1
                    if j < 0:
                        raise ValueError("index page does not cover the record it should")
                    first, offset = page_firsts[j], page_offsets[j]
                return first, offset
        raise LookupError(record)

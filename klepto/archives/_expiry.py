"""Expiring entries: a value stored together with its deadline, understood by every archive.

An archive keeps an entry that expires as an :class:`Expiring` envelope *in place of the
value*, so every backend stores deadlines without knowing about them, and a deadline
travels with the entry to other processes. Deadlines are absolute readings of the archive's
``timer`` (``time.time`` by default, so that they mean the same in every process).

The envelope pickles as ``klepto.archives._expiry.Expiring``: that name is part of the
stored format and stays. Archives that store plain literals or plain JSON cannot hold it
(storing an expiring entry there raises ``TypeError`` from their serializer); the ``safe``
serializer knows it under the tag ``$exp``.
"""

from __future__ import annotations

from typing import Any

from klepto._safeformat import register_safe_type

__all__ = ["MISSING", "Expiring", "deadline_of", "live_value"]

#: What :func:`live_value` returns for an expired entry.
MISSING: Any = object()


class Expiring:
    """``value`` until ``deadline`` (a timer reading); an expired entry reads as missing."""

    __slots__ = ("deadline", "value")

    def __init__(self, value: Any, deadline: float) -> None:
        self.value = value
        self.deadline = float(deadline)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Expiring, (self.value, self.deadline))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Expiring):
            return NotImplemented
        return bool(self.deadline == other.deadline and self.value == other.value)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Expiring({self.value!r}, deadline={self.deadline!r})"


register_safe_type(
    Expiring, "$exp", lambda e: (e.deadline, e.value), lambda d: Expiring(d[1], d[0])
)


def live_value(stored: Any, now: float) -> Any:
    """The value of a stored entry, or :data:`MISSING` if it has expired by ``now``."""
    if type(stored) is not Expiring:
        return stored
    return stored.value if stored.deadline > now else MISSING


def deadline_of(stored: Any) -> float | None:
    """The deadline of a stored entry (None: it never expires)."""
    return stored.deadline if type(stored) is Expiring else None

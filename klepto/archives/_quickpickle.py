"""dill-compatible pickling at the speed of the C pickler, where the two agree.

dill's pickler is written in Python and costs tens of microseconds for a small value, which
dominates a directory archive's write. For most values (built-in types, numpy arrays,
instances of importable classes) the standard C pickler writes a pickle that ``dill.loads``
reads back identically. The two differ only where dill pickles *by value* what pickle would
reference by name: objects living in ``__main__`` (or not importable at all, such as
lambdas and closures, which the C pickler refuses). So: pickle with the C pickler, and
use dill whenever that fails or the pickle mentions ``__main__``. Reading is the same: the
C unpickler first, dill's when it fails.
"""

from __future__ import annotations

import pickle
from typing import Any

from klepto._pickleoob import MAIN_MARK as _MAIN
from klepto.serializers import DillSerializer

__all__ = ["QuickDillSerializer", "c_pickle"]


def c_pickle(obj: Any, protocol: int, pickler: type = pickle.Pickler, **options: Any) -> Any:
    """The C pickler's bytes for ``obj`` when dill would load them identically, else None."""
    import io

    out = io.BytesIO()
    try:
        pickler(out, protocol, **options).dump(obj)
    except Exception:
        return None
    data = out.getvalue()
    return None if _MAIN in data else data


class QuickDillSerializer(DillSerializer):
    """The ``dill`` serializer (same name, same format), faster for common values."""

    def dumps(self, obj: Any) -> bytes:
        try:
            data = pickle.dumps(obj, self.protocol)
        except Exception:
            data = None
        if data is None or _MAIN in data:
            return self._dill.dumps(obj, protocol=self.protocol)  # type: ignore[no-any-return]
        return data

    def loads(self, data: bytes) -> Any:
        # dill's pickles name only importable helpers (dill._dill...), which the C unpickler
        # resolves too; what only dill's unpickler can resolve (a pickled __main__) fails
        # here and is read by dill.
        try:
            return pickle.loads(data)
        except Exception:
            return self._dill.loads(data)

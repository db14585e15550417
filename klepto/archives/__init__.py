"""Archives: dict-like stores that caches spill into and that reload in a new process.

Every factory has the classic signature ``X(name=None, dict=None, cached=True, **kwds)``
and returns the raw backend (``cached=False``) or a :class:`cache` in front of it.
"""

from __future__ import annotations

from klepto.archives import directory as _directory
from klepto.archives import file as _file
from klepto.archives import hdf as _hdf
from klepto.archives import memory as _memory
from klepto.archives import redis as _redis
from klepto.archives import sql as _sql
from klepto.archives._base import Archive as archive
from klepto.archives._cached import cache
from klepto.archives._factory import make_factory
from klepto.archives._frame import _from_frame, _to_frame
from klepto.archives._maintenance import compact_archive, copy_archive, verify_archive
from klepto.archives._migrate import migrate_classic

_dict_archive = _memory.dict_archive
_null_archive = _memory.null_archive
_dir_archive = _directory.dir_archive
_file_archive = _file.file_archive
_hdf_archive = _hdf.hdf_archive
_hdfdir_archive = _hdf.hdfdir_archive

dict_archive = make_factory(_dict_archive)
null_archive = make_factory(_null_archive)
dir_archive = make_factory(_dir_archive)
file_archive = make_factory(_file_archive)
hdf_archive = make_factory(_hdf_archive)
hdfdir_archive = make_factory(_hdfdir_archive)

_sqlname = _sql._sqlname
_sqltable_archive = _sql.sqltable_archive
_sql_archive = _sql.sql_archive
sqltable_archive = make_factory(_sqltable_archive, _sql.open_sqltable)
sql_archive = make_factory(_sql_archive, _sql.open_sql)

_redis_archive = _redis.redis_archive
redis_archive = make_factory(_redis_archive, _redis.open_redis)

__all__ = [
    "cache",
    "dict_archive",
    "dir_archive",
    "file_archive",
    "hdf_archive",
    "hdfdir_archive",
    "null_archive",
    "redis_archive",
    "sql_archive",
    "sqltable_archive",
]

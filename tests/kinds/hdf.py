"""HDF archives (extra ``hdf``): hdf_archive (datasets, root attributes, native values) and
hdfdir_archive. Skipped with the reason when h5py is not installed."""

import importlib.util

import pytest

from tests.kinds import Kind

_MISSING = importlib.util.find_spec("h5py") is None
_MARKS = [pytest.mark.skipif(_MISSING, reason="h5py not installed (pip install 'klepto[hdf]')")]


def _file_maker(**options):
    def make(tmp_path, request):
        from klepto.archives import hdf_archive

        return hdf_archive(str(tmp_path / "contract.h5"), cached=False, **options)

    return make


def _dir_maker(**options):
    def make(tmp_path, request):
        from klepto.archives import hdfdir_archive

        return hdfdir_archive(str(tmp_path / "contract"), cached=False, **options)

    return make


def _reopen(archive):
    return type(archive)(archive.__state__["id"])


KINDS = [
    Kind("hdf", _file_maker(), _reopen, marks=_MARKS),
    Kind("hdf-meta", _file_maker(meta=True), _reopen, marks=_MARKS),
    Kind("hdfdir", _dir_maker(), _reopen, marks=_MARKS),
]

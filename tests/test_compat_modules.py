"""The classic module map (spec section 0): names at their classic locations."""

from __future__ import annotations

import pytest

import klepto
import klepto._abc
import klepto._archives
from klepto import archives


def test_package_reexports():
    for name in (
        "no_cache",
        "inf_cache",
        "lfu_cache",
        "lru_cache",
        "mru_cache",
        "rr_cache",
        "signature",
        "isvalid",
        "validate",
        "keygen",
        "strip_markup",
        "NULL",
        "_keygen",
        "license",
        "citation",
        "__version__",
        "__author__",
        "__license__",
    ):
        assert hasattr(klepto, name), name
    for module in ("archives", "keymaps", "rounding", "safe", "tools", "crypto"):
        assert hasattr(klepto, module), module
    assert not hasattr(klepto, "__all__")  # `from klepto import *` exports every public name


def test_star_import_exports_the_decorators():
    namespace: dict = {}
    exec("from klepto import *", namespace)
    for name in ("no_cache", "lru_cache", "keygen", "NULL"):
        assert name in namespace


def test_license_and_citation_print(capsys):
    assert klepto.license() is None
    assert "BSD" in capsys.readouterr().out
    assert klepto.citation() is None
    assert "pathos" in capsys.readouterr().out


def test_abc_archive_is_the_base_class():
    assert klepto._abc.archive is archives.archive
    with pytest.raises(NotImplementedError):
        klepto._abc.archive()


def test_archives_module_names_backend_classes():
    assert klepto._archives.cache is archives.cache
    assert klepto._archives.archive_dict is archives.cache
    assert klepto._archives.dict_archive is archives._dict_archive
    assert klepto._archives.db_archive is archives._sqltable_archive
    assert (klepto._archives.PREFIX, klepto._archives.TEMP) == ("K_", ".I_")
    with pytest.raises(AttributeError):
        klepto._archives.no_such_thing


def test_archives_all():
    expected = {
        "cache",
        "dict_archive",
        "null_archive",
        "dir_archive",
        "sql_archive",
        "sqltable_archive",
    }
    assert expected <= set(archives.__all__)
    assert "archive" not in archives.__all__

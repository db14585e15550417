"""Sphinx configuration: ``python3 -m sphinx -W -b html docs docs/_build/html``."""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from klepto._about import __version__

project = "klepto"
author = "the klepto developers"
release = __version__
version = ".".join(__version__.split(".")[:2])
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
exclude_patterns = ["_build"]
html_theme = "alabaster"
nitpicky = False
suppress_warnings = ["autodoc.import_object"]

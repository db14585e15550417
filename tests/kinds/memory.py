"""The in-memory dict_archive."""

from klepto.archives import dict_archive
from tests.kinds import Kind

KINDS = [Kind("dict", lambda tmp_path, request: dict_archive("contract", cached=False))]

"""dir_archive kinds: default settings, zlib compression, fast (raw array blocks), and a
signed store opened in safe mode (the HMAC key comes from the environment, as in workers)."""

from klepto.archives import dir_archive
from klepto.integrity import KEY_ENV
from tests.kinds import Kind


def _maker(**options):
    def make(tmp_path, request):
        if options.get("safe"):
            request.getfixturevalue("monkeypatch").setenv(KEY_ENV, "contract-secret")
        return dir_archive(str(tmp_path / "dirarchive"), cached=False, **options)

    return make


def _reopen(archive):
    return dir_archive(archive.state["id"], cached=False, safe=archive._safe)


KINDS = [
    Kind("dir", _maker(), _reopen),
    Kind("dir-zlib", _maker(compression=3), _reopen),
    Kind("dir-fast", _maker(fast=True), _reopen),
    Kind("dir-signed-safe", _maker(safe=True), _reopen),
]

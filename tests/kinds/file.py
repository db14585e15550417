"""file_archive kinds: default settings, zlib-compressed values, durable commits, and a
signed archive opened in safe mode (the HMAC key comes from the environment, as in workers)."""

from klepto.archives import file_archive
from klepto.integrity import KEY_ENV
from tests.kinds import Kind


def _maker(**options):
    def make(tmp_path, request):
        if options.get("safe"):
            request.getfixturevalue("monkeypatch").setenv(KEY_ENV, "contract-secret")
        return file_archive(str(tmp_path / "archive.pkl"), cached=False, **options)

    return make


def _reopen(archive):
    return file_archive(archive.state["id"], cached=False, safe=archive._safe)


KINDS = [
    Kind("file", _maker(), _reopen),
    Kind("file-zlib", _maker(compression=3), _reopen),
    Kind("file-durable", _maker(durable=True), _reopen),
    Kind("file-signed-safe", _maker(safe=True), _reopen),
]

"""I/O error injection (reliability D4): the n-th file-system write raises EIO."""

from __future__ import annotations

import os


class Inject:
    """Make the n-th file-system write (os.* and the record file's pwrite) raise EIO."""

    NAMES = ("write", "replace", "link", "unlink", "ftruncate", "fsync", "fdatasync")

    def __init__(self, monkeypatch, n):
        from klepto import _fs

        self.n, self.count, self.fired = n, 0, False
        for name in self.NAMES:
            if hasattr(os, name):
                monkeypatch.setattr(os, name, self.wrap(getattr(os, name)))
        monkeypatch.setattr(_fs, "_pwrite_once", self.wrap(_fs._pwrite_once))

    def wrap(self, real):
        def injected(*args, **kwargs):
            self.count += 1
            if self.count == self.n:
                self.fired = True
                raise OSError(5, "Input/output error (injected)")
            return real(*args, **kwargs)

        return injected

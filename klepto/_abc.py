"""Classic location of the archive base class: ``klepto._abc.archive``."""

from klepto.archives._base import Archive as archive

__all__ = ["archive"]

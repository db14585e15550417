"""``python -m klepto``: the klepto command."""

from klepto.cli import main

raise SystemExit(main())

"""``python -m miragekit``: the same as the ``miragekit`` command."""

from .cli import main

raise SystemExit(main())

"""Entry point of the single-file executable (see packaging/build)."""

from convertd.cli import main

raise SystemExit(main())

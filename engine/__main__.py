"""`python -m engine …`: the engine's command line (see engine/cli.py)."""

from engine.cli import main

raise SystemExit(main())

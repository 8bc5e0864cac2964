"""``python -m audionmf``: the command line."""
from .cli import main

raise SystemExit(main())

"""``python -m audionmf``: the command line."""
from .cli import console

console()

"""The ways of separating, one module each, and the registry that picks one.

A mode (:class:`audionmf.modes.base.Mode`) owns its options, constants, fit,
source names and masks. :func:`audionmf.separate` and the command line find
the modes here: adding one is one new module and one entry in :data:`MODES`
(``docs/architecture.md``).
"""
from .._validation import ParameterError
from .base import Fitted, Mode, Option, keyword, refuse_foreign
from .blind import Blind
from .denoise import Denoise
from .drums import Drums
from .supervised import Supervised
from .vocals import Vocals

__all__ = ["MODES", "DEFAULT_MODE", "pick", "Mode", "Option", "Fitted", "keyword"]

#: Every mode, by key. The first whose selecting keyword is given is used, else the default.
MODES = {mode.key: mode for mode in (Blind, Supervised, Drums, Denoise, Vocals)}
#: The mode of ``separate(y, sr)`` with no selecting keyword.
DEFAULT_MODE = Blind


def two_stems_choices():
    """The ``two_stems`` values the modes answer to."""
    return [mode.two_stems for mode in MODES.values() if mode.two_stems is not None]


def pick(options, spell=keyword):
    """The mode class that ``options`` (keywords of :func:`audionmf.separate`) ask for.

    ``two_stems`` picks the mode with that value; else a mode picked by one of its
    own options (``models``) when given; else :data:`DEFAULT_MODE`. Options that
    belong to another mode are refused (a :class:`ParameterError` naming them, in
    the spelling of ``spell``).
    """
    two_stems = options.get("two_stems")
    if two_stems is not None:
        chosen = [mode for mode in MODES.values() if mode.two_stems == two_stems]
        if not chosen:
            raise ParameterError(f"{spell('two_stems', two_stems)}: expected one of "
                                 f"{sorted(two_stems_choices())}")
        mode = chosen[0]
    else:
        mode = next((m for m in MODES.values() if m.selected_by not in (None, "two_stems")
                     and options.get(m.selected_by) is not None), DEFAULT_MODE)
    refuse_foreign(mode, options, MODES.values(), spell)
    return mode

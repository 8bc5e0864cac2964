"""How much the separation holds in memory at once: one object, passed in, never patched.

Every size that bounds memory (a block of frames, a fit, an excerpt) lives in
:class:`Limits`. The defaults are what :func:`audionmf.separate`,
:func:`audionmf.decompose` and :func:`audionmf.nmf` use; a caller (or a test
that wants many small blocks) passes its own. Block boundaries never change a
result: only how many values are in memory at once.
"""
import numbers
from dataclasses import dataclass

from ._validation import ParameterError

__all__ = ["Limits", "DEFAULT_LIMITS"]


@dataclass(frozen=True)
class Limits:
    """Sizes that bound the memory of a separation.

    Attributes
    ----------
    block_values : int
        Spectrogram values per block when a signal is masked and
        resynthesized (2**20: for 1025 bins, about a thousand frames).
    fit_values : int
        Most spectrogram values a factorization is fitted on at once (2**24,
        64 MB of float32: about 3 minutes of 44.1 kHz audio). A longer signal
        is fitted on excerpts spread evenly over it.
    excerpt_frames : int
        Frames per excerpt of a long signal (256: 6 s at 22.05 kHz, hop 512).
    refine_values : int
        Most values the blind grouping's finer fit (its refinement for
        sustained notes) is fitted on; past it, stretches of
        ``excerpt_frames`` frames (2**22: about 47 s of 44.1 kHz audio).
    nmf_block_bytes : int
        Scratch bytes per thread of the factorization's column blocks
        (2**22). At least 1; blocks are never narrower than 16 frames.
    """

    block_values: int = 2**20
    fit_values: int = 2**24
    excerpt_frames: int = 256
    refine_values: int = 2**22
    nmf_block_bytes: int = 2**22

    def __post_init__(self):
        for field in ("block_values", "fit_values", "excerpt_frames", "refine_values",
                      "nmf_block_bytes"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ParameterError(f"Limits.{field}={value!r}: expected a whole number >= 1")


#: The limits used when none are given.
DEFAULT_LIMITS = Limits()


def check_limits(limits):
    """``limits``, or :data:`DEFAULT_LIMITS` for None; anything else is refused."""
    if limits is None:
        return DEFAULT_LIMITS
    if not isinstance(limits, Limits):
        raise ParameterError(f"limits must be an audionmf.limits.Limits, got {type(limits).__name__}")
    return limits

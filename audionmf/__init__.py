"""audionmf: audio source separation and spectral features with beta-divergence NMF.

Audio -> STFT -> spectrogram V (n_freq x n_frames) -> V ~= W H (templates W,
activations H) -> components grouped into sources -> soft masks -> inverse
STFT -> one signal per source, the sources summing back to the mixture.

Plots live in ``audionmf.plot`` (imported on its own, so that matplotlib loads
only when asked for).

``audionmf.NMF`` is a drop-in for ``sklearn.decomposition.NMF(solver="mu")`` on
this package's engine (:class:`audionmf.sklearn.NMF`). It is loaded on first
use and needs scikit-learn (``pip install 'audionmf[sklearn]'``), so it is not in
``__all__``: ``from audionmf import *`` must work without scikit-learn.
"""
from ._validation import AudioError, ParameterError
from ._version import __version__
from .evaluate import evaluate
from .features import Decomposition, decompose
from .grouping import group_components
from .io import load, save
from .limits import Limits
from .masks import wiener_masks
from .models import ModelError, SourceModel
from .nmf import NMFResult, beta_divergence, nmf
from .separate import denoise, melody, separate, separate_file
from .spectrogram import (
    STFTParams,
    bin_frequencies,
    frame_times,
    istft,
    stack_frames,
    stft,
    unstack_frames,
)

__all__ = [
    "__version__",
    "AudioError",
    "ParameterError",
    "load",
    "save",
    "STFTParams",
    "stft",
    "istft",
    "frame_times",
    "bin_frequencies",
    "stack_frames",
    "unstack_frames",
    "nmf",
    "NMFResult",
    "beta_divergence",
    "separate",
    "denoise",
    "separate_file",
    "melody",
    "group_components",
    "wiener_masks",
    "evaluate",
    "SourceModel",
    "ModelError",
    "decompose",
    "Decomposition",
    "Limits",
]


def __getattr__(name):
    # audionmf.NMF on first use: importing scikit-learn takes a second, and it is optional.
    if name == "NMF":
        from .sklearn import NMF

        return NMF
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), "NMF"])

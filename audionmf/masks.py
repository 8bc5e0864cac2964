"""Soft masks: how the sources' models share out each bin of the mixture.

:func:`wiener_masks` makes one mask per source from a factorization whose
components are labelled by source; :func:`hpss_mask` is the percussive mask of
median-filtering harmonic/percussive separation (FitzGerald 2010), and
:func:`blend_masks` combines two masks of one source, :func:`blend_sources` two sets of
masks of every source. Every function here
returns masks in [0, 1] that sum to 1 over the sources in every bin, so the
masked sources sum back to the mixture.

References
----------
D. FitzGerald, "Harmonic/percussive separation using median filtering",
DAFx 2010.
"""
import numbers

import numpy as np

from . import _lazy
from ._validation import ParameterError
from .spectrogram import unstack_frames

__all__ = ["wiener_masks", "hpss_mask", "blend_masks", "blend_sources", "HPSS_KERNEL"]

#: Kernel of the HPSS median filters, in frames and in bins.
HPSS_KERNEL = 31


def wiener_masks(W, H, labels, *, mask_power=2.0, context=0):
    """Soft masks ``M_s = (W_s H_s)**p / sum_j (W_j H_j)**p``, one per source.

    Parameters
    ----------
    W : np.ndarray [shape=(n_freq * (2 * context + 1), K)]
    H : np.ndarray [shape=(K, n_frames)]
    labels : np.ndarray [shape=(K,), dtype=int]
        Source index (0 .. N-1) of each component; every source needs one.
    mask_power : float
        p.
    context : int
        For templates of stacked frames (:func:`audionmf.stack_frames`): each
        source's spectrogram is the average of its stacked predictions.

    Returns
    -------
    masks : np.ndarray [shape=(N, n_freq, n_frames), dtype=float64]
        Values in [0, 1], summing to 1 in every bin. Where every source model
        is zero the mass is shared equally.
    """
    labels = np.asarray(labels)
    n_sources = int(labels.max()) + 1
    missing = set(range(n_sources)) - set(labels.tolist())
    if missing:
        raise ParameterError(f"sources {sorted(missing)} have no component")
    W = np.asarray(W, dtype=np.float64)
    H = np.asarray(H, dtype=np.float64)
    n_freq = W.shape[0] // (2 * context + 1)
    models = np.stack([
        unstack_frames(W[:, labels == s] @ H[labels == s], n_freq, context) for s in range(n_sources)
    ])
    # Scale each bin by its largest model before the power: no overflow, no underflow.
    top = models.max(axis=0)
    np.divide(models, top, out=models, where=top > 0)
    models[:, top <= 0] = 1.0
    models **= mask_power
    models /= models.sum(axis=0)
    return models


def hpss_mask(S, kernel=HPSS_KERNEL):
    """Percussive soft mask of median-filtering HPSS: ``P**2 / (P**2 + H**2)``.

    ``H`` is ``S`` median-filtered along time and ``P`` along frequency, with
    ``kernel`` points each, or ``kernel = (across time, across frequency)``
    (edges reflected), as :func:`librosa.decompose.hpss` computes them.

    Parameters
    ----------
    S : np.ndarray [shape=(n_freq, n_frames)]
        Magnitude spectrogram.
    kernel : int > 0 or (int > 0, int > 0)
        Median filter lengths, in frames and in bins.

    Returns
    -------
    np.ndarray [shape=(n_freq, n_frames)]
        In [0, 1]; 1/2 where both filters give 0.
    """
    median_filter = _lazy.module("scipy.ndimage").median_filter  # (slow to import)

    try:
        rank = np.ndim(kernel)
    except ValueError:  # ragged
        rank = None
    lengths = [kernel, kernel] if rank == 0 else list(kernel) if rank == 1 else []
    if len(lengths) != 2 or not all(isinstance(n, numbers.Integral) and not isinstance(n, bool)
                                    and n >= 1 for n in lengths):
        raise ParameterError(f"kernel={kernel!r}: expected one length or two (across time, "
                             "across frequency), whole numbers of at least 1")
    across_time, across_freq = (int(n) for n in lengths)
    harmonic = median_filter(S, size=(1, across_time), mode="reflect") ** 2
    percussive = median_filter(S, size=(across_freq, 1), mode="reflect") ** 2
    total = harmonic + percussive
    return np.divide(percussive, total, out=np.full(S.shape, 0.5), where=total > 0)


def blend_masks(a, b):
    """Normalized geometric mean of two soft masks of the same source:
    ``sqrt(a b) / (sqrt(a b) + sqrt((1 - a)(1 - b)))``.

    Where both agree it keeps their value; a sure mask (0 or 1) wins over any
    other but the opposite certainty; masks that mirror each other (a and
    1 - a) give 1/2. Blending the complements gives the complement.
    """
    yes = np.sqrt(a * b)
    no = np.sqrt((1.0 - a) * (1.0 - b))
    total = yes + no
    return np.divide(yes, total, out=np.full(np.shape(total), 0.5), where=total > 0)


def blend_sources(a, b, weight=0.5):
    """The normalized weighted geometric mean of two sets of masks of the same sources
    (n_sources x ...): ``a_j**(1 - weight) b_j**weight / sum_i a_i**(1 - weight)
    b_i**weight``; with ``weight`` 0.5 and two sources, :func:`blend_masks` of each
    source's pair. Equal shares where every product is 0."""
    mean = np.sqrt(a * b) if weight == 0.5 else a ** (1.0 - weight) * b**weight
    total = mean.sum(axis=0)
    return np.divide(mean, total, out=np.full(mean.shape, 1.0 / len(mean)), where=total > 0)

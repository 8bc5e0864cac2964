"""How :meth:`audionmf.SourceModel.learn` learns: the copies of the examples it learns
from (pitch shifts, tempo changes), the factorization, and the bands models are fitted on.

``V`` here is a spectrogram of stacked frames (:func:`audionmf.stack_frames`):
``n_freq * frames`` rows, one column per frame learned from.
"""
import numbers

import numpy as np

from ._validation import ParameterError
from .analysis import band_pooling
from .nmf import nmf

__all__ = ["MAX_COPIES", "POOL_ABOVE_HZ", "POOL_BANDS_PER_OCTAVE",
           "model_pooling", "factorize", "check_semitones", "check_tempos", "shifted", "stretched"]

#: Learning reads at most this many times the frames of the examples, drawn at random
#: among their copies (the default's three copies are all read; docs/decisions.md,
#: "Source models: what was tried").
MAX_COPIES = 3

#: The activations of models are fitted on the bins above POOL_ABOVE_HZ summed in bands of
#: 1 / POOL_BANDS_PER_OCTAVE octave (408 rows instead of 1025 at n_fft 2048 and 22.05 kHz);
#: masks are built at full resolution (2.5 times cheaper; docs/decisions.md, same entry).
POOL_ABOVE_HZ = 4000.0
POOL_BANDS_PER_OCTAVE = 24


def model_pooling(n_bins, *, sr, n_fft):
    """The pooling matrix of models' fits (:func:`audionmf.analysis.band_pooling`)."""
    return band_pooling(n_bins, sr=sr, n_fft=n_fft, above_hz=POOL_ABOVE_HZ,
                        bands_per_octave=POOL_BANDS_PER_OCTAVE)


def factorize(V, n_components, *, beta, max_iter, sparsity, random_state, callback):
    """Templates of ``V`` (stacked frames, normalized), scaled to sum to 1."""
    result = nmf(V, n_components, beta=beta, init="random", max_iter=max_iter, tol=0.0,
                 random_state=random_state, sparsity=sparsity, callback=callback)
    return result.W / result.W.sum(axis=0, keepdims=True)  # entries >= eps: no zero sums


def _sorted_reals(given, name, low, high, *, kind, bounds):
    """The sorted distinct values of ``given``, real numbers in [low, high], or a
    ParameterError naming ``name``: "expected ``kind``" for what is not a sequence of
    numbers, "expected ``bounds``" for an empty one or a value out of range (NaN too)."""
    try:
        values = list(given)
    except TypeError:
        values = None
    if values is None or isinstance(given, str) or any(
            isinstance(v, bool) or not isinstance(v, numbers.Real) for v in values):
        raise ParameterError(f"{name}={given!r}: expected {kind}")
    if not values or any(not low <= v <= high for v in values):  # no float() of 2**2000
        raise ParameterError(f"{name}={given!r}: expected {bounds}")
    return sorted({float(v) for v in values})


def check_semitones(semitones):
    """The sorted shifts (floats), or ParameterError."""
    return _sorted_reals(semitones, "semitones", -24, 24, kind="numbers of semitones",
                         bounds="shifts between -24 and 24")


def shifted(spectra, semitones):
    """Magnitude spectrograms with every frame's spectrum moved by ``semitones``."""
    if semitones == 0:
        return list(spectra)
    import scipy.sparse

    n_freq = spectra[0].shape[0]
    source = np.arange(n_freq) * 2.0 ** (-semitones / 12.0)  # bin f reads f / ratio
    low = np.floor(source).astype(int)
    weight = source - low
    rows, cols, values = [], [], []
    for col, value in ((low, 1.0 - weight), (low + 1, weight)):
        inside = (col < n_freq) & (value > 0)
        rows.append(np.flatnonzero(inside))
        cols.append(col[inside])
        values.append(value[inside])
    shift = scipy.sparse.csr_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(n_freq, n_freq))
    return [np.asarray(shift @ S) for S in spectra]


def stretched(spectra, rate):
    """Spectrograms played ``rate`` times as fast: frames read at ``rate``-frame steps,
    linearly interpolated (the spectra untouched)."""
    if rate == 1:
        return list(spectra)
    out = []
    for S in spectra:
        position = np.arange(0.0, S.shape[1] - 1, rate) if S.shape[1] > 1 else np.zeros(1)
        low = np.floor(position).astype(int)
        high = np.minimum(low + 1, S.shape[1] - 1)
        weight = position - low
        out.append(S[:, low] * (1.0 - weight) + S[:, high] * weight)
    return out


def check_tempos(tempos):
    """The sorted rates, or ParameterError."""
    bounds = "rates between 0.5 and 2"
    return _sorted_reals(tempos, "tempos", 0.5, 2.0, kind=bounds, bounds=bounds)

"""A lead voice as a source times a filter, over free accompaniment: the SIMM model.

The power spectrogram ``V`` (n_rows x n_frames) is explained as

    V ~= (W_F0 @ H_F0) * (W_filter @ H_filter) + W_acc @ H_acc

* ``W_F0``: fixed harmonic spectra, one per fundamental frequency of a fine
  grid over the singing range (:func:`harmonic_templates`), and one flat
  column for the unvoiced part (breath, consonants);
* ``W_filter``: fixed smooth spectral envelopes (:func:`smooth_filters`): the
  filter of each frame is any non-negative combination of them, so the lead's
  spectrum is a harmonic comb shaped by a smooth envelope (a vowel);
* ``W_acc @ H_acc``: free NMF components for the accompaniment.

The divergence is Itakura-Saito, minimized by multiplicative updates
(:func:`fit`); the melody is the best path through the F0 activations
(:func:`track`), and a second fit keeps the lead's F0 activations near it.

References
----------
J.-L. Durrieu, G. Richard, B. David and C. Févotte, "Source/filter model for
unsupervised main melody extraction from polyphonic audio signals", IEEE
TASLP 18(3), 2010, doi:10.1109/TASL.2009.2029400.
J.-L. Durrieu, B. David and G. Richard, "A musically motivated mid-level
representation for pitch estimation and musical audio source separation",
IEEE JSTSP 5(6), 2011, doi:10.1109/JSTSP.2011.2158801.
"""
import functools

import numpy as np

from . import _lazy
from .spectrogram import hann_lobe

__all__ = ["f0_grid", "harmonic_templates", "smooth_filters", "SourceFilter", "fit", "model", "comb_power",
           "is_divergence", "track", "near_melody",
           "discount_held"]

#: Least value of the spectrogram (its peak is 1), so that the Itakura-Saito
#: divergence is finite on digital silence.
FLOOR = 1e-9
#: Least value of the spectrogram relative to its mean (40 dB under it), as if a faint
#: white noise were added: on a noise-free synthetic tone the divergence's weight of the
#: empty bins between partials put the melody on the 3rd harmonic or called it unvoiced
#: (docs/decisions.md, "Vocals: a floor relative to the spectrogram's level").
RELATIVE_FLOOR = 1e-4


def f0_grid(fmin=100.0, fmax=1000.0, steps_per_semitone=4):
    """Fundamental frequencies ``steps_per_semitone`` to a semitone from ``fmin`` to ``fmax`` (Hz)."""
    n = int(np.floor(12 * steps_per_semitone * np.log2(fmax / fmin) + 1e-9)) + 1
    return fmin * 2.0 ** (np.arange(n) / (12.0 * steps_per_semitone))


def harmonic_templates(f0s, *, sr, n_fft, slope=1.0, width=2):
    """Power spectra of harmonic sources, one per fundamental in ``f0s``, and a flat one.

    Partial n of f0 lies at n * f0 (below the Nyquist frequency) with power
    ``n ** (-2 * slope)`` spread over the squared main lobe of the Hann
    window's spectrum (``width`` bins on each side). The last column is flat:
    the unvoiced source.

    Returns
    -------
    W : np.ndarray [shape=(n_fft // 2 + 1, len(f0s) + 1), dtype=float32]
        Columns sum to 1.
    """
    n_bins = n_fft // 2 + 1
    W = np.zeros((n_bins, len(f0s) + 1))
    bins = np.arange(n_bins)
    for j, f0 in enumerate(f0s):
        n = np.arange(1, int(sr / 2 / f0) + 1)
        centres = n * f0 * n_fft / sr
        d = bins[:, None] - centres[None, :]
        near = np.abs(d) <= width
        W[:, j] = (np.where(near, hann_lobe(d), 0.0) ** 2 * n ** (-2.0 * slope)).sum(axis=1)
    W[:, -1] = 1.0
    return (W / W.sum(axis=0)).astype(np.float32)


def smooth_filters(freqs, n_filters=30, fmax=None):
    """Smooth spectral envelopes: ``n_filters`` Hann bumps, half-overlapping, evenly
    spaced on the mel scale from 0 to ``fmax`` (default the last of ``freqs``); they
    sum to 1 between the first bump's peak and the last's.

    Returns
    -------
    W : np.ndarray [shape=(len(freqs), n_filters), dtype=float32]
    """
    freqs = np.asarray(freqs, dtype=np.float64)
    fmax = freqs[-1] if fmax is None else fmax
    mel = np.log1p(freqs / 700.0)
    top = np.log1p(fmax / 700.0)
    step = top / (n_filters - 1)
    centres = np.arange(n_filters) * step
    d = np.clip(np.abs(mel[:, None] - centres[None, :]) / step, 0.0, 1.0)
    return (0.5 + 0.5 * np.cos(np.pi * d)).astype(np.float32)


class SourceFilter:
    """The factors of the model (float32): ``F0`` and ``filter`` templates fixed,
    ``acc`` templates free unless ``fixed_acc``; activations ``H_F0``, ``H_filter``, ``H_acc``."""

    def __init__(self, W_F0, W_filter, W_acc, H_F0, H_filter, H_acc):
        self.W_F0, self.W_filter, self.W_acc = W_F0, W_filter, W_acc
        self.H_F0, self.H_filter, self.H_acc = H_F0, H_filter, H_acc

    @classmethod
    def start(cls, W_F0, W_filter, W_acc, n_frames, rng, scale=1.0):
        """Random positive activations (and accompaniment templates where ``W_acc`` is a count)."""
        n_rows = W_F0.shape[0]

        def uniform(*shape):
            return (0.5 + rng.random(shape)).astype(np.float32)

        if np.isscalar(W_acc):
            W_acc = uniform(n_rows, int(W_acc))
            W_acc /= W_acc.sum(axis=0)
        return cls(W_F0, W_filter, W_acc, uniform(W_F0.shape[1], n_frames) * scale,
                   uniform(W_filter.shape[1], n_frames), uniform(W_acc.shape[1], n_frames) * scale)

    def lead(self):
        return (self.W_F0 @ self.H_F0) * (self.W_filter @ self.H_filter)

    def accompaniment(self):
        return self.W_acc @ self.H_acc


def comb_power(factors):
    """The power each harmonic comb (not the flat source) contributes to each frame:
    its activation times its template's sum through the frame's filter. The melody's
    salience: the filter's scale is set by its peak, so a comb's activation alone
    favours combs high above the filter's peak (a harmonic of the voice)."""
    return factors.H_F0[:-1] * (factors.W_F0[:, :-1].T @ (factors.W_filter @ factors.H_filter))


def model(factors):
    """``V_hat``, the model spectrogram."""
    return factors.lead() + factors.accompaniment()


def is_divergence(V, V_hat):
    """Itakura-Saito divergence ``sum(V / V_hat - log(V / V_hat) - 1)`` (float64 sum)."""
    ratio = np.asarray(V, dtype=np.float64) / V_hat
    return float(np.sum(ratio - np.log(ratio) - 1.0))


def fit(V, factors, n_iter, *, allowed=None, update_acc=True, exponent=1.0):
    """Multiplicative Itakura-Saito updates of the free factors, in place.

    Each factor in turn: ``H <- H * (A.T @ (C * V / V_hat**2) / A.T @ (C / V_hat)) ** exponent``
    for an activation of a term ``(A @ H) * C`` (C = 1 for the accompaniment),
    and likewise for the accompaniment's templates through the transpose.
    ``exponent`` 1/2 guarantees that the divergence never increases (Févotte &
    Idier 2011); 1, the usual heuristic, converges faster.

    Parameters
    ----------
    V : np.ndarray [shape=(n_rows, n_frames), dtype=float32]
        At least :data:`FLOOR` everywhere.
    factors : SourceFilter
    allowed : np.ndarray [shape=H_F0.shape, dtype=bool] or None
        Where the F0 activations may be non-zero (the others are set to 0).
    update_acc : bool
        Learn the accompaniment's templates too.
    """
    f = factors
    if allowed is not None:
        f.H_F0 *= allowed
    S, F = f.W_F0 @ f.H_F0, f.W_filter @ f.H_filter
    M = f.W_acc @ f.H_acc

    def ratios(V_hat):
        inverse = 1.0 / V_hat
        return V * inverse * inverse, inverse

    def step(numerator, denominator):
        ratio = numerator / np.maximum(denominator, 1e-30)
        return ratio if exponent == 1.0 else ratio**exponent

    for _ in range(n_iter):
        R, Q = ratios(S * F + M)
        f.H_F0 *= step(f.W_F0.T @ (F * R), f.W_F0.T @ (F * Q))
        S = f.W_F0 @ f.H_F0
        R, Q = ratios(S * F + M)
        f.H_filter *= step(f.W_filter.T @ (S * R), f.W_filter.T @ (S * Q))
        F = f.W_filter @ f.H_filter
        R, Q = ratios(S * F + M)
        f.H_acc *= step(f.W_acc.T @ R, f.W_acc.T @ Q)
        M = f.W_acc @ f.H_acc
        if update_acc:
            R, Q = ratios(S * F + M)
            f.W_acc *= step(R @ f.H_acc.T, Q @ f.H_acc.T)
            norms = f.W_acc.sum(axis=0)
            f.W_acc /= norms
            f.H_acc *= norms[:, None]
            M = f.W_acc @ f.H_acc
        # No subnormals (they slow float32 arithmetic tenfold), and the scale between
        # the source and the filter kept at the filter's unit peak.
        peak = np.maximum(F.max(axis=0), 1e-30)
        f.H_filter /= peak
        f.H_F0 *= peak
        np.maximum(f.H_filter, 1e-12, out=f.H_filter)
        np.maximum(f.H_acc, 1e-15, out=f.H_acc)
        f.H_F0[f.H_F0 < 1e-15] = 0.0 if allowed is not None else 1e-15
        F = f.W_filter @ f.H_filter
    return f


def discount_held(salience, frames, amount):
    """Each frame's salience (normalized to sum 1) less ``amount`` times each F0's
    running median over ``frames`` frames, floored at 0: a comb that holds its
    salience for that long (a held note of the band) loses some of it, a lead
    that moves (speech, a glide) keeps it.

    Returns
    -------
    np.ndarray [shape=salience.shape, dtype=float64], positive
    """
    median_filter = _lazy.module("scipy.ndimage").median_filter

    S = np.asarray(salience, dtype=np.float64)
    S = S / np.maximum(S.sum(axis=0), 1e-300)
    held = median_filter(S, size=(1, int(frames)), mode="reflect")
    return np.maximum(S - amount * held, 0.0) + 1e-9


def track(salience, f0s, *, jump_cost, steps_per_semitone):
    """The melody: the path through the F0 states that maximizes the sum of
    ``log`` salience minus ``jump_cost`` per semitone moved between frames
    (Viterbi with a Laplacian continuity prior, computed in O(n_states) per frame).

    Parameters
    ----------
    salience : np.ndarray [shape=(n_states, n_frames)]
        Non-negative; each frame is normalized to sum 1.

    Returns
    -------
    path : np.ndarray [shape=(n_frames,), dtype=int]
        State of each frame.
    """
    S = np.asarray(salience, dtype=np.float64)
    S = S / np.maximum(S.sum(axis=0), 1e-300)
    score = np.log(S + 1e-6)
    return _viterbi_kernel()(np.ascontiguousarray(score.T), float(jump_cost / steps_per_semitone))


@functools.lru_cache(maxsize=1)
def _viterbi_kernel():
    """The compiled kernel, on first use (numba is slow to import: not for --help)."""
    return _lazy.module("numba").njit(cache=True)(_viterbi_l1)


def _viterbi_l1(score, cost):
    """Best path through ``score`` (n_frames x n_states) with a transition penalty
    ``cost * |i - j|``: the max-plus convolution with an L1 cone is two sweeps."""
    T, n = score.shape
    back = np.empty((T, n), dtype=np.int32)
    best = score[0].copy()
    value = np.empty(n)
    arg = np.empty(n, dtype=np.int32)
    for t in range(1, T):
        value[0] = best[0]
        arg[0] = 0
        for i in range(1, n):  # from below
            if value[i - 1] - cost > best[i]:
                value[i] = value[i - 1] - cost
                arg[i] = arg[i - 1]
            else:
                value[i] = best[i]
                arg[i] = i
        for i in range(n - 2, -1, -1):  # from above
            if value[i + 1] - cost > value[i]:
                value[i] = value[i + 1] - cost
                arg[i] = arg[i + 1]
        for i in range(n):
            back[t, i] = arg[i]
            best[i] = value[i] + score[t, i]
    path = np.empty(T, dtype=np.int64)
    path[T - 1] = np.argmax(best)
    for t in range(T - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def near_melody(path_f0, f0s, voiced, *, semitones):
    """Where the F0 activations may be non-zero in the second fit: within
    ``semitones`` of the melody on voiced frames, nowhere on the others.

    Returns
    -------
    np.ndarray [shape=(len(f0s), n_frames), dtype=float32] of 0 and 1
    """
    log_f0s = np.log2(f0s)[:, None]
    target = np.log2(np.where(voiced, np.maximum(path_f0, 1e-3), 1.0))[None, :]
    near = (np.abs(log_f0s - target) <= semitones / 12.0) & np.asarray(voiced)[None, :]
    return near.astype(np.float32)

"""Source models adapted to the mixture: each source's templates through a gain curve.

Examples are recorded in one room, through one chain, on one instrument; the
mixture in others. Part of what differs is a smooth change of level over
frequency (a brighter piano, a darker bass, a closer microphone), which learned
templates cannot follow: they then leave that source's energy to another
model. :func:`equalize` fits, for each source, a gain curve that is smooth on a
log-frequency axis (``n_bands`` overlapping Hann bumps, a few numbers per
source), by multiplicative updates of the Kullback-Leibler divergence
alternated with those of the activations, from a first fit of the plain
templates:

    V ~= sum_s diag(B g_s) W_s H_s

with ``B`` the bumps (each row summing to 1, so ``g_s = 1`` is no change). The
templates keep their shape within each band, so a model of one instrument does
not turn into another, and the sources still compete for each bin through
their templates (docs/decisions.md, "Source models: adapted to the mixture's
colour").
"""
import numpy as np

from .nmf import nmf

__all__ = ["gain_bases", "equalize", "through", "BANDS", "LOWEST_HZ", "FIRST_ITER", "ROUNDS", "MAX_GAIN"]

#: Bumps of the gain curve on a log-frequency axis, from LOWEST_HZ to the Nyquist frequency.
BANDS, LOWEST_HZ = 6, 60.0
#: Iterations of the plain templates' activations before the gains come in, then
#: rounds of one update of the activations and one of the gains (the Supervised mode
#: gives the rounds the rest of its iterations: 30 of its 50).
FIRST_ITER, ROUNDS = 20, 30
#: A band's gain stays within [1 / MAX_GAIN, MAX_GAIN]: with the activations fitted
#: too (which can take a source's level), its bands within 24 dB of each other on
#: magnitude spectrograms, which `learn`'s KL models are (12 dB on powers).
MAX_GAIN = 4.0


def gain_bases(freqs, *, n_bands=BANDS, lowest=LOWEST_HZ, highest=None):
    """The bumps ``B`` of the gain curves at rows of centre frequencies ``freqs`` (Hz).

    Hann bumps with centres evenly spaced in log frequency from ``lowest`` to
    ``highest`` (default: the highest of ``freqs``), each reaching the next
    centre; rows below ``lowest`` take the first bump's.

    Returns
    -------
    B : np.ndarray [shape=(len(freqs), n_bands), dtype=float64]
        Non-negative, each row summing to 1.
    """
    freqs = np.asarray(freqs, dtype=np.float64)
    highest = float(freqs.max()) if highest is None else float(highest)
    octaves = np.log2(np.clip(freqs, lowest, highest))
    if n_bands == 1 or highest <= lowest:
        return np.ones((freqs.size, 1))
    centres = np.linspace(np.log2(lowest), np.log2(highest), n_bands)
    distance = np.abs(octaves[:, None] - centres[None, :]) / (centres[1] - centres[0])
    B = np.where(distance < 1.0, 0.5 + 0.5 * np.cos(np.pi * np.minimum(distance, 1.0)), 0.0)
    return B / B.sum(axis=1, keepdims=True)


def equalize(V, W, H, labels, bases, *, frames=1, rounds=ROUNDS, max_gain=MAX_GAIN, sparsity=0.0,
             limits=None):
    """Gain curves of each source's templates, and the activations through them, fitted to ``V``.

    ``rounds`` alternations of a multiplicative update of the activations
    (:func:`audionmf.nmf`'s, through the gains) and one of all the sources'
    gains at once, from the activations ``H`` of a first fit of the plain
    templates. The model is linear in the gains together, and in the
    activations, so neither update raises the Kullback-Leibler divergence (the
    bound keeps that: each band's step is the minimum of a convex bound within
    it). The activations can take a source's overall level from its gains, so
    the bound holds the curve's shape: its bands within ``max_gain ** 2`` of
    each other.

    Parameters
    ----------
    V : np.ndarray [shape=(frames * n_rows, n_frames)]
        The spectrogram fitted (frames stacked as the templates are).
    W : np.ndarray [shape=(frames * n_rows, K)]
        The templates; column k belongs to source ``labels[k]``.
    H : np.ndarray [shape=(K, n_frames)]
        Their activations, fitted (the rounds start from them).
    labels : np.ndarray [shape=(K,)] of int
    bases : np.ndarray [shape=(n_rows, n_bands)]
        :func:`gain_bases` of the rows.
    frames : int
        Stacked frames per template (the same gain in each).
    rounds : int
    max_gain : float
        Each band's gain is kept within ``[1 / max_gain, max_gain]``.
    sparsity : float
        The activations' L1 penalty, as for :func:`audionmf.nmf` (the gains have none).
    limits : audionmf.limits.Limits, optional
        As for :func:`audionmf.nmf`.

    Returns
    -------
    gains : dict
        Source -> gain of each row (np.ndarray [shape=(n_rows,), dtype=float64]).
    H : np.ndarray [shape=(K, n_frames)]
        The activations after the last round (whose update of H came before its
        update of the gains).
    """
    labels = np.asarray(labels)
    if rounds == 0:
        return {s: bases.sum(axis=1) for s in np.unique(labels)}, np.array(H, copy=True)
    order = np.argsort(labels, kind="stable")  # each source's columns side by side
    sources, starts = np.unique(labels[order], return_index=True)
    spans = {s: slice(a, b) for s, a, b in zip(sources, starts, [*starts[1:], labels.size])}
    # (within the box nmf keeps the templates in, so that the steps are those of its W)
    eps = float(np.finfo(V.dtype).eps)
    plain = np.clip(np.asarray(W, dtype=V.dtype)[:, order], eps, 1.0 / eps)
    out = np.empty_like(plain)
    g = {s: np.ones(bases.shape[1]) for s in spans}

    def step(current, num, den):
        # W = diag(B g_s) W_s: the gradient in g_s is the bumps times W_s's share of the
        # gradient in W, its negative part (num) over its positive part (den: for KL, the
        # row sums of H, one row). A band whose sums vanish or overflow keeps its gain.
        for s, cols in spans.items():
            up = bases.T @ folded(np.einsum("ik,ik->i", plain[:, cols], num[:, cols]).astype(np.float64), frames)
            down = bases.T @ folded((plain[:, cols] @ den[0, cols]).astype(np.float64), frames)
            ratio = np.divide(up, down, out=np.ones_like(up), where=down > 0)
            ratio[~np.isfinite(ratio)] = 1.0
            g[s] = np.clip(g[s] * ratio, 1.0 / max_gain, max_gain)
            gain = np.tile(bases @ g[s], frames).astype(out.dtype)
            np.multiply(plain[:, cols], gain[:, None], out=out[:, cols])
        return out

    result = nmf(V, W.shape[1], beta="kl", W=plain, H=np.asarray(H)[order], max_iter=rounds, tol=0.0,
                 check_every=rounds, sparsity=sparsity, template_step=step, limits=limits)
    H = np.empty_like(result.H)
    H[order] = result.H
    return {s: bases @ g[s] for s in spans}, H


def folded(row_sums, frames):
    """Sums over the stacked frames of each row."""
    return row_sums.reshape(frames, -1).sum(axis=0)


def through(W, labels, gains, frames=1):
    """The templates ``W`` with each source's rows scaled by its gains (one per row of
    a stacked frame; gains on bands of bins are spread onto the bins by the pooling
    matrix's transpose first)."""
    out = np.array(W, copy=True)
    labels = np.asarray(labels)
    for s, gain in gains.items():
        out[:, labels == s] *= np.tile(gain, frames).astype(out.dtype)[:, None]
    return out

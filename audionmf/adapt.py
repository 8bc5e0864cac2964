"""Source models adapted to the mixture: each source's templates through a gain curve.

Examples are recorded in one room, through one chain, on one instrument; the
mixture in others. Part of what differs is a smooth change of level over
frequency (a brighter piano, a darker bass, a closer microphone), which learned
templates cannot follow: they then leave that source's energy to another
model. :func:`equalize` fits, for each source, a gain curve that is smooth on a
log-frequency axis (``n_bands`` overlapping Hann bumps, a few numbers per
source) to the activations of a first fit, by multiplicative updates of the
Kullback-Leibler divergence:

    V ~= sum_s diag(B g_s) W_s H_s

with ``B`` the bumps (each row summing to 1, so ``g_s = 1`` is no change). The
templates keep their shape within each band, so a model of one instrument does
not turn into another, and the sources still compete for each bin through
their templates (docs/decisions.md, "Source models: adapted to the mixture's
colour").
"""
import numpy as np

__all__ = ["gain_bases", "equalize", "through", "BANDS", "LOWEST_HZ", "STEPS", "MAX_GAIN"]

#: Bumps of the gain curve on a log-frequency axis, from LOWEST_HZ to the Nyquist frequency.
BANDS, LOWEST_HZ = 6, 60.0
#: Multiplicative steps of the gains, on the activations' usual fit.
STEPS = 10
#: A band's gain stays within [1 / MAX_GAIN, MAX_GAIN] (12 dB each way on magnitude
#: spectrograms, which `learn`'s KL models are; 6 dB on powers).
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


def equalize(V, W, H, labels, bases, *, frames=1, steps=STEPS, max_gain=MAX_GAIN):
    """Gain curves of each source's templates, fitted to ``V`` with the activations kept.

    ``steps`` multiplicative steps of all the sources' gains at once (the model
    is linear in them together, so the divergence never increases; the bound
    keeps that); the activations ``H`` of the plain templates are kept: a fit of
    the activations through the gains after them raised the corpus by little
    more than it cost (docs/decisions.md, "Source models: adapted to the
    mixture's colour").

    Parameters
    ----------
    V : np.ndarray [shape=(frames * n_rows, n_frames)]
        The spectrogram fitted (frames stacked as the templates are).
    W : np.ndarray [shape=(frames * n_rows, K)]
        The templates; column k belongs to source ``labels[k]``.
    H : np.ndarray [shape=(K, n_frames)]
        Their activations, fitted.
    labels : np.ndarray [shape=(K,)] of int
    bases : np.ndarray [shape=(n_rows, n_bands)]
        :func:`gain_bases` of the rows.
    frames : int
        Stacked frames per template (the same gain in each).
    steps : int
    max_gain : float
        Each band's gain is kept within ``[1 / max_gain, max_gain]``.

    Returns
    -------
    dict
        Source -> gain of each row (np.ndarray [shape=(n_rows,), dtype=float64]).
    """
    labels = np.asarray(labels)
    sources = np.unique(labels)
    models = {s: W[:, labels == s] @ H[labels == s] for s in sources}
    # The gradient of the divergence in g_s: the bumps times the model's row sums (its
    # positive part) less the same sums weighed by V / the total model (its negative part).
    down = {s: bases.T @ folded(models[s].sum(axis=1, dtype=np.float64), frames) for s in sources}
    g = {s: np.ones(bases.shape[1]) for s in sources}
    for _ in range(steps):
        total = sum(np.tile((bases @ g[s]).astype(V.dtype), frames)[:, None] * models[s] for s in sources)
        ratio = np.divide(V, total, out=np.zeros_like(total), where=total > 0)
        for s in sources:
            up = bases.T @ folded(np.einsum("ij,ij->i", ratio, models[s], dtype=np.float64), frames)
            g[s] = np.clip(g[s] * up / np.maximum(down[s], 1e-30), 1.0 / max_gain, max_gain)
    return {s: bases @ g[s] for s in sources}


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

"""The vote: a mixture's own parts, each given to the sources by how a model masks it.

A blind KL-NMF of the mixture's magnitudes finds parts that recur (a note of the
piano, a vowel of the speaker, a drum pattern) over all the frames they sound in.
A model of the sources (a source/filter model, learned templates) gives soft masks;
averaged over each part's energy, they give the part's share of each source, and
the shares, sharpened, split every part's activations between the sources. The
parts' Wiener masks are then blended with the model's
(:func:`audionmf.masks.blend_sources`, a weighted geometric mean). Where the model's
mask is wrong on a minority of a part's frames, the part's other frames outvote them.
The vocals mode and the source models use it (docs/decisions.md, "Vocals: the vote"
and "Source models: the vote").
"""
import numpy as np

from .masks import wiener_masks
from .nmf import nmf
from .spectrogram import frame_means

__all__ = ["PARTS", "ITERATIONS", "SHARPNESS", "DECIMATION", "learn_parts", "shares", "split",
           "vote_masks"]

#: Parts of the blind factorization, and its iterations.
PARTS, ITERATIONS = 40, 100
#: A part's share s_j of source j counts as s_j**k / sum_i s_i**k with this k.
SHARPNESS = 2.0
#: The factorization sees the mean of this many frames at a time.
DECIMATION = 2


def learn_parts(V, parts, *, power, random_state, limits=None, step=DECIMATION):
    """The parts of a spectrogram ``V`` (rows x frames) of the given ``power``: a KL-NMF
    of the magnitudes of its means of ``step`` frames (``mean ** (1 / power)``), with
    ``parts`` templates learned (a count) or held fixed (an array).

    Returns
    -------
    W : np.ndarray [shape=(n_rows, n_parts)]
    H : np.ndarray [shape=(n_parts, n_frames)]
        Each step's activations repeated over its frames.
    """
    fixed = not np.isscalar(parts)
    n_frames = V.shape[1]
    coarse = frame_means(V, step)
    if power != 1:
        coarse **= 1.0 / power
    result = nmf(coarse, parts.shape[1] if fixed else parts, beta="kl", max_iter=ITERATIONS,
                 random_state=random_state, limits=limits, W=parts if fixed else None,
                 update_W=not fixed)
    return result.W, np.repeat(result.H, step, axis=1)[:, :n_frames]


def shares(W, H, masks, sharpness=SHARPNESS):
    """Each part's share of each source: the ``masks`` (n_sources x rows x frames,
    summing to 1 over the sources) averaged over the part's energy ``W[:, k] H[k]``,
    each raised to ``sharpness`` and normalized. np.ndarray [shape=(n_sources, n_parts)],
    every column summing to 1 (equal shares for a silent part)."""
    energy = W.sum(axis=0) * H.sum(axis=1)
    share = np.stack([(W * (mask @ H.T)).sum(axis=0) for mask in masks])
    share = np.clip(share / np.maximum(energy, 1e-30), 0.0, 1.0) ** sharpness
    total = share.sum(axis=0)
    return np.divide(share, total, out=np.full(share.shape, 1.0 / len(masks), dtype=share.dtype),
                     where=total > 0)


def split(H, shares):
    """Each source's share of the parts' activations, the sources' rows one block after
    the other: np.ndarray [shape=(n_sources * n_parts, n_frames)]."""
    return (shares[:, :, None] * H[None]).reshape(-1, H.shape[1])


def vote_masks(W, H_split):
    """The sources' Wiener masks (exponent 2 on the parts' magnitudes) from the split
    activations of :func:`split`: np.ndarray [shape=(n_sources, n_rows, n_frames)]."""
    n_sources = H_split.shape[0] // W.shape[1]
    labels = np.repeat(np.arange(n_sources), W.shape[1])
    return wiener_masks(np.tile(W, n_sources), H_split, labels, mask_power=2.0)

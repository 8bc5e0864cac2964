"""The vote: a mixture's own parts, each given to the sources by how a model masks it.

A blind KL-NMF of the mixture's magnitudes finds parts that recur (a note of the
piano, a vowel of the speaker, a drum pattern) over all the frames they sound in.
A model of the sources (a source/filter model, learned templates) gives soft masks;
averaged over each part's energy, they give the part's share of each source, and
the shares, sharpened, split every part's activations between the sources (a cue of
another kind may weigh in first: the vocals mode's :func:`voice_likeness`, from the
rhythm of a part's activations). The
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

__all__ = ["PARTS", "ITERATIONS", "SHARPNESS", "DECIMATION", "MODULATION_HZ", "VOICE_FLATNESS",
           "VOICE_SPREAD", "learn_parts", "shares", "modulation_flatness", "voice_likeness",
           "split", "vote_masks"]

#: Parts of the blind factorization, and its iterations.
PARTS, ITERATIONS = 40, 100
#: A part's share s_j of source j counts as s_j**k / sum_i s_i**k with this k.
SHARPNESS = 2.0
#: The factorization sees the mean of this many frames at a time.
DECIMATION = 2
#: The rates (Hz) of a part's activations over which :func:`modulation_flatness` is taken:
#: syllables and phrases (2-8 Hz) with a margin; a band's beat and its multiples.
MODULATION_HZ = (1.0, 10.0)
#: :func:`voice_likeness` is a logistic of the flatness, 1/2 at VOICE_FLATNESS (between
#: a voice's parts' and a band's: docs/decisions.md, "Vocals: the vote's parts lean on
#: their rhythm"), its scale VOICE_SPREAD.
VOICE_FLATNESS, VOICE_SPREAD = 0.40, 0.05


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


def shares(W, H, masks, sharpness=SHARPNESS, prior=None, prior_weight=0.0):
    """Each part's share of each source: the ``masks`` (n_sources x rows x frames,
    summing to 1 over the sources) averaged over the part's energy ``W[:, k] H[k]``,
    each raised to ``sharpness`` and normalized. np.ndarray [shape=(n_sources, n_parts)],
    every column summing to 1 (equal shares for a silent part).

    With a ``prior`` (n_sources x n_parts, each part's likelihood of each source from
    another cue, e.g. :func:`voice_likeness`), each share is first multiplied by
    ``prior**prior_weight`` (equal priors change nothing)."""
    energy = W.sum(axis=0) * H.sum(axis=1)
    share = np.stack([(W * (mask @ H.T)).sum(axis=0) for mask in masks])
    share = np.clip(share / np.maximum(energy, 1e-30), 0.0, 1.0)
    if prior is not None and prior_weight:
        share = share * np.clip(prior, 0.0, 1.0) ** prior_weight
    share = share ** sharpness
    total = share.sum(axis=0)
    return np.divide(share, total, out=np.full(share.shape, 1.0 / len(masks), dtype=share.dtype),
                     where=total > 0)


def modulation_flatness(H, frame_rate, band=MODULATION_HZ):
    """How aperiodic each part's activations are: the spectral flatness (geometric over
    arithmetic mean) of the power spectrum of each row of ``H`` (parts x frames, at
    ``frame_rate`` frames per second, its mean removed) between the rates of ``band``
    (Hz). A voice's syllables and phrases come at irregular times and give a flat
    modulation spectrum (noise's periodogram: about e**-0.577 = 0.56); a note, a chord or
    a drum that recurs with the beat gives peaks at the beat's rate and its multiples
    (flatness near 0). np.ndarray [shape=(n_parts,)]; NaN for a row that does not move,
    and for every row of a signal shorter than a period of the band's slowest rate."""
    H = np.asarray(H, dtype=np.float64)
    n_frames = H.shape[1]
    flatness = np.full(H.shape[0], np.nan)
    if n_frames < frame_rate / band[0]:
        return flatness
    n_fft = 1 << int(np.ceil(np.log2(2 * n_frames)))  # zero-padded: no wrap-around
    rates = np.fft.rfftfreq(n_fft, 1.0 / frame_rate)
    inside = (rates >= band[0]) & (rates <= band[1])
    power = np.abs(np.fft.rfft(H - H.mean(axis=1, keepdims=True), n_fft, axis=1)[:, inside]) ** 2
    level = power.mean(axis=1)
    moving = level > 1e-20 * np.maximum((H**2).mean(axis=1) * n_frames, 1e-300)
    power = power[moving] + 1e-12 * level[moving, None]
    flatness[moving] = np.exp(np.log(power).mean(axis=1)) / power.mean(axis=1)
    return flatness


def voice_likeness(H, frame_rate):
    """Each part's likeness to a voice, in [0, 1], from the rhythm of its activations
    alone (no pitch): a logistic of :func:`modulation_flatness` (1/2 at
    :data:`VOICE_FLATNESS`, spread :data:`VOICE_SPREAD`), 1/2 where it is undefined.
    np.ndarray [shape=(n_parts,)]."""
    flatness = modulation_flatness(H, frame_rate)
    like = 1.0 / (1.0 + np.exp(-(flatness - VOICE_FLATNESS) / VOICE_SPREAD))
    return np.where(np.isnan(like), 0.5, like)


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

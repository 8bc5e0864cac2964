"""Drums apart from the rest, blindly: ``separate(two_stems="drums")``.

Nothing is learned on the mixture, so nothing learned on it can swallow the
drums. Its spectrogram is explained by a fixed dictionary of two parts:

* **drums**: generic drum templates that ship with the package
  (``data/drums.npz``, 64 templates of 5 frames, learned from recorded hits of
  two freely licensed kits; see ``data/README.md``);
* **the rest**: synthetic harmonic combs, one per semitone from 27.5 Hz to
  1.8 kHz (:func:`comb_templates`), steady over the 5 frames. A pitched
  instrument's note is a comb; a drum hit is not.

Only the activations are fitted. The short notes of a low comb whose
activity is nearly all short notes then count as drums
(:func:`short_note_part`): a tom, a kick's ringing tail or a snare's body is
pitched, and the generic drum templates cannot know the pitch of this kit's
drums, but a drum never holds a note. Which combs those are is decided once
for the whole signal (from the activations of its excerpts, for a long one).
The drum mask this gives is then blended with the percussive mask of
median-filtering HPSS (:func:`audionmf.masks.hpss_mask`) by a normalized
geometric mean (:func:`audionmf.masks.blend_masks`): each catches drum energy
the other misses. For speed the activations and the HPSS filters work on a
spectrogram whose bins above 2 kHz are summed in 1/12-octave bands
(:func:`band_pooling`); the masks are built at full resolution, harder than
Wiener's (:data:`MASK_POWER`). How it measures: ``docs/decisions.md``.
"""
import functools
import os

import numpy as np

from .. import _lazy
from .._threads import serial_blas
from ..analysis import Analysis, band_pooling, templates_at_rate
from ..masks import HPSS_KERNEL, blend_masks, hpss_mask, wiener_masks
from ..models import SourceModel
from ..spectrogram import hann_lobe
from .base import Fitted, Mode, keyword

__all__ = ["Drums", "drum_model", "comb_templates", "comb_pitches", "short_note_part"]

DRUM_MODEL_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "drums.npz")
#: Bins above this frequency are summed in bands for the fit and the HPSS filters.
POOL_ABOVE_HZ = 2000.0
#: Pitches of the combs.
COMB_FMIN, COMB_FMAX = 27.5, 1800.0
#: Combs below this pitch may be drums (toms, kick tails, snare bodies)...
SHORT_NOTE_BELOW_HZ = 300.0
#: ... when this share of their activity is in notes shorter than SHORT_NOTE_SECONDS.
SHORT_NOTE_SHARE = 0.8
SHORT_NOTE_SECONDS = 0.5
#: Exponent of the masks: harder than Wiener's keeps more of the drums' low ring out
#: of the other part (docs/decisions.md, "Two-stems mask power").
MASK_POWER = 3.0


@functools.lru_cache(maxsize=1)
def drum_model():
    """The generic drum templates shipped with the package (a SourceModel)."""
    return SourceModel.load(DRUM_MODEL_PATH)


def comb_pitches(fmin=27.5, fmax=1800.0):
    """Fundamental frequencies of :func:`comb_templates`: a semitone apart from ``fmin`` up to ``fmax``."""
    return fmin * 2.0 ** (np.arange(int(np.floor(12 * np.log2(fmax / fmin) + 1e-9)) + 1) / 12)


def comb_templates(*, sr, n_fft, fmin=27.5, fmax=1800.0, slope=2.0, width=2):
    """Spectra of steady harmonic notes, one per semitone from ``fmin`` to ``fmax``.

    Partial n of pitch f0 lies at n * f0 (up to the Nyquist frequency) with
    amplitude ``n ** -slope``, drawn as the main lobe of a Hann window's
    spectrum over ``width`` bins on each side; every other bin is 0.

    Returns
    -------
    W : np.ndarray [shape=(n_fft // 2 + 1, n_pitches)]
        Columns sum to 1.

    Examples
    --------
    >>> W = comb_templates(sr=22050, n_fft=2048)
    >>> W.shape
    (1025, 73)
    >>> int(W[:, 48].argmax()), round(440 * 2048 / 22050)  # A4, bin of 440 Hz
    (41, 41)
    """
    n_bins = n_fft // 2 + 1
    pitches = comb_pitches(fmin, fmax)
    W = np.zeros((n_bins, len(pitches)))
    bins = np.arange(n_bins)
    for j, f0 in enumerate(pitches):
        for n in range(1, int(sr / 2 / f0) + 1):
            centre = n * f0 * n_fft / sr
            near = bins[max(0, int(np.floor(centre - width))) : int(np.ceil(centre + width)) + 1]
            W[near, j] = np.maximum(W[near, j], n**-slope * hann_lobe(near - centre))
    return W / W.sum(axis=0)


def short_note_part(H, width, share=SHORT_NOTE_SHARE):
    """The part of each row of activations that is drums, if the row is mostly short notes.

    The notes of at least ``width`` frames of a row are what a grey opening of
    that length keeps (the largest curve under the row made of plateaus at
    least ``width`` wide); the rest is short notes. A row whose short notes
    hold at least ``share`` of its total gives them; any other row gives
    zeros. A pitched instrument holds some of its notes; a drum holds none.

    Parameters
    ----------
    H : np.ndarray [shape=(n_rows, n_frames)]
        Non-negative activations of pitched templates.
    width : int
        Frames of the shortest note kept (at least 1).

    Returns
    -------
    np.ndarray [shape=(n_rows, n_frames), dtype=float64]
        Between 0 and ``H``.

    Examples
    --------
    >>> H = np.zeros((2, 40))
    >>> H[0, [5, 6, 20, 21]] = 1.0  # two hits of two frames
    >>> H[1, 5:35] = 1.0            # one held note
    >>> short_note_part(H, 9).sum(axis=1)
    array([4., 0.])
    """
    grey_opening = _lazy.module("scipy.ndimage").grey_opening  # (slow to import)

    H = np.asarray(H, dtype=np.float64)
    short = H - grey_opening(H, size=(1, max(1, int(width))), mode="nearest")
    short = np.clip(short, 0.0, H)  # round-off
    holds_notes = short.sum(axis=1) < share * H.sum(axis=1)
    short[holds_notes] = 0.0
    return short


@functools.lru_cache(maxsize=1)
def drums_dictionary():
    """``(templates, labels, model, low)``: the drum model's templates and the
    harmonic combs, stacked over the model's context frames (the same comb in
    every frame, divided among them); ``low`` are the columns of the combs below
    :data:`SHORT_NOTE_BELOW_HZ`.
    """
    model = drum_model()
    frames = 2 * model.context + 1
    combs = comb_templates(sr=model.sr, n_fft=model.n_fft, fmin=COMB_FMIN, fmax=COMB_FMAX)
    combs = np.tile(combs / frames, (frames, 1)).astype(np.float32)
    templates = np.hstack([model.templates, combs])
    templates.setflags(write=False)  # cached: shared by every call
    labels = np.repeat([0, 1], [model.n_components, combs.shape[1]])
    labels.setflags(write=False)
    low = model.n_components + np.flatnonzero(comb_pitches(COMB_FMIN, COMB_FMAX) < SHORT_NOTE_BELOW_HZ)
    low.setflags(write=False)
    return templates, labels, model, low


class Drums(Mode):
    """``separate(y, sr, two_stems="drums")``: ``drums`` and ``no_drums``."""

    key = "drums"
    selected_by = "two_stems"
    two_stems = "drums"
    decides = "the drum templates decide the sources and the analysis"
    default_mask_power = MASK_POWER
    default_max_iter = 60
    reach = HPSS_KERNEL // 2

    @classmethod
    def source_names(cls, options):
        return ["drums", "no_drums"]

    def configure(self, analysis_options, spell=keyword):
        templates, self.labels, model, self.low_combs = drums_dictionary()
        own = Analysis.from_models([model], **analysis_options)
        self.analysis = own.at_rate(self.sr)
        self.names = self.source_names({})
        self.fixed = templates_at_rate(templates, own, self.sr)
        frames = 2 * own.context + 1
        self.rows = self.fixed.shape[0] // frames
        params = self.analysis.stft
        self.short_width = max(1, int(round(SHORT_NOTE_SECONDS * self.sr / params.hop_length)))
        # Fit and HPSS on bins above 2 kHz summed in narrow bands; masks at full resolution.
        self.pool = band_pooling(self.rows, sr=self.sr, n_fft=params.n_fft, above_hz=POOL_ABOVE_HZ)
        # Single-threaded, like the pooling of the spectrogram, since a fit follows: after a
        # multi-threaded product OpenBLAS's idle workers spin for about 0.1 s, taking a
        # core from the fit.
        with serial_blas():
            self.fit_templates = np.vstack([self.pool @ block for block in np.split(self.fixed, frames)])

    def fit(self, V, whole):
        """The activations of the whole signal, or of its excerpts: from them, the low
        combs that play short notes only, whose short notes then go to the drums."""
        H = self.fixed_activations(V, self.fit_templates)
        rows = self.low_combs
        rows = rows[short_note_part(H[rows], self.short_width).any(axis=1)]
        if whole:
            W, H, labels = self._short_notes_to_drums(self.fixed, H, self.labels, rows)
            return Fitted(W=W, labels=labels, H=H, templates=self.fit_templates)
        return Fitted(W=self.fixed, labels=self.labels, templates=self.fit_templates, state=rows)

    def spread(self, fitted):
        # The short-note opening's value at a frame depends on frames up to
        # short_width - 1 away, when it is applied a block at a time.
        width = self.short_width - 1 if fitted.state is not None else 0
        return self.analysis.context + width

    def masks(self, fitted, H, X, h_span, x_span):
        W, labels = fitted.W, fitted.labels
        if fitted.state is not None:
            W, H, labels = self._short_notes_to_drums(W, H, labels, fitted.state)
        masks = wiener_masks(W, H, labels, mask_power=self.mask_power,
                             context=self.analysis.context)[:, :, h_span]
        # Blended with the HPSS percussive mask; X reaches HPSS_KERNEL // 2 frames beyond
        # the block on each side (or to the signal's edge), so the median filters see
        # what they would see on the whole signal.
        A = np.abs(X[..., : self.rows, :])
        if A.ndim == 3:
            A = A.sum(axis=0)
        percussive = self.pool.T @ hpss_mask(self.pool @ A, HPSS_KERNEL)[:, x_span]
        drums = blend_masks(masks[0], percussive)
        return np.stack([drums, 1.0 - drums])

    def _short_notes_to_drums(self, W, H, labels, rows):
        """Templates, activations and labels with the short notes of combs ``rows`` as
        drums: each of those combs gets a twin labelled drums that takes its notes
        shorter than ``short_width`` frames; the comb keeps the rest."""
        H = np.array(H, dtype=np.float64)
        short = short_note_part(H[rows], self.short_width, share=0.0)
        H[rows] -= short
        drums = np.zeros(len(rows), dtype=np.asarray(labels).dtype)
        return np.hstack([W, W[:, rows]]), np.vstack([H, short]), np.concatenate([labels, drums])

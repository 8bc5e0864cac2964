"""The lead voice apart from the band, with no training data: ``separate(two_stems="vocals")``.

The mixture's power spectrogram is explained by the source/filter model of
:mod:`audionmf.sourcefilter` (Durrieu et al. 2010, 2011): the lead is a
harmonic comb on a fine grid of fundamentals from 70 Hz to 1 kHz (a quarter
of a semitone apart) times a smooth filter, plus a flat source for breath and
consonants; the band is free NMF components. Two fits:

1. every fundamental free: the melody is the best path through their
   activations, weighted by each comb's power through the filter
   (:data:`ENERGY_WEIGHT`), less a share of each comb's running median over a
   quarter second (:data:`HELD_DISCOUNT`: a band's held note is not the melody;
   :func:`audionmf.sourcefilter.track`), voiced where the comb
   near it holds a share of the frame (:data:`VOICED_SHARE`);
2. the accompaniment started afresh, the lead's fundamentals kept within
   :data:`NEAR_SEMITONES` of the melody on voiced frames; the flat source is
   silent: wherever it may sound, it takes the hi-hat and the snare
   (docs/decisions.md, "Vocals: the source/filter model").

A melody may be given instead (``melody``: a CSV of time and F0 in Hz, or an
array of the two columns), then only the second fit runs. Where the melody is
wrong, the lead takes a note of the band for a few frames: so the mask is also
put to a vote. A blind KL-NMF of the magnitude spectrogram
(:data:`VOTE_COMPONENTS`) splits the mixture into recurring parts, and each part
goes to the lead in the share of its energy that the model's Wiener mask gives
the lead, over all its frames, leaning towards the part's likeness to a voice by the
rhythm of its activations (:data:`VOICE_WEIGHT`; sharpened:
:data:`audionmf.vote.SHARPNESS`); the masks are the normalized geometric mean of the
vote's and the model's, kept off 0 and 1 (:data:`MODEL_FLOOR`; docs/decisions.md,
"Vocals: the vote"). For speed the fit
works on a spectrogram whose bins above 5 kHz are summed in 1/12-octave bands
(:func:`audionmf.analysis.band_pooling`), which the masks share. How each
default measures: ``docs/decisions.md``.
"""
import array
import functools
import io
import os

import numpy as np

from .._validation import MAX_SR, ParameterError
from ..analysis import Analysis, band_centres, band_pooling
from ..io import looks_like_audio
from ..masks import blend_masks
from ..spectrogram import STFTParams, frame_means
from .. import sourcefilter as sf
from .. import vote
from .base import Fitted, Mode, Option, keyword

__all__ = ["Vocals", "read_melody", "melody_csv"]

#: The analysis, at 22.05 kHz (frame and hop keep their durations at other rates):
#: 46 ms frames resolve the partials of a 100 Hz voice; Itakura-Saito on power.
SR, N_FFT, HOP = 22050, 1024, 256
#: Fundamentals of the lead, and the grid's steps per semitone.
F0_MIN, F0_MAX, STEPS_PER_SEMITONE = 70.0, 1000.0, 4
#: Smooth filters (Hann bumps on the mel scale) and free accompaniment components.
N_FILTERS, N_ACCOMPANIMENT = 30, 40
#: Iterations of the first fit (melody) and of the second (restricted to it).
FIRST_ITER, SECOND_ITER = 40, 30
#: Cost of a semitone's move of the melody from one frame to the next, against the
#: log of the normalized salience (0.3 with the held-note discount: docs/decisions.md,
#: "Vocals: the melody's salience").
JUMP_COST = 0.3
#: The lead's F0 activations kept within this many semitones of the melody.
NEAR_SEMITONES = 1.0
#: A frame is voiced where the comb near the melody holds this share of its model.
VOICED_SHARE = 0.05
#: Bins above this frequency are summed in 1/12-octave bands for the fit and masks.
POOL_ABOVE_HZ = 5000.0
#: The melody follows each comb's activation to the power ``1 - ENERGY_WEIGHT`` times its
#: power through the filter to ``ENERGY_WEIGHT`` (each normalized per frame): the filter's
#: scale is set by its peak, so a high comb under a low filter needs a large activation for
#: little power, while the power alone favours the band's low notes (docs/decisions.md,
#: "Vocals: the melody's salience").
ENERGY_WEIGHT = 0.25
#: Each comb's salience less this share of its running median over HELD_SECONDS: a note
#: of the band held that long is not the melody (docs/decisions.md, "Vocals: the melody's
#: salience").
HELD_DISCOUNT, HELD_SECONDS = 0.5, 0.25
#: Parts of the vote's blind factorization (:mod:`audionmf.vote`).
VOTE_COMPONENTS = vote.PARTS
#: Each part's share of the lead and of the band are multiplied by its likeness to a
#: voice (:func:`audionmf.vote.voice_likeness`, from the rhythm of its activations
#: alone) and by 1 minus it, each to this power, before the shares are sharpened: where
#: the melody is on the band for most of a part's frames, the part's rhythm still tells
#: a voice's syllables from notes that recur with the beat.
VOICE_WEIGHT = 0.5
#: The model's mask is kept within [MODEL_FLOOR, 1 - MODEL_FLOOR] before it is blended
#: with the vote's: a sure mask (0 or 1) wins any geometric mean, and the model is as
#: sure where its melody is on the band's note as where it is right.
MODEL_FLOOR = 0.05
#: The first fit (the melody's) sees the mean of this many frames at a time.
TRACK_DECIMATION = 2
#: Frames beyond a block that a long file's melody tracking sees on each side.
TRACK_MARGIN = 128
#: A melody CSV's lines are no longer than this (a file of one endless line is refused).
MAX_LINE = 1000


class Vocals(Mode):
    """``separate(y, sr, two_stems="vocals")``: ``vocals`` and ``no_vocals``."""

    key = "vocals"
    selected_by = "two_stems"
    two_stems = "vocals"
    decides = "the source/filter model decides the sources and the analysis"
    default_mask_power = 1.0  # of power spectrograms: Wiener's
    default_max_iter = FIRST_ITER + SECOND_ITER
    iterations_note = f"{FIRST_ITER} + {SECOND_ITER} with --two-stems vocals"
    options = (
        Option("melody", "--melody", "path",
               "vocals: the lead's melody from a CSV file of time_s,f0_hz (0 where unvoiced), "
               "as --melody-out writes it, instead of tracking it (one input only)",
               metavar="MELODY.csv"),
        Option("melody_out", "--melody-out", "filename",
               "vocals: also write the melody tracked (or given) as OUTDIR/<stem>/NAME, a CSV "
               "of time_s,f0_hz with 0 where unvoiced", metavar="NAME.csv"),
    )

    @classmethod
    def source_names(cls, options):
        return ["vocals", "no_vocals"]

    @classmethod
    def file_names(cls, options):
        name = options.get("melody_out")
        return [name] if name else []

    @classmethod
    def check_options(cls, options, spell=keyword):
        name = options.get("melody_out")
        if name is not None:
            if (not isinstance(name, str) or not name.lower().endswith(".csv")
                    or os.path.basename(name) != name or name.startswith(".")):
                raise ParameterError(f"{spell('melody_out', name)}: expected a file name ending "
                                     "in .csv (it is written into each input's output folder)")
        melody = options.get("melody")
        if melody is not None and not isinstance(melody, (str, os.PathLike)):
            check_melody(melody, spell("melody"))
        return dict(options)

    def configure(self, analysis_options, spell=keyword, melody=None, melody_out=None):
        self.check_options({"melody_out": melody_out}, spell)  # (the melody is checked below)
        if self.sr > MAX_SR:  # (the combs' frames grow with the rate: 10 MHz needs 11 GB)
            raise ParameterError(f"{spell('two_stems', 'vocals')}: a sampling rate of at most "
                                 f"{MAX_SR} Hz is expected, got {self.sr} Hz")
        for name, value in analysis_options.items():
            if value is not None:
                raise ParameterError(f"{spell(name)} cannot be used with "
                                     f"{spell('two_stems', 'vocals')}: {self.decides}")
        self.melody_name = os.fspath(melody) if isinstance(melody, (str, os.PathLike)) else spell("melody")
        if isinstance(melody, (str, os.PathLike)):
            melody = read_melody(melody)
        self.given = None if melody is None else check_melody(melody, spell("melody"))
        own = Analysis(sr=SR, stft=STFTParams(N_FFT, HOP, "hann"), beta=0.0, power=2.0)
        self.analysis = own.at_rate(self.sr)
        self.names = self.source_names({})
        self.melody_out = melody_out
        params = self.analysis.stft
        self.pool = band_pooling(self.analysis.n_freq, sr=self.sr, n_fft=params.n_fft,
                                 above_hz=POOL_ABOVE_HZ)
        rows = self.pool.shape[0]
        freqs = band_centres(self.pool, sr=self.sr, n_fft=params.n_fft)
        self.f0s = sf.f0_grid(F0_MIN, F0_MAX, STEPS_PER_SEMITONE)
        self.W_F0 = self.pool @ _combs(self.sr, params.n_fft)
        self.W_filter = sf.smooth_filters(freqs, N_FILTERS)
        self.W_F0.setflags(write=False)
        self.W_filter.setflags(write=False)
        self.track = []  # the F0 row of the frames masked so far, block by block
        self.n_rows = rows

    # ------------------------------------------------------------- the fits
    def fit(self, V, whole):
        """Both fits and the vote's factorization on the whole signal (its activations
        and melody kept), or on its excerpts (the accompaniment's and the vote's
        templates kept)."""
        given = self.given_frames(0, V.shape[1]) if whole and self.given is not None else None
        factors, melody, votes = self._separate(V, N_ACCOMPANIMENT, VOTE_COMPONENTS, given)
        return Fitted(W=factors.W_acc, labels=np.ones(N_ACCOMPANIMENT, dtype=int),
                      H=self._stack(factors, votes, melody) if whole else None,
                      templates=factors.W_acc, state=votes[0])

    def activations_at(self, fitted, V, start):
        """A block's fits with the accompaniment's and the vote's templates fixed;
        its melody from ``start``, the block's first frame, where one is given."""
        if not np.any(V):
            n_rows = self.f0s.size + 1 + N_FILTERS + N_ACCOMPANIMENT + 2 * VOTE_COMPONENTS + 1
            return np.zeros((n_rows, V.shape[1]), dtype=np.float32)
        given = None if self.given is None else self.given_frames(start, V.shape[1])
        factors, melody, votes = self._separate(V / V.max(), fitted.templates, fitted.state, given)
        return self._stack(factors, votes, melody)

    def spread(self, fitted):
        return 0 if fitted.H is not None else TRACK_MARGIN

    def _separate(self, V, accompaniment, votes, given):
        """Both fits of ``V`` (normalized) and the vote; ``accompaniment`` and
        ``votes``: the number of free templates, or fixed templates. Returns the
        factors, the melody (Hz, 0 unvoiced) and the vote (:meth:`_vote`)."""
        V = np.maximum(V, max(sf.FLOOR, sf.RELATIVE_FLOOR * float(V.mean())))
        fixed = not np.isscalar(accompaniment)
        n_frames = V.shape[1]
        scale = float(V.mean())
        if given is None:
            # The first fit on pairs of frames averaged (TRACK_DECIMATION): half the work.
            step = TRACK_DECIMATION
            pairs = -(-n_frames // step)
            coarse = frame_means(V, step)
            first = sf.SourceFilter.start(self.W_F0, self.W_filter, accompaniment, pairs,
                                          self.rng, scale=scale)
            sf.fit(coarse, first, FIRST_ITER, update_acc=not fixed)
            held = max(1, round(HELD_SECONDS * self.sr / (self.analysis.stft.hop_length * step))) | 1
            salience = sf.discount_held(_salience(first), held, HELD_DISCOUNT)
            path = self.f0s[sf.track(salience, self.f0s, jump_cost=JUMP_COST,
                                     steps_per_semitone=STEPS_PER_SEMITONE)]
            voiced = voicing(first, path, self.f0s)
            melody = np.repeat(np.where(voiced, path, 0.0), step)[:n_frames]
            H_F0 = np.repeat(first.H_F0, step, axis=1)[:, :n_frames]
            H_filter = np.repeat(first.H_filter, step, axis=1)[:, :n_frames]
        else:
            melody = given
            start = sf.SourceFilter.start(self.W_F0, self.W_filter, 1, n_frames, self.rng, scale=scale)
            H_F0, H_filter = start.H_F0, start.H_filter
        # The second fit: the band afresh, the lead's F0s near the melody; only the
        # F0 templates that some frame may use take part.
        voiced = melody > 0
        allowed = np.vstack([sf.near_melody(melody, self.f0s, voiced, semitones=NEAR_SEMITONES),
                             np.zeros((1, n_frames), dtype=np.float32)])  # the flat source: silent
        used = np.flatnonzero(allowed.any(axis=1))
        if not used.size:
            used = np.array([self.f0s.size])  # nothing voiced: the (silenced) flat source
        band = sf.SourceFilter.start(self.W_F0, self.W_filter, accompaniment, n_frames, self.rng,
                                     scale=scale)
        H_F0 = H_F0[used] + 1e-3 * float(H_F0.mean()) * allowed[used]  # room to grow where allowed
        factors = sf.SourceFilter(self.W_F0[:, used], self.W_filter, band.W_acc, H_F0,
                                  np.ascontiguousarray(H_filter), band.H_acc)
        sf.fit(V, factors, SECOND_ITER, allowed=allowed[used], update_acc=not fixed)
        full = np.zeros((self.f0s.size + 1, n_frames), dtype=np.float32)
        full[used] = factors.H_F0
        factors.W_F0, factors.H_F0 = self.W_F0, full
        return factors, melody.astype(np.float32), self._vote(V, factors, votes)

    def _vote(self, V, factors, templates):
        """The vote (:mod:`audionmf.vote`) on the magnitudes of ``V``, ``templates``
        the number of parts to learn or fixed ones: each part's activations split between
        the lead and the band by the model's Wiener mask.

        Returns
        -------
        W, H_lead, H_band : np.ndarray (float32)
        """
        W, H = vote.learn_parts(V, templates, power=self.analysis.power, random_state=self.rng,
                                limits=self.limits)
        lead, band = factors.lead(), factors.accompaniment()
        total = lead + band
        mask = np.divide(lead, total, out=np.zeros(total.shape, dtype=np.float32), where=total > 0)
        step = vote.DECIMATION  # (learn_parts repeats each step's activations)
        like = vote.voice_likeness(H[:, ::step], self.sr / (self.analysis.stft.hop_length * step))
        shares = vote.shares(W, H, np.stack([mask, 1.0 - mask]), prior=np.stack([like, 1.0 - like]),
                             prior_weight=VOICE_WEIGHT)
        H_lead, H_band = np.split(vote.split(H, shares), 2)
        return W, H_lead, H_band

    def _stack(self, factors, votes, melody):
        return np.vstack([factors.H_F0, factors.H_filter, factors.H_acc, votes[1], votes[2],
                          melody[None, :]])

    # ------------------------------------------------------------- masks and melody
    def prepare(self, signal):
        """Refuse a given melody with no voiced row within the signal (it would give
        silent vocals)."""
        if self.given is None:
            return
        seconds = signal.n_samples / signal.sr
        t, f0 = self.given[:, 0], self.given[:, 1]
        if not np.any((f0 > 0) & (t <= seconds)):
            raise ParameterError(f"{self.melody_name}: no voiced row within the input "
                                 f"(0 to {seconds:g} s)")

    def masks(self, fitted, H, X, h_span, x_span):
        H = H[:, h_span]
        n_f0, n_filter = self.W_F0.shape[1], self.W_filter.shape[1]
        H_F0, H_filter, H_acc, H_lead, H_band, melody = np.split(H, np.cumsum(
            [n_f0, n_filter, N_ACCOMPANIMENT, VOTE_COMPONENTS, VOTE_COMPONENTS]))
        self.track.append(melody.copy())
        p = self.mask_power
        lead = ((self.W_F0 @ H_F0) * (self.W_filter @ H_filter)).astype(np.float64) ** p
        band = (fitted.templates @ H_acc).astype(np.float64) ** p
        model = np.divide(lead, lead + band, out=np.full(lead.shape, 0.5), where=lead + band > 0)
        votes = vote.vote_masks(fitted.state, np.vstack([H_lead, H_band]))[0]
        vocals = self.pool.T @ blend_masks(votes, np.clip(model, MODEL_FLOOR, 1.0 - MODEL_FLOOR))
        return np.stack([vocals, 1.0 - vocals])

    def melody(self):
        """The melody of the frames masked so far: see :meth:`melody_of`."""
        return self.melody_of(self.track)

    def melody_of(self, activations):
        """The melody of consecutive blocks of activations, from the first frame on
        (the F0 is their last row): np.ndarray [shape=(n_frames, 2)] of time (s) and
        F0 (Hz, 0 where unvoiced)."""
        rows = [np.asarray(H[-1], dtype=np.float64) for H in activations]
        f0 = np.concatenate(rows) if rows else np.zeros(0)
        times = np.arange(f0.size) * self.analysis.stft.hop_length / self.sr
        return np.column_stack([times, f0])

    def files(self):
        if not self.melody_out:
            return {}
        return {self.melody_out: melody_csv(self.melody())}

    def picture(self):
        return {"melody": self.melody()}

    def given_frames(self, start, n_frames):
        """The given melody at frames ``start`` ... ``start + n_frames - 1``: each frame
        takes the F0 of the nearest time given (0 past the last time by more than a hop)."""
        times = (start + np.arange(n_frames)) * self.analysis.stft.hop_length / self.sr
        t, f0 = self.given[:, 0], self.given[:, 1]
        index = np.clip(np.searchsorted(t, times), 1, max(1, t.size - 1))
        before = np.clip(index - 1, 0, t.size - 1)
        index = np.clip(index, 0, t.size - 1)
        nearest = np.where(np.abs(t[before] - times) <= np.abs(t[index] - times), before, index)
        hop = self.analysis.stft.hop_length / self.sr
        out = f0[nearest].astype(np.float64)
        out[np.abs(t[nearest] - times) > max(hop, _step(t))] = 0.0
        return out


def _salience(first):
    """The melody's salience of each comb and frame (:data:`ENERGY_WEIGHT`)."""
    activation = first.H_F0[:-1].astype(np.float64)
    power = sf.comb_power(first).astype(np.float64)
    activation /= np.maximum(activation.sum(axis=0), 1e-300)
    power /= np.maximum(power.sum(axis=0), 1e-300)
    return activation ** (1.0 - ENERGY_WEIGHT) * power ** ENERGY_WEIGHT


def voicing(first, path, f0s):
    """Which frames of the first fit's melody ``path`` (Hz) are voiced: where the comb
    near it holds :data:`VOICED_SHARE` of the frame's model."""
    near = sf.near_melody(path, f0s, np.ones(path.size, dtype=bool), semitones=NEAR_SEMITONES)
    comb = (first.W_F0[:, :-1] @ (first.H_F0[:-1] * near)) * (first.W_filter @ first.H_filter)
    return comb.sum(axis=0) > VOICED_SHARE * sf.model(first).sum(axis=0)


@functools.lru_cache(maxsize=4)
def _combs(sr, n_fft):
    """The lead's harmonic templates at a rate (cached: a batch has one rate, mostly)."""
    combs = sf.harmonic_templates(sf.f0_grid(F0_MIN, F0_MAX, STEPS_PER_SEMITONE), sr=sr, n_fft=n_fft)
    combs.setflags(write=False)
    return combs


def _step(times):
    return float(np.median(np.diff(times))) if times.size > 1 else 0.0


def check_melody(melody, name="melody"):
    """A melody as an array (n, 2) of increasing times and F0s (0, or within the
    lead's range), finite; else ParameterError."""
    try:
        if np.iscomplexobj(melody):
            raise TypeError
        melody = np.asarray(melody, dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterError(f"{name}: expected rows of time (s) and F0 (Hz)") from None
    if melody.ndim != 2 or melody.shape[1] != 2 or melody.shape[0] < 1:
        raise ParameterError(f"{name}: expected rows of two numbers, time (s) and F0 (Hz), "
                             f"got shape {melody.shape}")
    if not np.all(np.isfinite(melody)):
        row = int(np.argmax(~np.all(np.isfinite(melody), axis=1)))
        raise ParameterError(f"{name}: row {row + 1} is not a finite number")
    if np.any(melody[:, 1] < 0):
        row = int(np.argmax(melody[:, 1] < 0))
        raise ParameterError(f"{name}: row {row + 1}: negative F0 {melody[row, 1]:g} Hz "
                             "(0 means unvoiced)")
    voiced = melody[:, 1] > 0
    outside = voiced & ((melody[:, 1] < F0_MIN * 2 ** (-1 / 24)) | (melody[:, 1] > F0_MAX * 2 ** (1 / 24)))
    if np.any(outside):
        row = int(np.argmax(outside))
        raise ParameterError(f"{name}: row {row + 1}: F0 {melody[row, 1]:g} Hz is outside the lead's "
                             f"range, {F0_MIN:g} to {F0_MAX:g} Hz (0 means unvoiced)")
    if np.any(melody[:, 0] < 0):
        row = int(np.argmax(melody[:, 0] < 0))
        raise ParameterError(f"{name}: row {row + 1}: negative time {melody[row, 0]:g} s")
    if np.any(np.diff(melody[:, 0]) <= 0):
        row = int(np.argmax(np.diff(melody[:, 0]) <= 0)) + 1
        raise ParameterError(f"{name}: row {row + 1}: times out of order "
                             f"({melody[row, 0]:g} s after {melody[row - 1, 0]:g} s)")
    return melody


def read_melody(path):
    """A melody CSV (``time_s,f0_hz`` rows, an optional header; UTF-8, with or without
    the byte-order mark spreadsheets write) as an array (n, 2); a missing, unreadable
    or malformed file raises ParameterError naming it."""
    path = os.fspath(path)
    rows = array.array("d")
    try:
        with open(path, "rb") as handle:
            if looks_like_audio(handle.read(4)):
                raise ParameterError(f"{path}: an audio file, not a melody: expected a CSV of "
                                     "time_s,f0_hz lines")
            handle.seek(0)
            text = io.TextIOWrapper(handle, encoding="utf-8-sig")
            number = 0
            while True:
                line = text.readline(MAX_LINE)
                if not line:
                    break
                number += 1
                if len(line) == MAX_LINE and not line.endswith("\n"):
                    raise ParameterError(f"{path}: line {number}: over {MAX_LINE} characters; "
                                         "expected time_s,f0_hz (two numbers)")
                rows.extend(_melody_row(line.strip(), number, path))
    except UnicodeDecodeError:
        raise ParameterError(f"{path}: not a text file: expected a CSV of time_s,f0_hz lines") from None
    except OSError as exc:
        raise ParameterError(f"{path}: cannot read the melody ({exc.strerror or exc})") from None
    if not rows:
        raise ParameterError(f"{path}: no melody in it (expected lines of time_s,f0_hz)")
    return check_melody(np.array(rows, dtype=np.float64).reshape(-1, 2), path)


def _melody_row(line, number, path):
    """The two numbers of a melody CSV's line, or none for a blank line, a comment or
    the header (the first line only)."""
    if not line or line.startswith("#") or (number == 1 and line.lower().replace(" ", "") == "time_s,f0_hz"):
        return ()
    fields = line.split(",")
    try:
        if len(fields) != 2:
            raise ValueError
        return float(fields[0]), float(fields[1])
    except ValueError:
        raise ParameterError(f"{path}: line {number}: expected time_s,f0_hz (two numbers), "
                             f"got {line[:40]!r}") from None


def melody_csv(melody):
    """The CSV text (bytes) of a melody array (n, 2): a header, then ``time_s,f0_hz`` rows."""
    out = io.StringIO()
    out.write("time_s,f0_hz\n")
    for t, f0 in np.asarray(melody, dtype=np.float64):
        out.write(f"{t:.6f},{f0:.3f}\n")
    return out.getvalue().encode()

"""Noise out of a recorded voice: ``separate(two_stems="noise")``, :func:`audionmf.denoise`.

Semi-supervised NMF (Smaragdis, Raj & Shashanka 2007; Mohammadiha, Smaragdis &
Leijon 2013): the magnitude spectrogram of the input (93 ms frames, bins above
1 kHz summed in 1/12-octave bands) is explained by

* **noise**: :data:`NOISE_COMPONENTS` templates learned from a noise profile and
  held fixed: a recording of the noise alone (``noise``), a noise-only stretch of
  the input (``noise_from``), or by default the input's quietest stretches
  (:func:`quiet_frames`);
* **speech**, in two fits whose soft masks are averaged: harmonic combs, one per
  semitone of pitch, cut into bands (:func:`harmonic_templates`), held fixed;
  and :data:`SPEECH_COMPONENTS` free templates learned on the input (what the
  noise templates cannot explain). With speech models (``speech_models``, from
  :meth:`audionmf.SourceModel.learn`) their templates replace both.

Unless ``stationary``, the noise model follows the noise of this input: the noise
templates are learned again from the profile and the frames a first fit finds
noise-dominated (where the speech model holds under :data:`ADAPT_SHARE` of the
frame). In the masks, each model's noise estimate is raised to a floor drawn from
its own quietest frames of the moment (:func:`noise_floor`). ``reduction`` (dB) leaves that
much of the noise in ``clean``, the rest in ``noise``, so the two always sum to the
input. How each default measures:
``docs/decisions.md``, "Denoise".

References
----------
P. Smaragdis, B. Raj and M. Shashanka, "Supervised and semi-supervised separation
of sounds from single-channel mixtures", ICA 2007. doi:10.1007/978-3-540-74494-8_52

N. Mohammadiha, P. Smaragdis and A. Leijon, "Supervised and unsupervised speech
enhancement using nonnegative matrix factorization", IEEE TASLP 21(10), 2013.
doi:10.1109/TASL.2013.2270369
"""
import numbers
import os

import numpy as np

from .. import _lazy
from .._threads import serial_blas
from .._validation import MAX_SAMPLE, AudioError, ParameterError, check_audio
from ..analysis import Analysis, band_pooling, templates_at_rate
from ..masks import wiener_masks
from ..models import check_models
from ..nmf import nmf
from .base import Fitted, Mode, Option, keyword
from .blind import MIXTURE_OVER_RELAXATION

__all__ = ["Denoise", "quiet_frames", "harmonic_templates", "noise_floor", "denoise_n_fft", "parse_span"]

#: STFT frame of about 93 ms (a power of two: 2048 samples at 22.05 kHz, 4096 at 44.1 kHz):
#: fine enough in frequency for the harmonic combs (docs/decisions.md, "Denoise").
FRAME_SECONDS = 0.093
#: Hop of n_fft / 2: half the frames of n_fft / 4, for about 0.2 dB less (docs/decisions.md).
HOP_SHARE = 2
#: The harmonic speech model: a comb per semitone of pitch from PITCH_MIN to PITCH_MAX Hz,
#: cut into the bands between COMB_BANDS_HZ, partials falling as n ** -COMB_SLOPE.
PITCH_MIN, PITCH_MAX = 70.0, 400.0
COMB_BANDS_HZ = (0.0, 1000.0, 2000.0, 4000.0)
COMB_SLOPE = 0.5
#: Bins above this frequency are summed in 1/12-octave bands for the fits (speed).
POOL_ABOVE_HZ = 1000.0
#: Templates of the noise, learned from the profile (docs/decisions.md, "Denoise").
NOISE_COMPONENTS = 16
#: Free templates of the speech, learned on the input.
SPEECH_COMPONENTS = 32
#: Iterations of the noise templates' fit on the profile.
NOISE_FIT_ITER = 200
#: Soft masks on magnitude models, exponent 1 (docs/decisions.md, "Denoise").
MASK_POWER = 1.0
#: Iterations of the fit on the input: fewer let the free templates take less noise;
#: 40 measured as 50 with the noise floor, in less time (docs/decisions.md).
DEFAULT_ITER = 40
#: The noise floor of the masks: in each row, NOISE_FLOOR_SCALE times the model's
#: NOISE_FLOOR_PERCENTILE-th percentile over the NOISE_FLOOR_SECONDS around each frame
#: (minimum statistics: speech leaves a row quiet often enough), taken every
#: NOISE_FLOOR_STEP frames (speed); the noise model's estimate is raised to it, so that a
#: bin counts as speech only where it stands that far above the noise of the moment
#: (docs/decisions.md, "Denoise: a noise floor"). 0 turns it off.
NOISE_FLOOR_PERCENTILE = 20.0
NOISE_FLOOR_SCALE = 3.0
NOISE_FLOOR_SECONDS = 1.5
NOISE_FLOOR_STEP = 4
#: Adaptive noise model: frames whose speech model holds under this share are noise.
ADAPT_SHARE = 0.1
#: ... in a first fit of this many iterations.
ADAPT_ITER = 15
#: The automatic profile: the quietest share of frames, in stretches of at least ...
QUIET_SHARE = 0.15
QUIET_SECONDS = 0.25
#: ... which must lie this many dB under the input's 75th-percentile frame (else: no noise-only stretch).
QUIET_CONTRAST_DB = 3.0


def harmonic_templates(sr, n_fft, fmin=PITCH_MIN, fmax=PITCH_MAX, bands=COMB_BANDS_HZ, slope=COMB_SLOPE):
    """Voiced speech: for each pitch, a semitone apart from ``fmin`` to ``fmax``, its
    harmonic comb (:func:`audionmf.modes.drums.comb_templates`) cut into the bands
    that start at ``bands`` (Hz; the last runs to the Nyquist frequency), so that
    the activations of one pitch's pieces draw its spectral envelope.

    Returns
    -------
    W : np.ndarray [shape=(n_fft // 2 + 1, n_templates), dtype=float32]
        Columns sum to 1.

    Examples
    --------
    >>> W = harmonic_templates(22050, 2048)
    >>> W.shape
    (1025, 128)
    """
    from .drums import comb_templates

    combs = comb_templates(sr=sr, n_fft=n_fft, fmin=fmin / 2 ** (1 / 12), fmax=fmax, slope=slope)
    freqs = np.arange(combs.shape[0]) * sr / n_fft
    edges = list(bands) + [np.inf]
    pieces = [combs * ((freqs >= lo) & (freqs < hi))[:, None] for lo, hi in zip(edges[:-1], edges[1:])]
    W = np.hstack(pieces)
    W = W[:, W.sum(axis=0) > 0]
    return (W / W.sum(axis=0)).astype(np.float32)


def noise_floor(V, width, percentile=NOISE_FLOOR_PERCENTILE, scale=NOISE_FLOOR_SCALE,
                step=NOISE_FLOOR_STEP):
    """``scale`` times each row's ``percentile`` over the ``width`` frames centred on
    each frame (edges repeated), computed every ``step`` frames and held between.

    Examples
    --------
    >>> V = np.ones((2, 10), np.float32); V[:, 4] = 100.0
    >>> noise_floor(V, 5, scale=2.0)[0].tolist()
    [2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    """
    from numpy.lib.stride_tricks import sliding_window_view

    half = width // 2
    padded = np.pad(V, ((0, 0), (half, width - half - 1)), mode="edge")
    windows = sliding_window_view(padded, width, axis=1)[:, ::step]
    rank = int(round(percentile / 100.0 * (width - 1)))
    floor = np.partition(windows, rank, axis=2)[..., rank]
    return (scale * np.repeat(floor, step, axis=1)[:, : V.shape[1]]).astype(V.dtype, copy=False)


def denoise_n_fft(sr):
    """The STFT frame at rate ``sr``: the power of two nearest :data:`FRAME_SECONDS`."""
    return int(2 ** max(4, round(np.log2(FRAME_SECONDS * sr))))


def parse_span(value, name="noise_from"):
    """``(start, end)`` in seconds from a pair of numbers or a ``"START:END"`` string."""
    if isinstance(value, str):
        start, colon, end = value.partition(":")
        try:
            value = (float(start), float(end)) if colon else None
        except ValueError:
            value = None
        if value is None:
            raise ParameterError(f"{name}: expected START:END in seconds, such as 0:1.5")
    try:
        start, end = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name}: expected (start, end) in seconds, got {value!r}") from None
    if not (np.isfinite(start) and np.isfinite(end)) or start < 0 or end <= start:
        raise ParameterError(f"{name}: {start:g}:{end:g} is not a stretch of the input "
                             "(need 0 <= START < END, in seconds)")
    return start, end


def quiet_frames(V, min_frames, share=QUIET_SHARE, contrast_db=QUIET_CONTRAST_DB, power=1.0):
    """Frames of ``V`` that hold noise only: its quietest stretches.

    Each frame is scored by how far it lies above each row's 10th percentile over
    time, once ``log V`` is averaged over ``min_frames`` frames: the mean of
    ``log V - log P10`` over the quarter of rows where it is largest (a band
    counts as much as any other however loud the noise is there, and speech
    raises only some of them);
    the ``share`` of frames with the lowest score are returned. Frames of digital
    silence are left out.

    It fails (returns None) where those frames are not at least ``contrast_db``
    under the frame at the 75th percentile of the score: no stretch is clearly quieter than the rest (speech
    with no pause, or noise alone); and where digital silence would make up half
    of the ``share`` of quietest frames: the pauses hold no noise to learn (a clean
    recording), and the quietest frames left would be the voice's own. It is wrong
    where the quietest stretches are not noise (a quiet voice in a pause of louder
    noise).

    Parameters
    ----------
    V : np.ndarray [shape=(n_rows, n_frames)]
    min_frames : int
    power : float
        The spectrogram's exponent (1: magnitude), for the contrast in dB.

    Returns
    -------
    np.ndarray of int or None
    """
    V = np.asarray(V, dtype=np.float64)
    heard = np.flatnonzero(V.max(axis=0) > 0)
    if len(heard) < 2 * min_frames or V.shape[1] - len(heard) >= share * V.shape[1] / 2:
        return None
    uniform_filter1d = _lazy.module("scipy.ndimage").uniform_filter1d

    L = uniform_filter1d(np.log(V[:, heard] + 1e-6 * V.max()), max(1, int(min_frames)), axis=1,
                         mode="nearest")
    rise = np.sort(L - np.percentile(L, 10, axis=1, keepdims=True), axis=0)
    smooth = rise[-max(1, len(rise) // 4):].mean(axis=0)
    quiet = smooth <= np.quantile(smooth, share)
    contrast = 20.0 / power * (np.percentile(smooth, 75) - smooth[quiet].mean()) / np.log(10)
    if contrast < contrast_db:
        return None
    return heard[quiet]


class Denoise(Mode):
    """``separate(y, sr, two_stems="noise")``: ``clean`` and ``noise``."""

    key = "denoise"
    selected_by = "two_stems"
    two_stems = "noise"
    default_mask_power = MASK_POWER
    default_max_iter = DEFAULT_ITER
    #: The noise floor's scale (:data:`NOISE_FLOOR_SCALE`; 0: no floor).
    floor_scale = NOISE_FLOOR_SCALE
    options = (
        Option("noise", "--noise-sample", "audio", "with --two-stems noise: a recording of the "
               "noise alone, its noise profile (default: found in the input)", metavar="NOISE.wav"),
        Option("noise_from", "--noise-from", "span", "with --two-stems noise: the noise profile is "
               "this noise-only stretch of the input, in seconds", metavar="START:END"),
        Option("reduction", "--reduction", "decibels", "with --two-stems noise: lower the noise by "
               "this many dB only (12 keeps some, as Audacity does; default: all of it); what is "
               "removed goes to noise.wav", metavar="DB"),
        Option("stationary", "--stationary", "flag", "with --two-stems noise: keep the noise model "
               "of the profile (default: it adapts to the input's noise-dominated frames)",
               default=False),
        Option("speech_models", "--speech-model", "model", "with --two-stems noise: speech "
               "templates from 'audionmf learn' instead of free ones (repeat for several)",
               metavar="SPEECH.npz", repeat=True),
    )

    @classmethod
    def source_names(cls, options):
        return ["clean", "noise"]

    @classmethod
    def check_options(cls, options, spell=keyword):
        noise, span = options.get("noise"), options.get("noise_from")
        if noise is not None and span is not None:
            raise ParameterError(f"{spell('noise')} and {spell('noise_from')} cannot be used "
                                 "together: give one noise profile")
        if span is not None:
            span = parse_span(span, spell("noise_from"))
        reduction = options.get("reduction")
        if reduction is not None:
            if isinstance(reduction, bool) or not isinstance(reduction, numbers.Real) \
                    or not 0 < reduction < float("inf"):
                raise ParameterError(f"{spell('reduction', reduction)}: expected a positive number of dB")
            reduction = float(reduction)
        stationary = options.get("stationary")
        if stationary is None:
            stationary = False
        if not isinstance(stationary, (bool, np.bool_)):
            raise ParameterError(f"{spell('stationary', stationary)}: expected True or False")
        return dict(options, noise_from=span, reduction=reduction, stationary=bool(stationary))

    def configure(self, analysis_options, spell=keyword, noise=None, noise_from=None, reduction=None,
                  stationary=False, speech_models=None):
        checked = self.check_options(dict(noise=noise, noise_from=noise_from, reduction=reduction,
                                          stationary=stationary), spell)
        self.spell = spell
        self.noise_from, self.stationary = checked["noise_from"], checked["stationary"]
        reduction = checked["reduction"]
        self.keep = 0.0 if reduction is None else 10.0 ** (-reduction / 20.0)
        models = list(speech_models or ())
        if models:
            check_models(models, "speech_models")
            own = Analysis.from_models(models, **analysis_options)
            self.analysis = own.at_rate(self.sr)
            self.speech = templates_at_rate(np.hstack([m.templates for m in models]), own, self.sr)
            self.rows = self.speech.shape[0] // (2 * own.context + 1)
        else:
            if analysis_options.get("n_fft") is None:
                analysis_options = dict(analysis_options, n_fft=denoise_n_fft(self.sr))
            if analysis_options.get("hop_length") is None:
                analysis_options = dict(analysis_options, hop_length=analysis_options["n_fft"] // HOP_SHARE)
            self.analysis = Analysis.from_arguments(self.sr, **analysis_options)
            self.speech = None
            # The fits see bins above POOL_ABOVE_HZ summed in 1/12-octave bands; masks are
            # made at full resolution (each bin its band's).
            self.pool = band_pooling(self.analysis.n_freq, sr=self.sr, n_fft=self.analysis.stft.n_fft,
                                     above_hz=POOL_ABOVE_HZ)
            self.band_of_bin = self.pool.argmax(axis=0)
            combs = self.pool @ harmonic_templates(self.sr, self.analysis.stft.n_fft)
            self.combs = combs / combs.sum(axis=0)
        self.names = self.source_names({})
        self.profile = None if noise is None else self._sample_profile(noise)

    def prepare(self, signal):
        """The noise profile of ``noise_from``: that stretch of the signal."""
        if self.noise_from is None:
            return
        start, end = (int(round(s * signal.sr)) for s in self.noise_from)
        if end > signal.n_samples:
            raise ParameterError(
                f"{signal.name}: {self.spell('noise_from')} {self.noise_from[0]:g}:{self.noise_from[1]:g} "
                f"reaches past the end of the input ({signal.n_samples / signal.sr:.6g} s)")
        if end - start < self.analysis.stft.n_fft:
            raise ParameterError(f"{signal.name}: {self.spell('noise_from')} is shorter than one STFT "
                                 f"frame ({self.analysis.stft.n_fft / signal.sr:.3f} s)")
        self.profile = self._profile(signal.read(start, end))
        if not np.any(self.profile):  # (digital silence, or a click the frames' windows miss)
            raise ParameterError(f"{signal.name}: {self.spell('noise_from')} "
                                 f"{self.noise_from[0]:g}:{self.noise_from[1]:g} is silent: "
                                 "it holds no noise to learn from")

    def _sample_profile(self, noise):
        """The profile (:meth:`_profile`) of a noise recording, taken at the signal's rate."""
        if isinstance(noise, (str, os.PathLike)):
            from ..io import load  # (layer 1: imported where a file is given)

            name = os.fspath(noise)
            y, _ = load(name, sr=self.sr, dtype=np.float64)
        else:
            name = "the noise sample"
            y = np.asarray(noise)
        y = check_audio(y, name, loudest=MAX_SAMPLE)
        if y.shape[-1] < self.analysis.stft.n_fft:
            # (in seconds: the command line checks a sample once, at a rate of its own)
            raise AudioError(f"{name}: too short for a noise profile: {y.shape[-1] / self.sr:.3g} s, "
                             f"need at least {self.analysis.stft.n_fft / self.sr:.3g} s")
        profile = self._profile(y)
        if not np.any(profile):  # (digital silence, or a click the frames' windows miss)
            raise AudioError(f"{name}: silent: it holds no noise to learn from")
        return profile

    def _profile(self, samples):
        """The spectrogram of noise samples, as the fit sees the input's."""
        from ..spectrogram import stft_frames

        X = stft_frames(np.atleast_2d(samples).astype(np.float32), self.analysis.stft)
        return self.analysis.spectrogram(X, self.rows, self.pool)

    def _noise_templates(self, Vn):
        fit = nmf(Vn / max(float(Vn.max()), 1e-30), NOISE_COMPONENTS,
                  **dict(self.fit_options(random_state=self.rng), max_iter=NOISE_FIT_ITER))
        return fit.W / np.maximum(fit.W.sum(axis=0), 1e-30)

    def _fit(self, V, Wn, Ws, free, max_iter=None):
        """V ~= [Wn Ws] H, the noise templates fixed; the speech's too unless ``free``."""
        W = np.hstack([Wn, Ws]).astype(np.float32)
        update = np.r_[np.zeros(Wn.shape[1], bool), np.full(Ws.shape[1], free)]
        options = self.fit_options(random_state=self.rng, callback=self.callback)
        if max_iter is not None:
            options["max_iter"] = min(max_iter, options["max_iter"])
        return nmf(V, W.shape[1], W=W, update_W=update if free else False,
                   over_relaxation=MIXTURE_OVER_RELAXATION, **options)

    def _find_profile(self, V):
        frames = quiet_frames(V[: self.fit_rows], max(1, int(QUIET_SECONDS * self.sr / self.analysis.stft.hop_length)),
                              power=self.analysis.power)
        if frames is None:
            raise ParameterError(
                "no noise-only stretch found: no part of the input is clearly quieter than the "
                f"rest, or its pauses are digital silence; give the noise profile with {self.spell('noise')} (a recording of the "
                f"noise alone) or {self.spell('noise_from')} (START:END, a noise-only stretch "
                "of the input in seconds)")
        return V[:, frames]

    def fit(self, V, whole):
        """The speech models, each beside the noise templates: the harmonic combs (or
        the speech models given), the noise adapted to the frames they leave to it,
        then the free templates (none with speech models)."""
        profile = self._find_profile(V) if self.profile is None else self.profile
        Wn = self._noise_templates(profile)
        fixed = self.speech if self.speech is not None else self.combs
        first = self._fit(V, Wn, fixed, free=False, max_iter=None if self.stationary else ADAPT_ITER)
        k = Wn.shape[1]
        if not self.stationary:
            speech = fixed @ first.H[k:]
            share = speech.sum(axis=0) / np.maximum((first.W @ first.H).sum(axis=0), 1e-30)
            noisy = np.flatnonzero(share < ADAPT_SHARE)
            if len(noisy):
                Wn = self._noise_templates(np.hstack([profile / max(float(profile.max()), 1e-30),
                                                      V[:, noisy] / max(float(V[:, noisy].max()), 1e-30)]))
                first = self._fit(V, Wn, fixed, free=False)
        fits = [first]
        if self.speech is None and SPEECH_COMPONENTS:
            Ws = self.rng.random((V.shape[0], SPEECH_COMPONENTS)).astype(np.float32)
            fits.append(self._fit(V, Wn, Ws / Ws.sum(axis=0), free=True))
        W = np.hstack([f.W for f in fits])
        labels = np.concatenate([np.repeat([1, 0], [k, f.W.shape[1] - k]) for f in fits])
        split = np.cumsum([f.W.shape[1] for f in fits])[:-1]
        return Fitted(W=W, labels=labels, H=np.vstack([f.H for f in fits]) if whole else None,
                      state=split)

    def activations(self, fitted, V):
        """Each model's activations on its own (they are averaged, not competing)."""
        if not np.any(V):
            return np.zeros((fitted.W.shape[1], V.shape[1]), dtype=np.float32)
        return np.vstack([self.fixed_activations(V / V.max(), W)
                          for W in np.split(fitted.W, fitted.state, axis=1)])

    def _floor_frames(self):
        """The noise floor's window, in frames (0: no floor)."""
        if not self.floor_scale or self.analysis.context:
            return 0
        return max(1, int(round(NOISE_FLOOR_SECONDS * self.sr / self.analysis.stft.hop_length)))

    def spread(self, fitted):
        """The masks of a block read the model half a noise-floor window beyond it."""
        return self.analysis.context + self._floor_frames() // 2

    def masks(self, fitted, H, X, h_span, x_span):
        """The mean of each model's soft masks, ``S**p / (S**p + N**p)`` (S, N: its
        speech and noise spectrograms, N raised to the noise floor of
        :func:`noise_floor` on S + N), made on the fit's rows and then given to every bin of
        each row's band."""
        if self.analysis.context:  # (speech models with context: the general masks)
            parts = [wiener_masks(W, h, labels, mask_power=self.mask_power, context=self.analysis.context)[0]
                     for W, h, labels in self._models(fitted, H)]
        else:
            parts = []
            width = self._floor_frames()
            for W, h, labels in self._models(fitted, H):
                k = np.count_nonzero(labels == 1)  # (the noise templates come first)
                h = np.asarray(h if width else h[:, h_span], dtype=np.float32)
                with serial_blas():  # (small products: threads would only wait on each other)
                    speech, noise = W[:, k:] @ h[k:], W[:, :k] @ h[:k]
                np.maximum(speech, np.float32(1e-30), out=speech)
                if width:
                    floor = noise_floor(speech + noise, width, scale=self.floor_scale)
                    speech, noise = speech[:, h_span], np.maximum(noise[:, h_span], floor[:, h_span])
                if self.mask_power != 1.0:
                    speech **= self.mask_power
                    noise **= self.mask_power
                parts.append(speech / (speech + noise))
        clean = parts[0] if len(parts) == 1 else sum(parts[1:], parts[0]) / len(parts)
        if self.analysis.context:
            clean = clean[:, h_span]
        np.clip(clean, 0.0, 1.0, out=clean)
        if self.keep:
            clean = clean + self.keep * (1.0 - clean)
        masks = np.stack([clean, 1.0 - clean])
        # (on the fit's rows until here: each bin then takes its band's)
        return masks if self.pool is None else np.take(masks, self.band_of_bin, axis=1)

    def _models(self, fitted, H):
        """(templates, activations, labels) of each model of the fit."""
        return zip(np.split(fitted.W, fitted.state, axis=1), np.split(H, fitted.state),
                   np.split(fitted.labels, fitted.state))

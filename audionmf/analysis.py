"""The analysis: how a signal becomes the spectrogram that is factorized.

One small description, :class:`Analysis` (sampling rate, STFT, divergence,
spectrogram power, frames of context), made from arguments or from source
models, serves :func:`audionmf.separate`, :func:`audionmf.decompose` and
:meth:`audionmf.SourceModel.learn` alike, with one function that turns STFT
frames into that spectrogram (:meth:`Analysis.spectrogram`): what one of them
fits, the others fit too.
"""
from dataclasses import dataclass, replace

import numpy as np

from ._threads import serial_blas
from ._validation import ParameterError, beta_to_float, check_sample_rate, check_spectrogram_power
from .spectrogram import STFTParams, check_window_name, stack_frames

__all__ = ["Analysis", "default_power", "templates_at_rate", "band_pooling", "band_centres"]


def default_power(beta):
    """Spectrogram exponent that suits a divergence.

    Magnitude (1) for beta > 0, which includes Kullback-Leibler and Euclidean;
    power (2) for beta <= 0, which includes Itakura-Saito, whose scale
    invariance matches the statistics of a power spectrogram
    (Févotte, Bertin & Durrieu 2009, doi:10.1162/neco.2008.04-08-771).
    """
    return 2.0 if beta_to_float(beta) <= 0 else 1.0


@dataclass(frozen=True)
class Analysis:
    """Sampling rate, STFT, divergence, spectrogram power and context of a factorization.

    Attributes
    ----------
    sr : int
        Sampling rate in Hz.
    stft : STFTParams
    beta : float
        The beta-divergence minimized.
    power : float
        Spectrogram exponent, in (0, 2]: ``V = sum over channels of |X| ** power``.
    context : int
        Frames of context on each side of a template (:func:`audionmf.stack_frames`).
    """

    sr: int
    stft: STFTParams
    beta: float
    power: float
    context: int = 0

    @classmethod
    def from_arguments(cls, sr, *, beta=None, power=None, n_fft=None, hop_length=None, window=None):
        """The analysis without models: the arguments, or the defaults (KL, 2048, n_fft // 4,
        "hann", :func:`default_power`). ``sr`` may be None where the rate is not known
        yet (:meth:`audionmf.SourceModel.learn` takes its first file's)."""
        beta = beta_to_float("kl" if beta is None else beta)
        return cls(
            sr=None if sr is None else check_sample_rate(sr),
            stft=STFTParams(2048 if n_fft is None else n_fft, hop_length,
                            "hann" if window is None else window),
            beta=beta,
            power=default_power(beta) if power is None else check_spectrogram_power(power),
        )

    @classmethod
    def from_models(cls, models, *, beta=None, power=None, n_fft=None, hop_length=None, window=None):
        """The analysis the models were learned with (at their rate); explicit arguments
        must agree with it."""
        models = list(models)
        if not models:
            raise ParameterError("models is empty")
        ref = models[0]
        if window is not None:  # (an array is not compared to a name)
            check_window_name(window)
        given = {"beta": None if beta is None else beta_to_float(beta), "power": power,
                 "n_fft": n_fft, "hop_length": hop_length, "window": window}
        for field, value in given.items():
            if value is not None and value != getattr(ref, field):
                raise ParameterError(
                    f"{field}={value!r} differs from the models' {getattr(ref, field)!r}; "
                    "the analysis must be the one the models were learned with"
                )
        return ref.analysis

    @property
    def n_freq(self):
        """Bins of a spectrum: ``n_fft // 2 + 1``."""
        return self.stft.n_fft // 2 + 1

    def at_rate(self, sr):
        """The same analysis at another sampling rate: frame and hop keep their
        durations (so the bins keep, nearly, their frequencies)."""
        if sr == self.sr:
            return self
        ratio = sr / self.sr
        n_fft = max(2, int(round(self.stft.n_fft * ratio)))
        hop = max(1, min(n_fft, int(round(self.stft.hop_length * ratio))))
        return replace(self, sr=sr, stft=STFTParams(n_fft, hop, self.stft.window))

    def spectrogram(self, X, rows=None, pool=None, context=None):
        """The spectrogram a factorization of this analysis sees, from STFT frames.

        ``V = sum over channels of |X[:rows]| ** power`` in single precision,
        bins pooled by the matrix ``pool`` (if given), then ``context`` frames
        (default: the analysis's) stacked on each side.

        Parameters
        ----------
        X : np.ndarray [shape=(..., n_freq, n_frames), dtype=complex]
        rows : int or None
            Keep the first ``rows`` bins (all by default).
        pool : np.ndarray [shape=(n_bands, rows)] or None
        context : int or None

        Returns
        -------
        V : np.ndarray [shape=(n_rows * (2 * context + 1), n_frames), dtype=float32]
        """
        V = np.abs(X[..., :rows, :]) ** self.power
        if V.ndim == 3:
            V = V.sum(axis=0)
        if pool is not None:
            with serial_blas():  # a fit follows
                V = pool @ V
        return stack_frames(V.astype(np.float32, copy=False), self.context if context is None else context)


def templates_at_rate(W, analysis, sr):
    """Templates of an analysis on the STFT grid of a signal at rate ``sr``.

    At the analysis's own rate they are returned as they are. At another rate
    the STFT keeps the frame and hop durations (:meth:`Analysis.at_rate`), so its
    bins are (nearly) the templates' frequencies; each template is interpolated
    onto the bins up to the lower of the two Nyquist frequencies, which are the
    rows the separation uses. No resampling: the signal is analysed and
    resynthesized at its own rate.

    Parameters
    ----------
    W : np.ndarray [shape=(n_freq * (2 * context + 1), K)]
    analysis : Analysis
        The templates' analysis.
    sr : int

    Returns
    -------
    W : np.ndarray [shape=(n_rows * (2 * context + 1), K), dtype=float32]
    """
    W = np.asarray(W, dtype=np.float32)
    if analysis.sr == sr:
        return W
    out = analysis.at_rate(sr)
    model_freqs = np.arange(analysis.n_freq) * analysis.sr / analysis.stft.n_fft
    freqs = np.arange(out.n_freq) * sr / out.stft.n_fft
    freqs = freqs[freqs <= model_freqs[-1]]
    n_model = len(model_freqs)
    blocks = [
        np.stack([np.interp(freqs, model_freqs, column) for column in W[i * n_model : (i + 1) * n_model].T],
                 axis=1)
        for i in range(2 * analysis.context + 1)
    ]
    return np.ascontiguousarray(np.vstack(blocks), dtype=np.float32)


def band_pooling(n_bins, *, sr, n_fft, above_hz=2000.0, bands_per_octave=12):
    """Matrix that keeps the bins below ``above_hz`` and sums the others in bands.

    Returns
    -------
    P : np.ndarray [shape=(n_rows, n_bins), dtype=float32]
        0/1; each bin in exactly one row. ``P @ S`` pools a spectrogram,
        ``P.T @ M`` gives each bin its band's value of a pooled mask.
    """
    freqs = np.arange(n_bins) * sr / n_fft
    band = np.arange(n_bins, dtype=float)
    high = freqs >= above_hz
    if high.any():
        first = int(np.argmax(high))
        band[high] = first + np.floor(bands_per_octave * np.log2(freqs[high] / above_hz))
    _, rows = np.unique(band, return_inverse=True)
    P = np.zeros((rows.max() + 1, n_bins), dtype=np.float32)
    P[rows, np.arange(n_bins)] = 1.0
    return P


def band_centres(P, *, sr, n_fft):
    """The centre frequency (Hz) of each row of a pooling matrix ``P``
    (:func:`band_pooling`): the mean frequency of its bins."""
    return (P @ np.arange(P.shape[1])) / P.sum(axis=1) * sr / n_fft

"""Short-time Fourier transform with one set of parameters both ways.

Thin, validated wrappers around :func:`librosa.stft` / :func:`librosa.istft`
(centred frames, zero padding) plus the axes that go with a spectrogram.
A spectrogram has shape ``(n_freq, n_frames)`` with ``n_freq = n_fft // 2 + 1``;
multichannel signals give ``(n_channels, n_freq, n_frames)``.
"""
from dataclasses import dataclass

import librosa
import numpy as np

from ._validation import ParameterError, check_audio, check_positive_int

__all__ = ["STFTParams", "stft", "istft", "frame_times", "bin_frequencies", "stack_frames",
           "unstack_frames"]


@dataclass(frozen=True)
class STFTParams:
    """The analysis parameters, shared by the forward and inverse transform.

    Attributes
    ----------
    n_fft : int
        Frame length in samples (and FFT size).
    hop_length : int or None
        Samples between frames; ``None`` means ``n_fft // 4``.
    window : str
        Window name understood by :func:`scipy.signal.get_window`.
    """

    n_fft: int = 2048
    hop_length: int = None
    window: str = "hann"

    def __post_init__(self):
        check_positive_int(self.n_fft, "n_fft", minimum=2)
        hop = self.n_fft // 4 if self.hop_length is None else self.hop_length
        check_positive_int(hop, "hop_length")
        if hop > self.n_fft:
            raise ParameterError(
                f"hop_length={hop} is larger than n_fft={self.n_fft}: frames would leave gaps"
            )
        if not isinstance(self.window, str):
            raise ParameterError(f"window={self.window!r}: expected a window name")
        object.__setattr__(self, "hop_length", int(hop))


def stft(y, *, n_fft=2048, hop_length=None, window="hann"):
    """Complex STFT of a signal.

    Parameters
    ----------
    y : np.ndarray [shape=(n_samples,) or (n_channels, n_samples)]
    n_fft, hop_length, window
        See :class:`STFTParams`.

    Returns
    -------
    S : np.ndarray [shape=(..., n_freq, n_frames), dtype=complex]
        ``n_frames = 1 + n_samples // hop_length`` (centred frames).
    """
    params = STFTParams(n_fft, hop_length, window)
    y = check_audio(y, "y")
    return librosa.stft(
        y, n_fft=params.n_fft, hop_length=params.hop_length, window=params.window
    )


def istft(S, *, length, n_fft=2048, hop_length=None, window="hann"):
    """Inverse of :func:`stft`, returning exactly ``length`` samples.

    Parameters
    ----------
    S : np.ndarray [shape=(..., n_freq, n_frames), dtype=complex]
    length : int
        Number of samples of the signal that was analysed.
    n_fft, hop_length, window
        The values given to :func:`stft`.
    """
    params = STFTParams(n_fft, hop_length, window)
    length = check_positive_int(length, "length")
    S = np.asarray(S)
    if S.ndim < 2 or S.shape[-2] != params.n_fft // 2 + 1:
        raise ParameterError(
            f"S has shape {S.shape}; expected (..., {params.n_fft // 2 + 1}, n_frames) "
            f"for n_fft={params.n_fft}"
        )
    return librosa.istft(
        S,
        n_fft=params.n_fft,
        hop_length=params.hop_length,
        window=params.window,
        length=length,
    )


def stack_frames(V, context):
    """Give every frame its neighbours: column t holds frames t-c .. t+c stacked.

    Templates learned on stacked frames describe how a sound evolves over
    ``2 * context + 1`` frames, not just one spectrum. Frames beyond the edges
    repeat the first or last frame.

    Parameters
    ----------
    V : np.ndarray [shape=(n_freq, n_frames)]
    context : int
        c, frames on each side; 0 returns V itself.

    Returns
    -------
    np.ndarray [shape=(n_freq * (2 * context + 1), n_frames)]
        Block i (rows ``i * n_freq`` to ``(i + 1) * n_freq``) holds frame ``t + i - c``.
    """
    if context == 0:
        return V
    n_frames = V.shape[1]
    padded = np.pad(V, ((0, 0), (context, context)), mode="edge")
    return np.vstack([padded[:, i : i + n_frames] for i in range(2 * context + 1)])


def unstack_frames(M, n_freq, context):
    """Inverse of :func:`stack_frames` for a model: average the 2c+1 guesses of each frame.

    Parameters
    ----------
    M : np.ndarray [shape=(n_freq * (2 * context + 1), n_frames)]
    n_freq : int
    context : int

    Returns
    -------
    np.ndarray [shape=(n_freq, n_frames)]
    """
    if context == 0:
        return M
    n_frames = M.shape[1]
    total = np.zeros((n_freq, n_frames), dtype=M.dtype)
    count = np.zeros(n_frames)
    for i in range(2 * context + 1):
        shift = i - context  # block i of column t describes frame t + shift
        lo, hi = max(0, -shift), min(n_frames, n_frames - shift)
        total[:, lo + shift : hi + shift] += M[i * n_freq : (i + 1) * n_freq, lo:hi]
        count[lo + shift : hi + shift] += 1
    return total / count


def frame_times(n_frames, *, sr, hop_length):
    """Time in seconds of the centre of each STFT frame.

    Returns
    -------
    times : np.ndarray [shape=(n_frames,)]
    """
    n_frames = check_positive_int(n_frames, "n_frames", minimum=0)
    sr = check_positive_int(sr, "sr")
    hop_length = check_positive_int(hop_length, "hop_length")
    return np.arange(n_frames) * (hop_length / sr)


def bin_frequencies(*, sr, n_fft):
    """Centre frequency in Hz of each STFT bin.

    Returns
    -------
    freqs : np.ndarray [shape=(n_fft // 2 + 1,)]
    """
    sr = check_positive_int(sr, "sr")
    n_fft = check_positive_int(n_fft, "n_fft", minimum=2)
    return np.arange(n_fft // 2 + 1) * (sr / n_fft)

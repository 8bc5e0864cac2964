"""Short-time Fourier transform with one set of parameters both ways.

The transforms compute exactly what :func:`librosa.stft` and
:func:`librosa.istft` compute with their defaults (centred frames, zero
padding, periodic window, window-sum-square normalization), which the tests
check, with numpy's transforms for a short signal's frames and scipy.fft's
(imported on first use) for longer ones: calling librosa's would import
scipy.signal and more, over a second of start-up for every command. Also here:
the axes that go with a spectrogram, stacked frames, and a mel filter bank.

A spectrogram has shape ``(n_freq, n_frames)`` with ``n_freq = n_fft // 2 + 1``;
multichannel signals give ``(n_channels, n_freq, n_frames)``.
"""
import functools
from dataclasses import dataclass

import numpy as np

from . import _lazy
from ._threads import available_cores
from ._validation import ParameterError, check_audio, check_positive_int

__all__ = ["STFTParams", "MAX_N_FFT", "MAX_CONTEXT", "stft", "istft", "stft_frames", "frame_span", "OverlapAdd", "frame_times", "bin_frequencies", "stack_frames", "hann_lobe",
           "unstack_frames", "frame_means", "mel_filters"]


#: A signal whose frames hold at most this many samples per channel (frames times n_fft)
#: is transformed with numpy.fft, a longer one with scipy.fft (see :func:`_transform`):
#: 2**20, about 12 s of a 22.05 kHz channel at a quarter frame's hop.
SMALL_FFT_FRAMES = 2**20

#: Largest frame length taken: 2**20 samples (24 s at 44.1 kHz). A window is computed
#: for every set of parameters, so an absurd n_fft (2**70) is refused before it.
MAX_N_FFT = 2**20

#: Least value, relative to its peak, that the overlap-add of the squared windows may
#: fall to anywhere between frames (NOLA with a margin). The inverse STFT divides by it:
#: where it is near zero, any change to the frames (a mask) is amplified without bound
#: (a hann window with hop = n_fft gives sources tens of dB louder than the mixture, and
#: zeros where it is 0). At 0.1 a change is amplified 3.2 times at most (10 dB); a hann
#: window passes up to a hop of about 0.7 n_fft, any usual window at n_fft / 2.
MIN_OVERLAP = 0.1


def check_window_name(window):
    """Refuse a window that is not a name (an array of samples, say): ParameterError."""
    if not isinstance(window, str):
        raise ParameterError(f"window={window!r:.60}: expected a window name")


@dataclass(frozen=True)
class STFTParams:
    """The analysis parameters, shared by the forward and inverse transform.

    Attributes
    ----------
    n_fft : int
        Frame length in samples (and FFT size), 2 to :data:`MAX_N_FFT`.
    hop_length : int or None
        Samples between frames; ``None`` means ``n_fft // 4``. The frames must
        overlap enough for the inverse to rebuild every sample: the squared
        windows' overlap-add must stay above :data:`MIN_OVERLAP` of its peak
        (for the hann window, a hop of at most ``n_fft // 2`` always does).
    window : str
        Window name understood by :func:`scipy.signal.get_window`.
    """

    n_fft: int = 2048
    hop_length: int = None
    window: str = "hann"

    def __post_init__(self):
        n_fft = check_positive_int(self.n_fft, "n_fft", minimum=2)
        if n_fft > MAX_N_FFT:
            raise ParameterError(f"n_fft={n_fft}: must be at most {MAX_N_FFT} (2**20 samples, "
                                 "24 s at 44.1 kHz)")
        if self.hop_length is None:
            if n_fft < 4:
                raise ParameterError(f"n_fft={n_fft}: too small for the default hop (n_fft // 4 "
                                     "would be 0): use n_fft of at least 4, or give the hop")
            hop = n_fft // 4
        else:
            hop = check_positive_int(self.hop_length, "hop_length")
        if hop > n_fft:
            raise ParameterError(
                f"hop_length={hop} is larger than n_fft={n_fft}: frames would leave gaps"
            )
        check_window_name(self.window)
        floor = _overlap_floor(self.window, n_fft, hop)  # ParameterError for an unknown window
        if floor < MIN_OVERLAP:
            ok = next((h for h in (n_fft // 2, n_fft // 4, n_fft // 8, 1)
                       if h >= 1 and _overlap_floor(self.window, n_fft, h) >= MIN_OVERLAP), None)
            advice = (f"use a smaller hop, such as hop_length={ok}" if ok else
                      f"the {self.window} window cannot be inverted at any hop")
            raise ParameterError(
                f"hop_length={hop} with n_fft={n_fft} and the {self.window} window: the frames "
                f"overlap too little to rebuild the signal (the windows' overlap-add falls to "
                f"{floor:.2g} of its peak, at least {MIN_OVERLAP:g} is needed); {advice}"
            )
        object.__setattr__(self, "n_fft", n_fft)
        object.__setattr__(self, "hop_length", hop)


@functools.lru_cache(maxsize=64)
def _overlap_floor(window, n_fft, hop):
    """Least value of the squared windows' overlap-add, one every ``hop``, relative
    to its peak (scipy.signal.check_NOLA's sums, without importing scipy.signal for
    the hann window)."""
    squared = np.zeros(-(-n_fft // hop) * hop)
    squared[:n_fft] = _window(window, n_fft) ** 2
    sums = squared.reshape(-1, hop).sum(axis=0)  # sample k of a hop gets w[k + j hop]**2
    peak = sums.max()
    return float(sums.min() / peak) if peak > 0 else 0.0


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
    pad = [(0, 0)] * (y.ndim - 1) + [(params.n_fft // 2, params.n_fft // 2)]
    return np.ascontiguousarray(stft_frames(np.pad(y, pad), params, length=y.shape[-1]))


def frame_span(start, stop, params):
    """The samples that frames ``start .. stop - 1`` of :func:`stft` cover.

    Returns ``(first, end)``: sample indices of the signal, which may reach
    before 0 or past its end, where :func:`stft` pads with zeros.
    """
    first = start * params.hop_length - params.n_fft // 2
    return first, first + (stop - start - 1) * params.hop_length + params.n_fft


def stft_frames(segment, params, *, length=None):
    """STFT frames of a segment: the frames that fit in it, one every hop.

    With ``segment`` the samples :func:`frame_span` (t0, t1) names (zeros
    outside the signal), this gives frames t0 .. t1 - 1 of :func:`stft`, equal
    to them to the last bit: a long signal is transformed block by block.

    Parameters
    ----------
    segment : np.ndarray [shape=(..., n_samples)]
    params : STFTParams
    length : int or None
        Samples of the signal the segment is taken from (default: the
        segment's own): the transforms are chosen by the signal's length
        (:func:`_transform`), so every block of it gets the same bits.

    Returns
    -------
    S : np.ndarray [shape=(..., n_freq, n_frames), dtype=complex]
        A view of frame-major memory, ``swapaxes`` of an array of shape
        (..., n_frames, n_freq): :class:`OverlapAdd` inverts such frames
        without copying them.
    """
    n_fft, hop = params.n_fft, params.hop_length
    if segment.dtype != np.float32:  # float16 too: scipy would transform it in float32
        segment = segment.astype(np.float64, copy=False)
    frames = np.lib.stride_tricks.sliding_window_view(segment, n_fft, axis=-1)[..., ::hop, :]
    window = _window(params.window, n_fft).astype(segment.dtype, copy=False)
    samples = segment.shape[-1] if length is None else length
    S = _transform("rfft", frames * window, n_fft, _frame_samples(samples, params))  # complex64 or complex128
    return np.swapaxes(S, -1, -2)  # a view: the frames stay contiguous in memory


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
    if S.dtype.kind not in "fc":
        raise ParameterError(f"S must be complex (or real) numbers, got dtype {S.dtype}")
    if S.ndim < 2 or S.shape[-2] != params.n_fft // 2 + 1 or S.shape[-1] == 0:
        raise ParameterError(
            f"S has shape {S.shape}; expected (..., {params.n_fft // 2 + 1}, n_frames) "
            f"for n_fft={params.n_fft}"
        )
    if not np.all(np.isfinite(S)):
        raise ParameterError("S contains NaN or Inf")
    reach = S.shape[-1] * params.hop_length + params.n_fft
    if length > reach:  # stft of a signal this long gives more frames
        raise ParameterError(f"length={length}: {S.shape[-1]} frames of hop_length={params.hop_length} "
                             f"cover at most {reach} samples")
    inverse = OverlapAdd(params, length, S.shape[:-2], np.float32 if S.dtype == np.complex64 else np.float64)
    return np.concatenate([inverse.add(S), inverse.close()], axis=-1)


class OverlapAdd:
    """The inverse STFT of :func:`istft`, taking frames a block at a time.

    Frames go in, in order; each call returns the output samples that no later
    frame can change any more, so a signal of any length is resynthesized with
    memory for one block. Concatenated, the pieces equal :func:`istft` of all
    the frames.

    Parameters
    ----------
    params : STFTParams
    length : int
        Samples of the signal that was analysed.
    lead : tuple
        Leading shape of the frames (``()`` for one channel, ``(n_channels,)``).
    dtype : np.dtype
        Output samples' type.

    Examples
    --------
    >>> params = STFTParams(512)
    >>> y = np.random.default_rng(0).standard_normal(5000)
    >>> S = stft(y, n_fft=512)
    >>> inverse = OverlapAdd(params, len(y))
    >>> pieces = [inverse.add(S[:, t:t + 7]) for t in range(0, S.shape[1], 7)]
    >>> bool(np.allclose(np.concatenate(pieces + [inverse.close()]), y))
    True
    """

    def __init__(self, params, length, lead=(), dtype=np.float64):
        self.params = params
        self.length = check_positive_int(length, "length")
        self.dtype = np.dtype(dtype)
        n_fft, hop = params.n_fft, params.hop_length
        # Frames past this one only touch the padding beyond the end.
        self.n_frames = -(-(length + 2 * (n_fft // 2)) // hop)
        self.window = _window(params.window, n_fft)
        self.next_frame = 0
        self.start = 0  # position, in the padded signal, of acc[..., 0]
        self.acc = np.zeros((*lead, 0))  # float64 whatever the output type, as istft
        self.norm = np.zeros(0)
        self.emitted = 0  # output samples returned so far

    def add(self, S):
        """Add the next frames, shape (..., n_freq, n_block); return the finished samples."""
        n_fft, hop = self.params.n_fft, self.params.hop_length
        S = S[..., : max(0, self.n_frames - self.next_frame)]
        n_block = S.shape[-1]
        if n_block:
            frames = _transform("irfft", np.swapaxes(S, -1, -2), n_fft,
                                _frame_samples(self.length, self.params))
            frames *= self.window
            first = self.next_frame * hop - self.start
            end = first + n_fft + hop * (n_block - 1)
            if end > self.acc.shape[-1]:
                grow = end - self.acc.shape[-1]
                self.acc = np.concatenate([self.acc, np.zeros((*self.acc.shape[:-1], grow))], axis=-1)
                self.norm = np.concatenate([self.norm, np.zeros(grow)])
            _overlap_add(frames, hop, out=self.acc[..., first:end])
            _overlap_add(np.broadcast_to(self.window**2, (n_block, n_fft)), hop, out=self.norm[first:end])
            self.next_frame += n_block
        # Positions before the next frame's start are final.
        return self._take(self.next_frame * hop - n_fft // 2)

    def close(self):
        """The remaining samples, up to ``length`` (zeros where no frame reached)."""
        rest = self._take(self.length)
        missing = self.length - self.emitted
        if missing > 0:
            rest = np.concatenate([rest, np.zeros((*rest.shape[:-1], missing), self.dtype)], axis=-1)
            self.emitted = self.length
        return rest

    def _take(self, until):
        """Output samples ``emitted .. until`` (capped at what exists), normalized."""
        pad = self.params.n_fft // 2
        until = min(until, self.length, self.start + self.acc.shape[-1] - pad)
        if until <= self.emitted:
            return np.zeros((*self.acc.shape[:-1], 0), self.dtype)
        skip = self.emitted + pad - self.start  # the padding before sample 0 is never output
        end = skip + until - self.emitted
        y = self.acc[..., skip:end].copy()
        norm = self.norm[skip:end]
        nonzero = norm > np.finfo(self.dtype).tiny
        y[..., nonzero] /= norm[nonzero]
        self.acc = self.acc[..., end:]
        self.norm = self.norm[end:]
        self.start += end
        self.emitted = until
        return y.astype(self.dtype, copy=False)


def _frame_samples(length, params):
    """The samples of one channel's frames of a signal of ``length`` samples, frames times
    n_fft: what chooses the transforms of its frames (:func:`_transform`)."""
    return (1 + length // params.hop_length) * params.n_fft


def _transform(name, frames, n_fft, samples):
    """numpy's or scipy's ``rfft`` or ``irfft`` (``name``) of ``frames`` (..., n_frames,
    n_fft or n_freq) along their last axis, to or from ``n_fft`` samples, for a signal
    whose frames hold ``samples`` samples per channel (:func:`_frame_samples`).

    scipy's transforms share the frames among the cores (``workers``) and numpy's
    single-precision rfft is three times slower, but importing scipy.fft costs about
    0.15 s, more than a short signal's transforms take either way: a signal whose frames
    hold :data:`SMALL_FFT_FRAMES` samples or fewer per channel is transformed with
    numpy.fft. The choice is the signal's, not the call's, because the two give other
    bits in single precision: every block and excerpt of a signal is transformed alike
    (docs/decisions.md, "A short signal's transforms on numpy.fft, and scipy loaded on
    first use").
    """
    if samples <= SMALL_FFT_FRAMES:
        out = getattr(np.fft, name)(frames, n=n_fft if name == "irfft" else None, axis=-1)
        # (numpy before 2.0 computes in double: the single-precision types kept)
        single = frames.dtype in (np.float32, np.complex64)
        if name == "rfft":
            return out.astype(np.complex64 if single else np.complex128, copy=False)
        return out.astype(np.float32 if single else np.float64, copy=False)
    transform = getattr(_lazy.module("scipy.fft"), name)
    return transform(frames, n=n_fft if name == "irfft" else None, axis=-1, workers=available_cores())


def _window(name, n_fft):
    """The periodic window of length n_fft (scipy.signal.get_window(name, n_fft, fftbins=True))."""
    if name == "hann":
        return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    get_window = _lazy.module("scipy.signal").get_window  # (slow to import: other windows only)
    try:
        return get_window(name, n_fft, fftbins=True)
    except ValueError as exc:
        raise ParameterError(f"window={name!r}: {exc}") from None


def _overlap_add(frames, hop, out=None):
    """Sum frames of shape (..., n_frames, n_fft) placed ``hop`` samples apart
    (added into ``out`` of length ``n_fft + hop * (n_frames - 1)`` if given)."""
    *lead, n_frames, n_fft = frames.shape
    length = n_fft + hop * (n_frames - 1)
    if out is None:
        out = np.zeros((*lead, length), dtype=frames.dtype)
    for start in range(0, n_fft, hop):
        piece = frames[..., start : start + hop]
        width = piece.shape[-1]
        count = min(n_frames, (length - start) // hop)  # frames whose piece fits whole
        target = out[..., start : start + hop * count].reshape(*lead, count, hop)
        target[..., :width] += piece[..., :count, :]
        if count < n_frames:  # the last frame's piece ends before a full hop
            tail = out[..., start + hop * count : start + hop * count + width]
            tail += piece[..., count, : tail.shape[-1]]
    return out


#: Most frames of context on each side of a stacked frame (:func:`stack_frames`): a
#: template then spans 65 frames (0.75 s at 44.1 kHz, hop 512), and the stacked
#: spectrogram is 65 times the size of the plain one.
MAX_CONTEXT = 32


def check_context(context):
    """Return ``context`` as an int in [0, :data:`MAX_CONTEXT`], or raise ParameterError."""
    context = check_positive_int(context, "context", minimum=0)
    if context > MAX_CONTEXT:
        raise ParameterError(f"context={context}: must be at most {MAX_CONTEXT} frames on each side")
    return context


def stack_frames(V, context):
    """Give every frame its neighbours: column t holds frames t-c .. t+c stacked.

    Templates learned on stacked frames describe how a sound evolves over
    ``2 * context + 1`` frames, not just one spectrum. Frames beyond the edges
    repeat the first or last frame.

    Parameters
    ----------
    V : np.ndarray [shape=(n_freq, n_frames)]
    context : int
        c, frames on each side, at most :data:`MAX_CONTEXT`; 0 returns V itself.

    Returns
    -------
    np.ndarray [shape=(n_freq * (2 * context + 1), n_frames)]
        Block i (rows ``i * n_freq`` to ``(i + 1) * n_freq``) holds frame ``t + i - c``.
    """
    context = check_context(context)
    if context == 0:
        return V
    V = np.asarray(V)
    if V.ndim != 2 or V.shape[1] == 0:
        raise ParameterError(f"V has shape {V.shape}; expected (n_freq, n_frames) with at least one frame")
    n_frames = V.shape[1]
    padded = np.pad(V, ((0, 0), (context, context)), mode="edge")
    return np.vstack([padded[:, i : i + n_frames] for i in range(2 * context + 1)])


def unstack_frames(M, n_freq, context):
    """Inverse of :func:`stack_frames` for a model: average the 2c+1 guesses of each frame.

    A guess about a frame outside the signal (a context longer than the signal)
    is left out; every frame has at least its own.

    Parameters
    ----------
    M : np.ndarray [shape=(n_freq * (2 * context + 1), n_frames)]
    n_freq : int
    context : int

    Returns
    -------
    np.ndarray [shape=(n_freq, n_frames)]
    """
    n_freq = check_positive_int(n_freq, "n_freq")
    context = check_context(context)
    M = np.asarray(M)
    if M.ndim != 2 or M.shape[0] != n_freq * (2 * context + 1):
        raise ParameterError(f"M has shape {M.shape}; expected ({n_freq * (2 * context + 1)}, n_frames) "
                             f"for n_freq={n_freq} and context={context}")
    if context == 0:
        return M
    n_frames = M.shape[1]
    total = np.zeros((n_freq, n_frames), dtype=np.result_type(M.dtype, np.float32))
    count = np.zeros(n_frames)
    for i in range(2 * context + 1):
        shift = i - context  # block i of column t describes frame t + shift
        lo, hi = max(0, -shift), min(n_frames, n_frames - shift)
        if hi <= lo:  # frames outside the signal only
            continue
        total[:, lo + shift : hi + shift] += M[i * n_freq : (i + 1) * n_freq, lo:hi]
        count[lo + shift : hi + shift] += 1
    return total / np.maximum(count, 1)  # (only a signal of no frames has a count of 0)


def frame_means(V, step):
    """The mean of each ``step`` consecutive frames of ``V`` (n_rows x n_frames), the last
    frame repeated to fill the last step: np.ndarray [shape=(n_rows, ceil(n_frames / step))]."""
    n_rows, n_frames = V.shape
    groups = -(-n_frames // step)
    padded = np.pad(V, ((0, 0), (0, groups * step - n_frames)), mode="edge")
    return padded.reshape(n_rows, groups, step).mean(axis=2)


def mel_filters(*, sr, n_fft, n_mels=40):
    """Triangular mel filter bank, as :func:`librosa.filters.mel` with its defaults.

    Slaney's mel scale (linear below 1 kHz, logarithmic above) from 0 Hz to
    sr / 2, each filter scaled to unit area ("slaney" normalization).

    Returns
    -------
    np.ndarray [shape=(n_mels, n_fft // 2 + 1)]
    """
    def hz_to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        mel = f / (200.0 / 3)
        log = f >= 1000.0
        return np.where(log, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), mel)

    def mel_to_hz(m):
        m = np.asarray(m, dtype=np.float64)
        return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * (200.0 / 3))

    fft_freqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_freqs = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2))
    widths = np.diff(mel_freqs)
    ramps = mel_freqs[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    return weights * (2.0 / (mel_freqs[2:] - mel_freqs[:-2]))[:, None]


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


def hann_lobe(d):
    """The magnitude of the Hann window's spectrum ``d`` bins from its peak (1 at 0,
    1/2 at 1, 0 from 2 on): ``|sinc(d) / (1 - d**2)|``, its limit at ``|d| = 1``.

    Examples
    --------
    >>> hann_lobe(np.array([0.0, 0.5, 1.0, 2.0])).round(3).tolist()
    [1.0, 0.849, 0.5, 0.0]
    """
    d = np.asarray(d, dtype=np.float64)
    edge = np.abs(np.abs(d) - 1.0) < 1e-9
    lobe = np.abs(np.sinc(d) / np.where(edge, 1.0, 1.0 - d**2))
    lobe[edge] = 0.5
    return lobe

"""The block loop: any mode's separation of a signal of any length, in bounded memory.

1. Learn: the mode fits its factorization on the spectrogram of the whole
   signal or, when that holds more than ``limits.fit_values`` values, of
   evenly spread excerpts.
2. For each block of about ``limits.block_values`` values: its activations
   (those of the fit, or estimated by the mode with its templates), the mode's
   masks, the masked STFT, and the part of the inverse STFT that no later frame
   changes.
3. The sources' round-off against the input is shared among them, so they sum
   to the input exactly.

Nothing here knows which mode runs: see :class:`audionmf.modes.Mode`.
"""
from dataclasses import dataclass

import numpy as np

from ._validation import ParameterError
from .spectrogram import OverlapAdd, frame_span, stack_frames, stft_frames

__all__ = ["run", "activations", "whole_spectrogram", "SpectraSummary"]


def run(signal, mode, write, *, summary=None, progress=None, inspect=None):
    """Separate ``signal`` (an :class:`audionmf.io.Signal`) with a configured ``mode``,
    within its ``limits``.

    Calls ``write(source_index, samples)`` with consecutive pieces of each
    source, shape (n_channels, n_samples_piece); ``summary.add(t0, X, masks)``
    (a :class:`SpectraSummary`) and ``progress(done_frames, total_frames)``
    after each block; ``inspect(mode, fitted)`` once, after the fit and before
    the first block, with the :class:`audionmf.modes.Fitted` the masks are made
    of (a report shows its components without fitting again).
    """
    params, n_freq = mode.analysis.stft, mode.analysis.n_freq
    n_frames, fitted = _fit(signal, mode)
    if inspect is not None:
        inspect(mode, fitted)
    n_sources, n_channels = len(mode.names), signal.n_channels
    inverse = OverlapAdd(params, signal.n_samples, (n_sources, n_channels))
    done = 0  # samples written of every source
    heard = False
    for block in _blocks(signal, mode, fitted, n_frames):
        t0, t1, X = block.t0, block.t1, block.X
        block.X = None  # (freed below, with the masks)
        heard = heard or bool(np.any(block.segment))
        masks = mode.masks(fitted, block.H, X, slice(t0 - block.h0, t1 - block.h0),
                           slice(t0 - block.v0, t1 - block.v0))
        X = X[..., t0 - block.v0 : t1 - block.v0]
        if mode.rows < n_freq:  # above the templates' band: the top band's shares
            masks = np.concatenate(
                [masks, np.repeat(masks[:, -1:], n_freq - mode.rows, axis=1)], axis=1)
        if summary is not None:
            summary.add(t0, X, masks)
        # Masked spectra in frame-major memory, as the inverse FFT reads them.
        masked = np.empty((n_sources, n_channels, t1 - t0, n_freq), dtype=X.dtype)
        np.multiply(np.swapaxes(masks, -1, -2)[:, None], np.swapaxes(X, -1, -2).reshape(
            n_channels, t1 - t0, n_freq)[None], out=masked)
        del X, masks
        pieces = inverse.add(np.swapaxes(masked, -1, -2))
        del masked
        if t1 == n_frames:
            pieces = np.concatenate([pieces, inverse.close()], axis=-1)
        n = pieces.shape[-1]
        if n:
            start = done - block.first
            segment = block.segment
            mixture = (segment[:, start : start + n] if start + n <= segment.shape[-1]
                       else signal.read(done, done + n))
            residual = (mixture - pieces.sum(axis=0)) / n_sources
            for index, piece in enumerate(pieces):
                write(index, piece + residual)
            done += n
        if progress is not None:
            progress(t1, n_frames)
    if not heard:
        raise ParameterError(f"{signal.name}: silent: there is nothing to separate")


def activations(signal, mode):
    """The activations the masks of ``signal`` would be made of, block by block,
    with nothing masked or synthesized: yields ``H`` of consecutive frames
    (np.ndarray [shape=(n_activations, n_frames_of_block)]); those of the whole
    signal at once where it was fitted whole (no block's STFT is needed then)."""
    n_frames, fitted = _fit(signal, mode)
    if fitted.H is not None:
        yield fitted.H[:, :n_frames]
        return
    for block in _blocks(signal, mode, fitted, n_frames):
        yield block.H[:, block.t0 - block.h0 : block.t1 - block.h0]


def _fit(signal, mode):
    """The number of frames of ``signal`` and the mode's fit of it (the whole, or excerpts)."""
    analysis, limits = mode.analysis, mode.limits
    n_frames = 1 + signal.n_samples // analysis.stft.hop_length
    whole = n_frames * mode.fit_rows * (2 * analysis.context + 1) <= limits.fit_values
    mode.prepare(signal)
    return n_frames, _learn(signal, mode, n_frames, whole)


@dataclass
class _Block:
    """Frames t0 .. t1 - 1: their samples' STFT X (from frame v0, sample ``first``
    of ``segment``), and H, the activations of frames h0 ... that their masks use.
    A consumer that takes X sets it to None, so that the block does not keep it."""

    t0: int
    t1: int
    h0: int
    v0: int
    first: int
    segment: np.ndarray
    X: np.ndarray = None
    H: np.ndarray = None


def _blocks(signal, mode, fitted, n_frames):
    """The blocks of frames, in order, each with its STFT and the activations its masks use."""
    analysis, limits = mode.analysis, mode.limits
    params, c = analysis.stft, analysis.context
    per_block = fitted.H is None  # activations estimated a block at a time
    # Frames beyond a block that its masks depend on: the activations' (the mode's
    # spread); their own, when estimated here; and what the mode's masks read.
    spread = mode.spread(fitted)
    size = max(8 * spread + 8, limits.block_values // analysis.n_freq)  # frames per block
    reach = max(spread + c if per_block else 0, mode.reach)
    for t0 in range(0, n_frames, size):
        t1 = min(n_frames, t0 + size)
        h0, h1 = max(0, t0 - spread), min(n_frames, t1 + spread)  # activations the masks of t0..t1 use
        v0, v1 = max(0, t0 - reach), min(n_frames, t1 + reach)  # frames transformed
        first, end = frame_span(v0, v1, params)
        block = _Block(t0, t1, h0, v0, first, signal.read(first, end))
        block.X = _stft(block.segment, params, signal.n_samples)
        if not per_block:
            block.H = fitted.H[:, h0:h1]
        else:
            a, b = max(0, h0 - c), min(n_frames, h1 + c)
            block.H = mode.activations_at(fitted, analysis.spectrogram(
                block.X[..., a - v0 : b - v0], mode.rows, mode.pool)[:, h0 - a : h1 - a], h0)
        yield block


def _learn(signal, mode, n_frames, whole):
    """The mode's fit, on the normalized spectrogram of the whole signal or of excerpts."""
    if not mode.needs_fit(whole):
        return mode.without_fit()
    analysis, c, limits = mode.analysis, mode.analysis.context, mode.limits
    if whole:
        V = whole_spectrogram(signal, analysis, n_frames, limits, mode.rows, mode.pool)
        V = stack_frames(V / V.max(), c)
    else:
        mode.check_excerpts(signal.name)
        stretch = limits.excerpt_frames
        count = max(2, limits.fit_values // (mode.rows * (2 * c + 1) * stretch))
        starts = np.linspace(0, n_frames - stretch, count).astype(int)

        def excerpts(starts):
            return np.concatenate([stack_frames(_power(signal, mode, t0, t0 + stretch), c)
                                   for t0 in starts], axis=1)

        V = excerpts(starts)
        if not np.any(V):  # the sound falls between them: take the loudest stretches instead
            starts = _loudest_stretches(signal, analysis.stft.hop_length, n_frames, count, stretch)
            if not len(starts):
                raise ParameterError(f"{signal.name}: silent: there is nothing to separate")
            V = excerpts(starts)
        V /= V.max()
    return mode.fit(V, whole)


def whole_spectrogram(signal, analysis, n_frames, limits, rows=None, pool=None):
    """The unstacked spectrogram of every frame of ``signal`` (float32), built
    ``limits.block_values`` values at a time; refuses a silent signal."""
    n_rows = analysis.n_freq if rows is None else rows
    step = max(1, limits.block_values // n_rows)
    V = np.concatenate([_frames_power(signal, analysis, t0, min(n_frames, t0 + step), rows, pool)
                        for t0 in range(0, n_frames, step)], axis=1)
    if not np.any(V):
        raise ParameterError(f"{signal.name}: silent: there is nothing to separate")
    return V


def _frames_power(signal, analysis, t0, t1, rows=None, pool=None):
    """Unstacked spectrogram of frames t0 .. t1 - 1 of a signal (float32)."""
    X = _stft(signal.read(*frame_span(t0, t1, analysis.stft)), analysis.stft, signal.n_samples)
    return analysis.spectrogram(X, rows, pool, context=0)


def _power(signal, mode, t0, t1):
    return _frames_power(signal, mode.analysis, t0, t1, mode.rows, mode.pool)


def _stft(segment, params, length):
    """STFT frames of a segment of a signal of ``length`` samples, in single precision
    (complex64): the sources are written in single precision, and their spectra need no
    more (the round-off is shared out in :func:`run`, so the sources still sum to the
    input exactly; docs/decisions.md, "Single-precision spectra")."""
    return stft_frames(segment.astype(np.float32), params, length=length)


def _loudest_stretches(signal, hop_length, n_frames, count, stretch):
    """First frames of the ``count`` loudest stretches of ``stretch`` frames that hold
    any sound, in time order (one forward pass over the signal)."""
    width = stretch * hop_length
    energy = np.array([np.sum(signal.read(t0 * hop_length, t0 * hop_length + width) ** 2)
                       for t0 in range(0, max(1, n_frames - stretch + 1), stretch)])
    loudest = np.sort(np.argsort(-energy, kind="stable")[:count])
    return loudest[energy[loudest] > 0] * stretch


class SpectraSummary:
    """Power spectrograms of a mixture and its sources, pooled over time, built
    block by block: what a picture of an hour-long separation needs.

    At most ``max_columns`` columns: each is the mean power of consecutive frames.
    """

    def __init__(self, mode, signal, max_columns=1500):
        params = mode.analysis.stft
        n_frames = 1 + signal.n_samples // params.hop_length
        self.pool = -(-n_frames // max_columns)
        self.hop_length = params.hop_length * self.pool
        self.names = ["mixture", *mode.names]
        self.sums = np.zeros((len(self.names), mode.analysis.n_freq, -(-n_frames // self.pool)))
        self.counts = np.zeros(self.sums.shape[-1])

    def add(self, t0, X, masks):
        power = np.abs(X) ** 2
        if power.ndim == 3:
            power = power.sum(axis=0)
        columns = np.arange(t0, t0 + power.shape[-1]) // self.pool
        starts = np.flatnonzero(np.r_[True, columns[1:] != columns[:-1]])
        where = columns[starts]
        for index, weight in enumerate([1.0, *(masks**2)]):
            self.sums[index][:, where] += np.add.reduceat(weight * power, starts, axis=-1)
        self.counts[where] += np.diff(np.r_[starts, len(columns)])

    def spectra(self):
        """dict name -> np.ndarray [shape=(n_freq, n_columns)] of mean power."""
        return dict(zip(self.names, self.sums / np.maximum(self.counts, 1)))

"""Spectral features: what the NMF of a signal's spectrogram says about it.

:func:`decompose` factorizes a signal's spectrogram, ``V ~= W @ H``, and
returns a :class:`Decomposition`: the templates ``W`` (n_freq x K, one
spectrum per column), the activations ``H`` (K x n_frames, when each template
sounds and how loudly) and the axes that go with them, in Hz and seconds.
The activations are features of the signal; with a fixed dictionary of
templates (a :class:`audionmf.SourceModel` or any array) signals can be
compared through them.
"""
import os
from dataclasses import dataclass, replace

import numpy as np

from ._blocks import whole_spectrogram
from ._validation import (
    MAX_COMPONENTS,
    MAX_SAMPLE,
    ParameterError,
    check_audio,
    check_nonnegative_matrix,
    check_positive_int,
)
from .analysis import Analysis
from .io import Signal, atomic_file, resample
from .limits import check_limits
from .masks import wiener_masks
from .models import SourceModel
from .modes.blind import first_fit
from .nmf import nmf
from .spectrogram import (
    bin_frequencies,
    frame_times,
    istft,
    stack_frames,
    stft,
    unstack_frames,
)

__all__ = ["decompose", "Decomposition"]

#: File formats of :meth:`Decomposition.save`, by extension.
SAVE_FORMATS = (".npz", ".csv")


@dataclass(frozen=True, eq=False)
class Decomposition:
    """A spectrogram factorized into templates and activations, with its axes.

    The model is ``V ~= W @ H`` with ``V`` the spectrogram that was analysed,
    ``|STFT| ** power`` summed over channels.

    Attributes
    ----------
    templates : np.ndarray [shape=(n_freq * (2 * context + 1), K)]
        W, one template per column. With ``context > 0`` each template spans
        ``2 * context + 1`` frames stacked as in :func:`audionmf.stack_frames`.
    activations : np.ndarray [shape=(K, n_frames)]
        H, one row per template; column t is the frame at ``times[t]``.
    frequencies : np.ndarray [shape=(n_freq,)]
        Centre of each frequency bin, in Hz.
    times : np.ndarray [shape=(n_frames,)]
        Centre of each frame, in seconds.
    sr : int
        Sampling rate of the analysis, in Hz.
    n_fft, hop_length, window
        STFT parameters (see :class:`audionmf.STFTParams`).
    beta : float
        Divergence that was minimized.
    power : float
        Spectrogram exponent (1 magnitude, 2 power).
    loss : float
        Final divergence ``D(V | W H)`` (of the stacked frames if ``context > 0``).
    context : int
        Frames of context on each side of every template (0: plain spectra).

    The arrays are read-only.
    """

    templates: np.ndarray
    activations: np.ndarray
    frequencies: np.ndarray
    times: np.ndarray
    sr: int
    n_fft: int
    hop_length: int
    window: str
    beta: float
    power: float
    loss: float
    context: int = 0

    def __post_init__(self):
        for name in ("templates", "activations", "frequencies", "times"):
            array = np.array(getattr(self, name))  # our own read-only copy
            array.setflags(write=False)
            object.__setattr__(self, name, array)

    @property
    def n_components(self):
        """K, the number of templates."""
        return self.templates.shape[1]

    def reconstruct(self):
        """The model spectrogram ``W @ H``, in the units of the analysed spectrogram.

        Returns
        -------
        np.ndarray [shape=(n_freq, n_frames)]
            With ``context > 0``, the stacked model unstacked by
            :func:`audionmf.unstack_frames` (each frame the average of its
            ``2 * context + 1`` predictions).
        """
        return self._unstack(self.templates @ self.activations)

    def component(self, k):
        """Spectrogram of component k alone, ``outer(W[:, k], H[k])``.

        The components sum to :meth:`reconstruct`.

        Returns
        -------
        np.ndarray [shape=(n_freq, n_frames)]
        """
        k = self._check_component(k)
        return self._unstack(np.outer(self.templates[:, k], self.activations[k]))

    def component_audio(self, y, k):
        """The audio of component k: the mixture's STFT under a soft mask, inverted.

        The mask is ``component(k) / reconstruct()``; the masks of all
        components sum to 1, so the components' audio sums back to ``y``
        (to the round-off of the inverse STFT).

        Parameters
        ----------
        y : np.ndarray [shape=(n_samples,) or (n_channels, n_samples)]
            The signal that was decomposed, at ``sr`` (resampled first if
            :func:`decompose` resampled it for a model). Every channel gets
            the same mask.
        k : int
            Component index, 0 <= k < K.

        Returns
        -------
        np.ndarray, the shape and dtype of ``y``
        """
        k = self._check_component(k)
        y = check_audio(y, "y")
        X = stft(np.asarray(y, dtype=np.float64), n_fft=self.n_fft,
                 hop_length=self.hop_length, window=self.window)
        if X.shape[-1] != len(self.times):
            raise ParameterError(
                f"y has {X.shape[-1]} frames but the decomposition {len(self.times)}: "
                f"pass the signal that was decomposed, at sr={self.sr}"
            )
        # Component k against the rest (or alone, if K = 1).
        labels = (np.arange(self.n_components) != k).astype(int)
        mask = wiener_masks(self.templates, self.activations, labels, mask_power=1.0,
                            context=self.context)[0]
        out = istft(mask * X, length=y.shape[-1], n_fft=self.n_fft,
                    hop_length=self.hop_length, window=self.window)
        return out.astype(y.dtype)

    def save(self, path):
        """Write the decomposition to a file, atomically; the extension picks the format.

        * ``.npz``: arrays ``templates``, ``activations``, ``frequencies``,
          ``times`` and the scalars ``sr``, ``n_fft``, ``hop_length``,
          ``window``, ``beta``, ``power``, ``loss``, ``context``; readable
          with ``np.load(path, allow_pickle=False)``.
        * ``.csv``: the activations, one row per frame, with header
          ``time,c0,c1,...`` (time in seconds).

        The data goes to a hidden temporary file in the target folder,
        renamed over ``path`` once complete.

        Raises
        ------
        ParameterError
            Unknown extension.
        OSError
            The file cannot be written.
        """
        path = os.fspath(path)
        ext = os.path.splitext(path)[1].lower()
        if ext not in SAVE_FORMATS:
            raise ParameterError(
                f"{path}: cannot write {ext or 'files without extension'!r}; "
                f"use one of {', '.join(SAVE_FORMATS)}"
            )
        with atomic_file(path) as handle:
            if ext == ".npz":
                np.savez_compressed(
                    handle,
                    templates=self.templates, activations=self.activations,
                    frequencies=self.frequencies, times=self.times,
                    sr=np.int64(self.sr), n_fft=np.int64(self.n_fft),
                    hop_length=np.int64(self.hop_length), window=np.str_(self.window),
                    beta=np.float64(self.beta), power=np.float64(self.power),
                    loss=np.float64(self.loss), context=np.int64(self.context),
                )
            else:
                header = ",".join(["time"] + [f"c{k}" for k in range(self.n_components)])
                table = np.column_stack([self.times, self.activations.T])
                np.savetxt(handle, table, fmt="%.9g", delimiter=",", header=header, comments="")

    def _unstack(self, M):
        return unstack_frames(M, len(self.frequencies), self.context)

    def _check_component(self, k):
        k = check_positive_int(k, "k", minimum=0)
        if k >= self.n_components:
            raise ParameterError(f"k={k}: there are {self.n_components} components")
        return k


def decompose(
    y,
    sr,
    *,
    n_components=None,
    beta=None,
    n_fft=None,
    hop_length=None,
    window=None,
    power=None,
    templates=None,
    max_iter=200,
    tol=1e-4,
    random_state=None,
    callback=None,
    limits=None,
):
    """Factorize a signal's spectrogram into templates and activations.

    ``V = sum over channels of |stft(y)| ** power`` (the convention of
    :func:`audionmf.separate`: one factorization describes every channel),
    then ``V ~= W @ H`` with :func:`audionmf.nmf`.

    Parameters
    ----------
    y : np.ndarray [shape=(n_samples,) or (n_channels, n_samples)]
        Finite, not silent, at least ``n_fft`` samples long.
    sr : int
        Sampling rate in Hz.
    n_components : int or None
        K, the number of templates; default 16, or the number of ``templates``.
    beta : float or {"kl", "is", "euclidean"} or None
        Divergence; default "kl", or the model's.
    n_fft, hop_length, window
        STFT parameters; default 2048, ``n_fft // 4``, "hann", or the model's.
    power : float or None
        Spectrogram exponent, in (0, 2]; default
        :func:`audionmf.analysis.default_power` (beta), or the model's.
    templates : SourceModel or np.ndarray [shape=(n_freq * (2 * c + 1), K)], optional
        A fixed dictionary: only the activations are estimated (supervised
        NMF), so decompositions of different signals are comparable. A
        :class:`audionmf.SourceModel` brings its analysis (sr, n_fft,
        hop_length, window, beta, power, context): ``y`` is resampled to the
        model's rate, and an explicit argument that disagrees with the model
        is an error. An array is non-negative, with ``n_freq = n_fft // 2 + 1``
        and c frames of context on each side (0 for plain spectra).
    max_iter, tol, random_state, callback
        Passed to :func:`audionmf.nmf` (``callback`` only when templates are
        learned: with fixed templates the frames are fitted block by block,
        as :func:`audionmf.separate` does, and a callback would change that).

    Returns
    -------
    Decomposition
        Its ``sr`` is the rate of the analysis (the model's, with a model).

    Raises
    ------
    ParameterError
        Invalid, silent or too short audio; parameters that conflict with
        the model or the templates.

    Examples
    --------
    >>> import numpy as np
    >>> sr = 8000
    >>> t = np.arange(sr) / sr
    >>> y = np.sin(2 * np.pi * 440 * t) * (t < 0.5) + np.sin(2 * np.pi * 1250 * t) * (t >= 0.5)
    >>> dec = decompose(y, sr, n_components=2, n_fft=512, random_state=0)
    >>> dec.templates.shape, dec.activations.shape
    ((257, 2), (2, 63))
    >>> peaks = sorted(dec.frequencies[dec.templates.argmax(axis=0)])
    >>> [round(float(f)) for f in peaks]
    [438, 1250]
    """
    y = check_audio(y, "the audio", loudest=MAX_SAMPLE)
    sr = check_positive_int(sr, "sr")
    limits = check_limits(limits)
    if not np.any(y):
        raise ParameterError("the audio is silent: there is nothing to decompose")
    y = np.asarray(y, dtype=np.float64)
    analysis_options = dict(beta=beta, power=power, n_fft=n_fft, hop_length=hop_length, window=window)
    W = None
    if isinstance(templates, SourceModel):
        analysis = Analysis.from_models([templates], **analysis_options)
        W = templates.templates
        if analysis.sr != sr:
            y = resample(y, sr, analysis.sr)
            sr = analysis.sr
    else:
        analysis = Analysis.from_arguments(sr, **analysis_options)
        if templates is not None:
            W = check_nonnegative_matrix(templates, "templates", dtype=np.float32)
            analysis = replace(analysis, context=_context_of(W, analysis.stft.n_fft))
    if W is not None:
        if n_components is not None and n_components != W.shape[1]:
            raise ParameterError(
                f"n_components={n_components!r} differs from the {W.shape[1]} templates given"
            )
        n_components = W.shape[1]
    n_components = check_positive_int(16 if n_components is None else n_components, "n_components",
                                      maximum=MAX_COMPONENTS)
    params = analysis.stft
    if y.shape[-1] < params.n_fft:
        raise ParameterError(f"too short: {y.shape[-1]} samples, need at least n_fft={params.n_fft}")

    # The spectrogram and the fit of audionmf.separate's blind mode, by the same code
    # (so that its ``groups`` can name the components seen here).
    n_frames = 1 + y.shape[-1] // params.hop_length
    V = whole_spectrogram(Signal(y, sr), analysis, n_frames, limits)
    scale = V.max()
    V = stack_frames(V / scale, analysis.context)
    fit = dict(beta=analysis.beta, max_iter=max_iter, tol=tol, random_state=random_state, limits=limits)
    if W is None:
        result = first_fit(V, n_components, callback=callback, **fit)
    else:
        result = nmf(V, n_components, W=W, update_W=False, **fit)
    result.H *= scale  # back to the units of V, as the loss: D(sV | sWH) = s**beta D(V | WH)
    return Decomposition(
        templates=result.W if W is None else W,
        activations=result.H,
        frequencies=bin_frequencies(sr=sr, n_fft=params.n_fft),
        times=frame_times(n_frames, sr=sr, hop_length=params.hop_length),
        sr=sr,
        n_fft=params.n_fft,
        hop_length=params.hop_length,
        window=params.window,
        beta=analysis.beta,
        power=analysis.power,
        loss=float(result.loss * float(scale) ** analysis.beta),
        context=analysis.context,
    )


def _context_of(W, n_fft):
    """Frames of context c of templates with ``n_freq * (2c + 1)`` rows."""
    n_freq = n_fft // 2 + 1
    blocks, rest = divmod(W.shape[0], n_freq)
    if rest or blocks % 2 == 0:
        raise ParameterError(
            f"templates have {W.shape[0]} rows; expected n_freq * (2 * context + 1) "
            f"with n_freq={n_freq} for n_fft={n_fft}"
        )
    return blocks // 2


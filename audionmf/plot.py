"""Figures of spectrograms, decompositions, masks and separated sources.

Every matplotlib call of audionmf lives here, and none goes through pyplot's
global state: figures are made with :class:`matplotlib.figure.Figure`, which
needs no display and no backend, so this module works headless and never
calls ``show``. Save a figure with ``fig.savefig(path)``; in a notebook,
display it by leaving it as the cell's last expression.

Functions that draw on one axes take ``ax=None`` (a new figure is made) and
return what they drew, like :func:`librosa.display.specshow`; those that
build a figure of several panels return the :class:`~matplotlib.figure.Figure`.
"""
import types

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter

from ._validation import ParameterError, check_audio, check_nonnegative_matrix
from .features import Decomposition
from .spectrogram import STFTParams, bin_frequencies, frame_times, stft

__all__ = ["spectrogram", "templates", "activations", "decomposition", "masks", "sources",
           "source_spectrograms", "component", "energy_shares", "melody_line"]

#: Dynamic range of the dB images, below their loudest bin.
TOP_DB = 80.0


def spectrogram(S_or_y, sr, *, hop_length=None, n_fft=2048, power=1.0, ax=None, db=True,
                log_freq=False):
    """Draw a spectrogram, time in seconds against frequency in Hz, with a colorbar.

    Parameters
    ----------
    S_or_y : np.ndarray
        A spectrogram of shape (n_fft // 2 + 1, n_frames), complex or
        ``|STFT| ** power``; or a real signal of shape (n_samples,) or
        (n_channels, n_samples), whose magnitude STFT is drawn (summed over
        channels). A real 2-D array is a spectrogram if it has n_fft // 2 + 1 rows.
    sr : int
        Sampling rate in Hz.
    hop_length, n_fft
        STFT parameters of the spectrogram (see :class:`audionmf.STFTParams`).
    power : float
        Exponent of a real spectrogram given (1 magnitude, 2 power); sets the dB scale.
    ax : matplotlib.axes.Axes, optional
    db : bool
        Colour by level in dB relative to the loudest bin (80 dB of range),
        else linearly.
    log_freq : bool
        Logarithmic frequency axis (linear below two bins).

    Returns
    -------
    matplotlib.collections.QuadMesh

    Examples
    --------
    >>> import numpy as np
    >>> from audionmf import plot
    >>> y = np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)
    >>> mesh = plot.spectrogram(y, 8000, n_fft=512)
    >>> mesh.axes.get_ylabel()
    'frequency (Hz)'
    """
    params = STFTParams(n_fft, hop_length)
    S = np.asarray(S_or_y)
    if np.iscomplexobj(S) or (S.ndim == 2 and S.shape[0] == n_fft // 2 + 1):
        if S.ndim != 2 or S.shape[0] != n_fft // 2 + 1:
            raise ParameterError(f"S has shape {S.shape}; expected ({n_fft // 2 + 1}, n_frames) "
                                 f"for n_fft={n_fft}")
        S = np.abs(S) if np.iscomplexobj(S) else check_nonnegative_matrix(S, "S")
    else:
        S = np.abs(stft(check_audio(S, "y"), n_fft=params.n_fft, hop_length=params.hop_length))
        S = S.sum(axis=0) if S.ndim == 3 else S
        power = 1.0
    ax = _axes(ax)
    mesh = _spectrogram_mesh(ax, S, sr, params, power=power, db=db, log_freq=log_freq)
    _colorbar(mesh, ax=ax, label="level (dB)" if db else f"|STFT| ** {power:g}")
    return mesh


def templates(decomposition_or_W, *, frequencies=None, ax=None):
    """Draw each template as a spectrum: frequency upwards, one curve per component.

    Each curve is scaled to its own maximum and drawn in its own column,
    component k between k and k + 1 on the x axis, so that it reads as the
    left panel of the classic NMF figure.

    Parameters
    ----------
    decomposition_or_W : Decomposition or np.ndarray [shape=(n_freq, K)]
        For a decomposition with context, the centre frame of each template.
    frequencies : np.ndarray [shape=(n_freq,)], optional
        Frequency of each row in Hz; default the decomposition's, or bin numbers.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    list of matplotlib.lines.Line2D
        One per component.
    """
    W, frequencies = _templates_and_frequencies(decomposition_or_W, frequencies)
    ax = _axes(ax)
    lines = [ax.plot(k + 0.9 * w, frequencies, lw=0.8)[0] for k, w in enumerate(_unit_peaks(W.T))]
    _label(ax, "component", "frequency (Hz)" if frequencies.dtype.kind == "f" else "frequency bin",
           "templates W", xticks=W.shape[1])
    ax.margins(y=0)
    return lines


def activations(decomposition_or_H, *, times=None, ax=None):
    """Draw the activations over time, one row per component.

    Each row is scaled to its own maximum and drawn between k and k + 1.

    Parameters
    ----------
    decomposition_or_H : Decomposition or np.ndarray [shape=(K, n_frames)]
    times : np.ndarray [shape=(n_frames,)], optional
        Time of each frame in seconds; default the decomposition's, or frame numbers.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    list of matplotlib.lines.Line2D
        One per component.
    """
    if isinstance(decomposition_or_H, Decomposition):
        H = decomposition_or_H.activations
        times = decomposition_or_H.times if times is None else times
    else:
        H = _matrix(decomposition_or_H, "H")
    times = np.arange(H.shape[1]) if times is None else _axis_values(times, H.shape[1], "times")
    ax = _axes(ax)
    lines = [ax.plot(times, k + 0.9 * h, lw=0.8)[0] for k, h in enumerate(_unit_peaks(H))]
    _label(ax, "time (s)" if times.dtype.kind == "f" else "frame", "component",
           "activations H", yticks=H.shape[0])
    ax.margins(x=0)
    return lines


def decomposition(dec, V=None, *, log_freq=True):
    """The classic NMF figure: templates left, activations on top, spectrogram between.

    The three panels share their axes: the templates' frequencies are the
    spectrogram's, the activations' times too.

    Parameters
    ----------
    dec : Decomposition
    V : np.ndarray [shape=(n_freq, n_frames)], optional
        The spectrogram drawn, in the units of the analysis (``|STFT| **
        dec.power``); default the model ``dec.reconstruct()``.
    log_freq : bool
        Logarithmic frequency axis (linear below two bins), where music lives.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> from audionmf import plot
    >>> from audionmf.features import decompose
    >>> y = np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)
    >>> fig = plot.decomposition(decompose(y, 8000, n_components=2, n_fft=512, random_state=0))
    >>> len(fig.axes)
    4
    """
    if not isinstance(dec, Decomposition):
        raise ParameterError(f"expected a Decomposition, got {type(dec).__name__}")
    title = "spectrogram V"
    if V is None:
        V, title = dec.reconstruct(), "model W H"
    V = _matrix(V, "V")
    if V.shape != (len(dec.frequencies), len(dec.times)):
        raise ParameterError(
            f"V has shape {V.shape}; the decomposition's is {(len(dec.frequencies), len(dec.times))}"
        )
    fig = Figure(figsize=(11, 6), layout="constrained")
    grid = fig.add_gridspec(2, 3, width_ratios=(1, 4, 0.12), height_ratios=(1, 3))
    main = fig.add_subplot(grid[1, 1])
    left = fig.add_subplot(grid[1, 0], sharey=main)
    top = fig.add_subplot(grid[0, 1], sharex=main)
    mesh = _spectrogram_mesh(main, V, dec.sr, STFTParams(dec.n_fft, dec.hop_length),
                             power=dec.power, db=True, log_freq=log_freq)
    main.set_title(title)
    main.set_ylabel("")
    main.tick_params(labelleft=False)
    templates(dec, ax=left)
    activations(dec, ax=top)
    top.set_xlabel("")
    top.tick_params(labelbottom=False)
    _colorbar(mesh, cax=fig.add_subplot(grid[1, 2]), label="level (dB)")
    fig.suptitle(f"NMF, K = {dec.n_components}, beta = {dec.beta:g}")
    return fig


def masks(masks, sr, hop_length=None, n_fft=2048, names=None, *, log_freq=False):
    """Draw soft masks, one panel per source, with values from 0 to 1.

    Parameters
    ----------
    masks : np.ndarray [shape=(N, n_fft // 2 + 1, n_frames)]
        For example from :func:`audionmf.wiener_masks`.
    sr : int
    hop_length, n_fft
        STFT parameters of the masks.
    names : list of str, optional
        Source names; default "source 1" ... "source N".
    log_freq : bool
        Logarithmic frequency axis (linear below two bins).

    Returns
    -------
    matplotlib.figure.Figure
    """
    M = np.asarray(masks, dtype=np.float64)
    params = STFTParams(n_fft, hop_length)
    if M.ndim != 3 or M.shape[1] != n_fft // 2 + 1:
        raise ParameterError(f"masks have shape {M.shape}; expected (N, {n_fft // 2 + 1}, n_frames)")
    names = _names(names, len(M))
    fig = Figure(figsize=(8, 1.2 + 2.2 * len(M)), layout="constrained")
    axes = fig.subplots(len(M), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    for ax, mask, name in zip(axes, M, names):
        mesh = _spectrogram_mesh(ax, mask, sr, params, db=False, log_freq=log_freq, vmin=0.0,
                                 vmax=1.0, cmap="gray_r")
        ax.set_title(f"mask: {name}")
    for ax in axes[:-1]:
        ax.set_xlabel("")
    _colorbar(mesh, ax=list(axes), label="mask")
    return fig


def sources(mixture, sources_dict, sr, *, kind="waveform", n_fft=2048, hop_length=None,
            log_freq=False):
    """Draw a mixture above its separated sources, on a shared time axis.

    Parameters
    ----------
    mixture : np.ndarray [shape=(n_samples,) or (n_channels, n_samples)]
    sources_dict : dict of str -> np.ndarray
        Signals of the mixture's shape, for example from :func:`audionmf.separate`.
    sr : int
    kind : {"waveform", "spectrogram"}
        Waveforms (all channels overlaid, min/max envelopes when long) or
        dB spectrograms on one colour scale (summed over channels).
    n_fft, hop_length, log_freq
        STFT parameters and frequency axis of the spectrograms (see :func:`spectrogram`).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if kind not in ("waveform", "spectrogram"):
        raise ParameterError(f"kind={kind!r}: expected 'waveform' or 'spectrogram'")
    signals = {"mixture": check_audio(mixture, "mixture")}
    for name, y in sources_dict.items():
        y = check_audio(y, f"source {name!r}")
        if y.shape != signals["mixture"].shape:
            raise ParameterError(
                f"source {name!r} has shape {y.shape}; the mixture {signals['mixture'].shape}")
        signals[name] = y
    fig = Figure(figsize=(9, 1.2 + 1.8 * len(signals)), layout="constrained")
    axes = fig.subplots(len(signals), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    if kind == "waveform":
        for ax, (name, y) in zip(axes, signals.items()):
            _waveform(ax, y, sr)
            ax.set_title(name)
    else:
        params = STFTParams(n_fft, hop_length)
        spectra = {name: np.abs(stft(y, n_fft=params.n_fft, hop_length=params.hop_length)) ** 2
                   for name, y in signals.items()}
        spectra = {name: S.sum(axis=0) if S.ndim == 3 else S for name, S in spectra.items()}
        _spectra_panels(axes, spectra, sr, params.hop_length, params.n_fft, log_freq)
    for ax in axes[:-1]:
        ax.set_xlabel("")
    return fig


def source_spectrograms(spectra, sr, *, hop_length, n_fft, log_freq=False, ref=None, size=None,
                        melody=None):
    """Draw power spectrograms of a mixture and its sources on one colour scale.

    What :func:`sources` draws with ``kind="spectrogram"``, from spectrograms
    already computed, for example the time-pooled ones that
    :func:`audionmf.separate_file` gathers while it streams a long file.

    Parameters
    ----------
    spectra : dict of str -> np.ndarray [shape=(n_freq, n_columns)]
        Power (``|X| ** 2``), one panel each, top to bottom.
    sr : int
    hop_length : int
        Samples between columns.
    n_fft : int
        The STFT size (``n_freq = n_fft // 2 + 1``).
    log_freq : bool
    ref : float or None
        The power drawn as 0 dB; default the loudest bin of all ``spectra``. Give
        the same to figures drawn one spectrogram each, to share their scale.
    size : (float, float) or None
        Width and height in inches; default 9 wide, 1.8 high per panel.
    melody : np.ndarray [shape=(n, 2)] or None
        Time (s) and F0 (Hz, 0 where unvoiced), drawn over the first panel (the mixture).

    Returns
    -------
    matplotlib.figure.Figure
    """
    spectra = {name: np.asarray(S, dtype=np.float64) for name, S in spectra.items()}
    if not spectra:
        raise ParameterError("spectra is empty")
    fig = Figure(figsize=size or (9, 1.2 + 1.8 * len(spectra)), layout="constrained")
    axes = fig.subplots(len(spectra), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    _spectra_panels(axes, spectra, sr, hop_length, n_fft, log_freq, ref)
    if melody is not None:
        melody_line(melody, ax=axes[0])
    for ax in axes[:-1]:
        ax.set_xlabel("")
    return fig


def melody_line(melody, *, ax=None, color="cyan"):
    """Draw a melody (rows of time in s and F0 in Hz, 0 where unvoiced) as a line
    with gaps where unvoiced, over a spectrogram drawn in Hz and seconds.

    Returns
    -------
    matplotlib.lines.Line2D
    """
    melody = _matrix(melody, "melody")
    if melody.ndim != 2 or melody.shape[1] != 2:
        raise ParameterError(f"melody: expected rows of time and F0, got shape {melody.shape}")
    ax = _axes(ax)
    f0 = np.where(melody[:, 1] > 0, melody[:, 1], np.nan)
    limits = ax.get_xlim(), ax.get_ylim()
    (line,) = ax.plot(melody[:, 0], f0, color=color, linewidth=1.0, label="melody")
    if ax.collections:  # over a spectrogram: its axes stay as they were
        ax.set_xlim(limits[0])
        ax.set_ylim(limits[1])
    return line


def component(template, activation, *, frequencies, times, title=None, color=None):
    """Draw one NMF component: its template as a spectrum (log frequency) beside
    its activation over time, each scaled to its own maximum.

    Parameters
    ----------
    template : np.ndarray [shape=(n_freq,)]
    activation : np.ndarray [shape=(n_frames,)]
    frequencies : np.ndarray [shape=(n_freq,)]
        Frequency of each row in Hz (:func:`audionmf.bin_frequencies`).
    times : np.ndarray [shape=(n_frames,)]
        Time of each frame in seconds (:func:`audionmf.frame_times`).
    title : str, optional
    color : matplotlib color, optional

    Returns
    -------
    matplotlib.figure.Figure
        Two axes: the template's, the activation's.

    Examples
    --------
    >>> import numpy as np
    >>> from audionmf import plot
    >>> fig = plot.component(np.ones(5), np.ones(3), frequencies=np.arange(5.0) * 100,
    ...                      times=np.arange(3) * 0.1, title="component 0")
    >>> [ax.get_xlabel() for ax in fig.axes]
    ['frequency (Hz)', 'time (s)']
    """
    (w,) = _unit_peaks(_matrix(np.atleast_2d(template), "template"))
    (h,) = _unit_peaks(_matrix(np.atleast_2d(activation), "activation"))
    frequencies = _axis_values(frequencies, len(w), "frequencies")
    times = _axis_values(times, len(h), "times")
    fig = Figure(figsize=(8, 1.5), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=(1, 2.5))
    left.plot(frequencies, w, lw=0.8, color=color)
    if len(frequencies) > 2 and frequencies[1] > 0:
        left.set_xscale("symlog", base=2, linthresh=2 * frequencies[1], linscale=0.5)
        left.set_xticks([f for f in (100, 1000, 10000) if f <= frequencies[-1]])
        left.xaxis.set_major_formatter(ScalarFormatter())
    right.fill_between(times, h, lw=0.6, color=color, alpha=0.8)
    for ax, label in ((left, "frequency (Hz)"), (right, "time (s)")):
        ax.set_xlabel(label)
        ax.set_yticks([])
        ax.margins(x=0)
        ax.set_ylim(0, 1.05)
    left.set_title("template", fontsize="small")
    right.set_title("activation", fontsize="small")
    if title:
        fig.suptitle(title, fontsize="medium")
    return fig


def energy_shares(spectra, sr, *, hop_length, ax=None):
    """Draw each source's share of the energy over time, stacked to 1.

    Parameters
    ----------
    spectra : dict of str -> np.ndarray [shape=(n_freq, n_columns)]
        Power spectrograms of the sources (a ``"mixture"`` entry is left out),
        for example the pooled ones of :class:`audionmf.separate.SpectraSummary`.
    sr : int
    hop_length : int
        Samples between columns.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    list of matplotlib.collections.PolyCollection
        One per source. Where no source holds energy, the shares are equal.

    Examples
    --------
    >>> import numpy as np
    >>> from audionmf import plot
    >>> drawn = plot.energy_shares({"a": np.ones((3, 4)), "b": np.zeros((3, 4))}, 8000, hop_length=512)
    >>> len(drawn)
    2
    """
    spectra = {name: _matrix(S, f"spectra[{name!r}]") for name, S in spectra.items() if name != "mixture"}
    if not spectra:
        raise ParameterError("spectra holds no source")
    energy = np.stack([S.sum(axis=0) for S in spectra.values()])
    total = energy.sum(axis=0)
    shares = np.where(total > 0, energy / np.where(total > 0, total, 1.0), 1.0 / len(energy))
    times = frame_times(energy.shape[1], sr=sr, hop_length=hop_length)
    ax = _axes(ax)
    drawn = ax.stackplot(times, shares, labels=list(spectra), lw=0)
    ax.set_xlim(times[0], times[-1] if len(times) > 1 else times[0] + hop_length / sr)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", frameon=False)
    _label(ax, "time (s)", "share of energy", "each source's share of the energy")
    return drawn


def _spectra_panels(axes, spectra, sr, hop_length, n_fft, log_freq, ref=None):
    grid = types.SimpleNamespace(n_fft=n_fft, hop_length=hop_length)
    ref = max(S.max() for S in spectra.values()) if ref is None else ref
    for ax, (name, S) in zip(axes, spectra.items()):
        mesh = _spectrogram_mesh(ax, S, sr, grid, power=2.0, db=True, log_freq=log_freq, ref=ref)
        ax.set_title(name)
    _colorbar(mesh, ax=list(axes), label="level (dB)")


# --------------------------------------------------------------------- helpers
def _axes(ax):
    return Figure(figsize=(8, 4), layout="constrained").add_subplot() if ax is None else ax


def _label(ax, xlabel, ylabel, title, xticks=None, yticks=None):
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if xticks is not None:
        ax.set_xticks(*_component_ticks(xticks))
    if yticks is not None:
        ax.set_yticks(*_component_ticks(yticks))


def _component_ticks(K):
    """Ticks in the middle of the columns (or rows) of up to 32 components, and their labels:
    every component is numbered, up to 32, so that a user can pick them for ``--group``."""
    k = np.arange(0, K, max(1, int(np.ceil(K / 32))))
    return k + 0.45, [str(i) for i in k]


def _colorbar(mappable, label, **where):
    bar = mappable.axes.figure.colorbar(mappable, **where)
    bar.set_label(label)
    return bar


def _spectrogram_mesh(ax, S, sr, params, *, power=1.0, db=True, log_freq=False, ref=None,
                      vmin=None, vmax=None, cmap="magma"):
    """pcolormesh of an (n_freq, n_frames) array on Hz and second axes."""
    S = np.asarray(S, dtype=np.float64)
    if db:
        S, vmin, vmax = _decibels(S, power, ref), -TOP_DB, 0.0
    mesh = ax.pcolormesh(
        frame_times(S.shape[1], sr=sr, hop_length=params.hop_length),
        bin_frequencies(sr=sr, n_fft=params.n_fft),
        S, shading="nearest", cmap=cmap, vmin=vmin, vmax=vmax, rasterized=True,
    )
    if log_freq:
        ax.set_yscale("symlog", base=2, linthresh=2 * sr / params.n_fft, linscale=0.5)
        ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz)")
    return mesh


def _decibels(S, power, ref=None):
    """Level of ``|X| ** power`` in dB relative to ``ref`` (default: the maximum), floored at -TOP_DB."""
    ref = S.max() if ref is None else ref
    ref = ref if ref > 0 else 1.0
    floor = 10.0 ** (-TOP_DB * power / 20.0)
    return (20.0 / power) * np.log10(np.maximum(S / ref, floor))


def _waveform(ax, y, sr, max_points=4000):
    """Each channel against time; long signals as a min/max envelope per block."""
    block = max(1, y.shape[-1] // max_points)
    artists = []
    for channel in np.atleast_2d(y):
        if block == 1:
            artists += ax.plot(np.arange(len(channel)) / sr, channel, lw=0.6)
            continue
        n = len(channel) // block * block
        blocks = channel[:n].reshape(-1, block)
        t = (np.arange(len(blocks)) + 0.5) * block / sr
        artists.append(ax.fill_between(t, blocks.min(axis=1), blocks.max(axis=1), lw=0, alpha=0.7))
    ax.set_xlim(0, y.shape[-1] / sr)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("amplitude")
    return artists


def _templates_and_frequencies(decomposition_or_W, frequencies):
    if isinstance(decomposition_or_W, Decomposition):
        dec = decomposition_or_W
        n_freq = len(dec.frequencies)
        W = dec.templates[dec.context * n_freq : (dec.context + 1) * n_freq]
        frequencies = dec.frequencies if frequencies is None else frequencies
    else:
        W = _matrix(decomposition_or_W, "W")
    if frequencies is None:
        return W, np.arange(W.shape[0])
    return W, _axis_values(frequencies, W.shape[0], "frequencies")


def _matrix(X, name):
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.size == 0:
        raise ParameterError(f"{name} must be a non-empty 2-D array, got shape {X.shape}")
    return X


def _axis_values(values, n, name):
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (n,):
        raise ParameterError(f"{name} has shape {values.shape}; expected ({n},)")
    return values


def _unit_peaks(rows):
    """Each row divided by its maximum (rows of zeros stay zero)."""
    peaks = rows.max(axis=1, keepdims=True)
    return rows / np.where(peaks > 0, peaks, 1.0)


def _names(names, n):
    names = [f"source {i + 1}" for i in range(n)] if names is None else list(names)
    if len(names) != n:
        raise ParameterError(f"{len(names)} names for {n} masks")
    return names

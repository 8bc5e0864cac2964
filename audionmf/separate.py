"""Separate a signal into sources: pick the mode, run the block loop.

For a signal ``y`` of shape (n_samples,) or (n_channels, n_samples): the STFT
of each channel, one spectrogram ``V = sum over channels of |X| ** power``
(one factorization serves every channel), ``V ~= W @ H`` with templates
grouped into sources by the mode (:mod:`audionmf.modes`: blind, source
models, drums), soft masks on each channel's complex STFT, and the inverse
STFT. The masks sum to one and the inverse STFT is linear, so the sources sum
back to the input; the round-off of the single-precision transforms and masks
is shared equally among the sources, so the sum is exact to the precision of
the input. Long signals go a block at a time (:mod:`audionmf._blocks`).
"""
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from . import _blocks
from ._blocks import SpectraSummary
from ._validation import MAX_SAMPLE, AudioError, ParameterError, check_audio
from .analysis import default_power
from .grouping import assign_by_masks
from .io import WRITE_FORMATS, OutputFiles, Signal, check_name_fits, missing_folders, remove_empty_folders
from .masks import wiener_masks
from .modes import MODES, Fitted, Mode, keyword, pick

__all__ = ["separate", "separate_file", "denoise", "melody", "Separation", "SpectraSummary", "wiener_masks",
           "assign_by_masks", "default_power", "configure"]

#: Keywords of :func:`separate` that are no mode's own: every mode takes them.
COMMON = ("beta", "power", "n_fft", "hop_length", "window", "mask_power", "max_iter", "tol", "init",
          "sparsity", "random_state", "callback")


def configure(sr, options, limits=None, spell=keyword):
    """The mode that ``options`` (the keywords of :func:`separate`) ask for,
    configured for a signal at rate ``sr`` within ``limits``."""
    known = {o.name for mode in MODES.values() for o in mode.options} | {"two_stems", *COMMON}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ParameterError(f"unknown option {spell(unknown[0])}")
    chosen = pick(options, spell)
    own = {o.name: options[o.name] for o in chosen.options if o.name in options}
    for option in chosen.options:  # one model alone, not in a list (it was a TypeError)
        value = own.get(option.name)
        if option.kind == "model" and value is not None and not isinstance(value, Iterable):
            raise ParameterError(f"{spell(option.name)} must be a list of SourceModel objects, "
                                 f"got one {type(value).__name__}: pass [model]")
    common = {name: options[name] for name in COMMON if name in options}
    return chosen(sr, limits=limits, spell=spell, **common, **own)


def separate(
    y,
    sr,
    *,
    n_sources=None,
    models=None,
    free_components=0,
    n_components=None,
    groups=None,
    two_stems=None,
    beta=None,
    power=None,
    n_fft=None,
    hop_length=None,
    window=None,
    mask_power=None,
    max_iter=None,
    tol=1e-4,
    init=None,
    sparsity=0.0,
    rhythm_weight=None,
    random_state=None,
    callback=None,
    limits=None,
    **options,
):
    """Separate a signal into sources, blindly, with learned source models, or drums apart.

    The mode follows from the arguments (:mod:`audionmf.modes`):

    * **blind** (the default): K components learned on the mixture, grouped
      into ``n_sources`` sources by :func:`audionmf.group_components` or by
      hand with ``groups``;
    * **models** (``models=[...]``): each model's templates held fixed, only
      their activations estimated (supervised NMF); ``free_components``
      templates learned on the mixture form one more source, ``"residual"``;
    * **drums** (``two_stems="drums"``): ``"drums"`` and ``"no_drums"``, with
      generic drum templates that ship with the package, no training data.

    An argument that belongs to another mode than the one chosen is refused.

    Parameters
    ----------
    y : np.ndarray [shape=(n_samples,) or (n_channels, n_samples)]
        Finite, not silent, at least one STFT frame long.
    sr : int
        Sampling rate in Hz.
    n_sources : int or None
        Blind: N, the number of sources; default 2, at most 64.
    models : list of SourceModel, optional
        One model per source, learned with the same analysis parameters. For
        a mixture at another sampling rate the STFT keeps the models' frame
        and hop durations and the templates are interpolated onto its bins
        (up to the lower Nyquist frequency; above it, masks repeat the top
        bin's), so the mixture is analysed and resynthesized at its own rate.
    free_components : int
        With ``models``: templates learned on the mixture for ``"residual"``.
    n_components : int or None
        Blind: K, the components that are grouped; default ``8 * n_sources``
        (at most 4096, the most any separation takes).
    groups : list of lists of int, optional
        Blind: the components of each source, chosen by hand instead of by
        :func:`audionmf.group_components`, e.g. ``[[0, 3, 5], [1, 2, 4]]`` after
        looking at the components that :func:`audionmf.decompose` (or
        ``audionmf plot``) finds with the same ``n_components``, analysis
        options and ``random_state``: they are the ones fitted here. Sources
        are numbered in the order of the groups; ``n_sources``, if given, must
        agree. Signals longer than one fit takes (see ``limits``) are refused.
    two_stems : {"drums"} or None
        Split into ``"drums"`` and ``"no_drums"``. The analysis is the drum
        model's.
    beta : float or {"kl", "is", "euclidean"} or None
        Divergence; default "kl", or the models'.
    power : float or None
        Spectrogram exponent, in (0, 2]; default :func:`default_power` (beta), or
        the models'.
    n_fft, hop_length, window
        STFT parameters; default 2048, ``n_fft // 4``, "hann", or the models'.
        Given with models (or drums), they must agree with the models'.
    mask_power : float or None
        Exponent p of the soft masks ``(W_s H_s)**p / sum_j (W_j H_j)**p``; 2
        gives Wiener-like masks, larger values harder ones. Default 2, but 3
        with ``two_stems``.
    max_iter : int or None
        Most NMF iterations; default 200, but 60 with ``two_stems`` and 50 with
        models and no free components (every template fixed).
    tol, init, sparsity, random_state, callback
        Passed to :func:`audionmf.nmf` (``sparsity`` penalizes the
        activations). Same ``random_state``, same sources. The ``callback``
        sees each fit that learns templates (a blind separation of sustained
        notes may run two).
    rhythm_weight : float or None
        Blind: weight of how components move over time beside their timbre
        when grouping them (:func:`audionmf.group_components`). Default: 2.5
        where at least 6% of the mixture's energy is percussive
        (:func:`audionmf.grouping.percussive_share`: speech, drums, struck
        notes), else 0, the grouping for sustained notes (timbre and how notes
        start, refined by a finer fit where the mixture is plainly sustained).
    limits : audionmf.limits.Limits or None
        How much is held in memory at once; the default suits any length.
    **options
        Options of other modes registered in :data:`audionmf.modes.MODES`.

    Returns
    -------
    sources : dict of str -> np.ndarray
        Blind: ``"source1"`` ... ``"sourceN"``, the source whose model spectrogram
        holds the most energy first (with ``groups``, in their order). With
        models: the models' names, then ``"residual"`` if ``free_components``.
        With ``two_stems="drums"``: ``"drums"``, ``"no_drums"``. Each has the
        shape and dtype of ``y``; together they sum to ``y``.

    Notes
    -----
    Memory grows with a block, not with the length of the signal: the
    factorization is fitted on the whole spectrogram up to about 3 minutes of
    44.1 kHz audio, and on excerpts spread evenly over a longer signal, whose
    activations are then estimated a block at a time with the templates
    fixed. Masks and the inverse STFT always go a block at a time; block
    boundaries change nothing. :func:`separate_file` does the same from file
    to file.

    Examples
    --------
    >>> import numpy as np
    >>> sr = 8000
    >>> t = np.arange(sr) / sr
    >>> y = np.sin(2 * np.pi * 440 * t) + 0.5 * np.sin(2 * np.pi * 1250 * t)
    >>> sources = separate(y, sr, n_sources=2, random_state=0)
    >>> sorted(sources)
    ['source1', 'source2']
    >>> bool(np.allclose(sum(sources.values()), y))
    True
    """
    y = check_audio(y, "the audio", loudest=MAX_SAMPLE)
    mode = configure(sr, dict(
        options, n_sources=n_sources, models=models, free_components=free_components,
        n_components=n_components, groups=groups, two_stems=two_stems, beta=beta, power=power,
        n_fft=n_fft, hop_length=hop_length, window=window, mask_power=mask_power,
        max_iter=max_iter, tol=tol, init=init, sparsity=sparsity, rhythm_weight=rhythm_weight,
        random_state=random_state, callback=callback), limits)
    _check_separable(y, mode)
    out = np.empty((len(mode.names), *y.shape), dtype=y.dtype)
    position = [0] * len(mode.names)

    def write(index, samples):
        n = samples.shape[-1]
        out[index, ..., position[index] : position[index] + n] = samples.reshape(*y.shape[:-1], n)
        position[index] += n

    _blocks.run(Signal(np.asarray(y, dtype=np.float64), sr), mode, write)
    return dict(zip(mode.names, out))


def denoise(y, sr, *, noise=None, noise_sr=None, noise_from=None, reduction=None, stationary=False,
            model=None, random_state=0, limits=None, **options):
    """Remove background noise from a recorded voice: ``(clean, noise)``, which sum to ``y``.

    A thin front over ``separate(y, sr, two_stems="noise", ...)``
    (:mod:`audionmf.modes.denoise`: semi-supervised NMF, noise templates from a
    noise profile, speech as what they cannot explain, soft masks).

    Parameters
    ----------
    y : np.ndarray [shape=(n_samples,) or (n_channels, n_samples)]
    sr : int
    noise : np.ndarray or str or os.PathLike, optional
        A recording of the noise alone (samples at ``noise_sr``, or a file, resampled
        to ``sr``): the noise profile.
    noise_sr : int or None
        Rate of ``noise`` samples; default ``sr``.
    noise_from : (float, float) or str, optional
        The noise profile is this noise-only stretch of ``y``, in seconds
        (``(0, 1.2)`` or ``"0:1.2"``).
    reduction : float or None
        Lower the noise by this many dB only (12 keeps some, as Audacity's default
        does); None removes all of it. The removed part is ``noise``.
    stationary : bool
        Keep the noise model learned from the profile instead of adapting it to the
        frames the first fit finds noise-dominated.
    model : SourceModel or list of SourceModel, optional
        Speech templates (from :meth:`audionmf.SourceModel.learn`), held fixed,
        instead of free templates learned on ``y``.
    random_state, limits, **options
        As for :func:`separate` (``n_fft``, ``hop_length``, ``max_iter``, ``mask_power``...).

    Without ``noise`` or ``noise_from`` the profile is the input's quietest
    stretches (:func:`audionmf.modes.denoise.quiet_frames`); where none is clearly
    quieter than the rest, a ParameterError says so and what to pass instead.

    Returns
    -------
    clean, noise : np.ndarray
        Each of the shape and dtype of ``y``; ``clean + noise == y``.

    Examples
    --------
    >>> import numpy as np
    >>> sr = 16000
    >>> rng = np.random.default_rng(0)
    >>> t = np.arange(3 * sr) / sr
    >>> voice = np.sin(2 * np.pi * 220 * t) * (t > 1)  # 1 s of noise alone, then a tone
    >>> y = voice + 0.1 * rng.standard_normal(len(t))
    >>> clean, noise = denoise(y, sr)
    >>> bool(np.allclose(clean + noise, y))
    True
    """
    if noise is not None and not isinstance(noise, (str, os.PathLike)):
        noise = check_audio(noise, "the noise sample", loudest=MAX_SAMPLE)
        if noise_sr is not None and noise_sr != sr:
            from .io import resample

            noise = resample(noise, noise_sr, sr)
    models = None if model is None else [model] if not isinstance(model, (list, tuple)) else list(model)
    sources = separate(y, sr, two_stems="noise", noise=noise, noise_from=noise_from, reduction=reduction,
                       stationary=stationary, speech_models=models, random_state=random_state,
                       limits=limits, **options)
    return sources["clean"], sources["noise"]


def melody(y, sr, *, limits=None, **options):
    """The lead voice's melody, as ``separate(y, sr, two_stems="vocals")`` tracks it.

    Parameters
    ----------
    y : np.ndarray [shape=(n_samples,) or (n_channels, n_samples)]
    sr : int
    limits : audionmf.limits.Limits or None
    **options
        Those of :func:`separate` with ``two_stems="vocals"`` (``melody`` too,
        which then comes back on the frames of the analysis).

    Returns
    -------
    np.ndarray [shape=(n_frames, 2)]
        Time of each frame (s) and its F0 (Hz), 0 where unvoiced.

    Examples
    --------
    >>> sr = 22050
    >>> t = np.arange(sr) / sr
    >>> y = sum(np.sin(2 * np.pi * 220 * k * t) / k for k in range(1, 8))
    >>> track = melody(y, sr, random_state=0)
    >>> bool(abs(12 * np.log2(np.median(track[track[:, 1] > 0, 1]) / 220)) < 0.5)
    True
    """
    y = check_audio(y, "the audio", loudest=MAX_SAMPLE)
    mode = configure(sr, dict(options, two_stems="vocals"), limits)
    _check_separable(y, mode)
    signal = Signal(np.asarray(y, dtype=np.float64), sr)
    return mode.melody_of(_blocks.activations(signal, mode))


def _check_separable(y, mode):
    """Refuse samples ``y`` that are shorter than one frame of ``mode``'s analysis, or silent."""
    n_fft = mode.analysis.stft.n_fft
    if y.shape[-1] < n_fft:
        raise ParameterError(f"too short: {y.shape[-1]} samples, need at least n_fft={n_fft}")
    if not np.any(y):
        raise ParameterError("the audio is silent: there is nothing to separate")


@dataclass
class Separation:
    """What :func:`separate_file` hands its ``report`` callable: a separation just
    done, its sources written but not yet in place.

    Attributes
    ----------
    path : str
        The input file.
    folder : str
        Where the sources (and the report's files) go.
    signal : audionmf.io.Signal
        The input, still open: a report may read excerpts of it.
    mode : audionmf.modes.Mode
        The configured mode: its ``names``, ``analysis``, ``mask_power``, ``key``.
    fitted : audionmf.modes.Fitted
        The fit the masks were made of: templates ``W``, ``labels`` and, when the
        whole signal was fitted, activations ``H`` of every frame (else None).
    summary : SpectraSummary
        The mixture's and the sources' power spectrograms, pooled over time.
    files : dict of str -> str
        Source name -> the file it is written to.
    seconds : float
        Time the separation took, reading and writing included.
    """

    path: str
    folder: str
    signal: Signal
    mode: Mode
    fitted: Fitted
    summary: SpectraSummary
    files: dict
    seconds: float


def separate_file(path, folder, *, format="wav", figure=None, report=None, progress=None, limits=None,
                  spell=keyword, **options):
    """Separate an audio file of any length into one file per source, in bounded memory.

    The file is read and the sources are written a block at a time (see
    :func:`separate` for what is computed), so an hour of audio needs no more
    memory than a few minutes. The outputs ``folder/<source>.<format>``
    appear together when all are complete, or not at all.

    Parameters
    ----------
    path : str or os.PathLike
        The mixture.
    folder : str or os.PathLike
        Where the sources go; created if missing, with any missing parents (and
        those removed again on failure).
    format : {"wav", "flac"}
        Output format: 32-bit float WAV (the sources sum to the input exactly)
        or 24-bit FLAC.
    figure : callable or None
        ``figure(spectra, sr, hop_length, n_fft) -> bytes`` renders a picture of
        the separation from pooled power spectrograms (:class:`SpectraSummary`),
        saved as ``folder/separation.png`` with the sources.
    report : callable or None
        ``report(separation) -> dict of str -> bytes``: files named relative to
        ``folder`` (a web page, say: :mod:`audionmf.report`), made from a
        :class:`Separation` once the sources are written and committed with
        them, all or none.
    progress : callable or None
        ``progress(done_frames, total_frames)`` after each block.
    limits : audionmf.limits.Limits or None
        How much is held in memory at once.
    spell : callable
        How messages name an option (the command line passes its own).
    **options
        Those of :func:`separate`.

    Returns
    -------
    written : dict of str -> str
        Source name -> file written.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> written = separate_file("audio_samples/drums_organ_bass.flac", folder, two_stems="drums")
    >>> sorted(os.path.basename(path) for path in written.values())
    ['drums.wav', 'no_drums.wav']
    """
    started = time.perf_counter()
    formats = [extension[1:] for extension in WRITE_FORMATS]
    if not isinstance(format, str) or format.lower() not in formats:
        raise ParameterError(f"format={format!r}: expected {' or '.join(map(repr, formats))}")
    format = format.lower()
    with Signal.open(path) as signal:
        mode = configure(signal.sr, options, limits, spell)
        n_fft = mode.analysis.stft.n_fft
        if signal.n_samples < n_fft:
            raise ParameterError(f"{signal.name}: too short: {signal.n_samples} samples, "
                                 f"need at least n_fft={n_fft}")
        folder = os.fspath(folder)
        targets = {name: os.path.join(folder, f"{name}.{format}") for name in mode.names}
        picture = os.path.join(folder, "separation.png")
        inputs = _files_read(path, mode, options, spell)
        files = [os.path.join(folder, name) for name in mode.file_names(options)]  # (a melody)
        for target in list(targets.values()) + files + ([picture] if figure is not None else []):
            _check_not_an_input(target, inputs, signal.name)
            check_name_fits(target)  # before the first sample is read
        created = missing_folders(folder)
        try:
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError as exc:
                raise AudioError(f"{folder}: cannot create folder ({exc.strerror or exc})") from None
            with OutputFiles(list(targets.values()), signal.sr, signal.n_channels) as files:
                wanted = figure is not None or report is not None
                summary = SpectraSummary(mode, signal) if wanted else None
                seen = {}
                _blocks.run(signal, mode, files.write, summary=summary, progress=progress,
                            inspect=(lambda _, fitted: seen.update(fitted=fitted)) if report is not None else None)
                extra = ([(picture, figure(summary.spectra(), signal.sr, summary.hop_length, n_fft,
                                           **mode.picture()))]
                         if figure is not None else [])
                extra += _report_files(mode.files(), folder, inputs, signal.name)
                if report is not None:
                    done = Separation(os.fspath(path), folder, signal, mode, seen["fitted"], summary,
                                      dict(targets), time.perf_counter() - started)
                    extra += _report_files(report(done), folder, inputs, signal.name)
                files.commit(extra)
        except BaseException:  # an error or an interrupt: no empty folder of ours stays behind
            remove_empty_folders(created)
            raise
    return targets


def _report_files(made, folder, inputs, name):
    """The ``(path, bytes)`` of a report's files, none of them an input (:func:`_files_read`)."""
    extra = []
    for relative, data in made.items():
        target = os.path.join(folder, relative)
        _check_not_an_input(target, inputs, name)
        extra.append((target, data))
    return extra


def _files_read(path, mode, options, spell):
    """What a separation of ``path`` reads, as (what it is, path): the input, and the
    files its mode's options name (a noise sample, a melody, models given by path)."""
    inputs = [("the input file", path)]
    for option in mode.options:
        value = options.get(option.name)
        for item in value if option.repeat and isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, (str, os.PathLike)):
                inputs.append((f"the {spell(option.name)} file", item))
    return inputs


def _check_not_an_input(target, inputs, name):
    """Refuse an output that would replace a file the separation reads."""
    for what, path in inputs:
        if _same_file(target, path):
            raise AudioError(f"{name}: output {target} is {what}; choose another folder")


def _same_file(a, b):
    """Whether two paths name one existing file (through links too)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # either does not exist
        return False

"""Blind source separation: factorize, group components into sources, mask, resynthesize.

The pipeline, for a signal ``y`` of shape (n_samples,) or (n_channels, n_samples):

1. ``X = stft(y)`` per channel; ``V = sum over channels of |X| ** power``
   (one factorization serves every channel);
2. ``V ~= W @ H`` with :func:`audionmf.nmf`;
3. the K components are grouped into N sources (:func:`group_components`);
4. soft masks ``M_s = (W_s H_s)**p / sum_j (W_j H_j)**p`` (:func:`wiener_masks`)
   are applied to each channel's complex STFT and inverted.

Steps 4 and, for long signals, 2 go a block of frames at a time (see
:func:`separate` and :func:`separate_file`), so memory does not grow with the
length of the signal.

Because the masks sum to one and the inverse STFT is linear, the sources sum
back to the input; the round-off of the single-precision transforms and masks
(about 1e-7 of the signal's level) is shared equally among the sources, so the
sum is exact to the precision of the input.
"""
import os

import numpy as np

from ._validation import (
    MAX_SAMPLE,
    AudioError,
    ParameterError,
    beta_to_float,
    check_audio,
    check_nonnegative_real,
    check_positive_int,
    check_spectrogram_power,
)
from .drums import HPSS_KERNEL
from .grouping import (
    _by_energy,
    _fill_empty_groups,
    check_feature_weight,
    group_components,
    labels_from_groups,
    percussive_share,
)
from .io import OutputFiles, Signal, missing_folders, remove_empty_folders
from ._threads import serial_blas as _serial_blas
from .nmf import nmf
from .spectrogram import (
    OverlapAdd,
    STFTParams,
    frame_span,
    stack_frames,
    stft_frames,
    unstack_frames,
)

__all__ = ["separate", "separate_file", "SpectraSummary", "wiener_masks", "assign_by_masks",
           "default_power"]


def default_power(beta):
    """Spectrogram exponent that suits a divergence.

    Magnitude (1) for beta > 0, which includes Kullback-Leibler and Euclidean;
    power (2) for beta <= 0, which includes Itakura-Saito, whose scale
    invariance matches the statistics of a power spectrogram
    (Févotte, Bertin & Durrieu 2009, doi:10.1162/neco.2008.04-08-771).
    """
    return 2.0 if beta_to_float(beta) <= 0 else 1.0


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
):
    """Separate a signal into sources, blindly or with learned source models.

    Blind (``models=None``): the K components are grouped into ``n_sources``
    sources by :func:`group_components`. With ``models``: their templates are
    held fixed and only the activations are estimated (supervised NMF), plus
    ``free_components`` templates learned on the mixture itself, which form
    an extra source named ``"residual"`` (semi-supervised NMF).

    Parameters
    ----------
    y : np.ndarray [shape=(n_samples,) or (n_channels, n_samples)]
        Finite, not silent, at least one STFT frame long.
    sr : int
        Sampling rate in Hz.
    n_sources : int or None
        N, the number of sources of a blind separation; default 2.
    models : list of SourceModel, optional
        One model per source, learned with the same analysis parameters. For
        a mixture at another sampling rate the STFT keeps the models' frame
        and hop durations and the templates are interpolated onto its bins
        (up to the lower Nyquist frequency; above it, masks repeat the top
        bin's), so the mixture is analysed and resynthesized at its own rate.
    free_components : int
        With ``models``: templates learned on the mixture for ``"residual"``.
    n_components : int or None
        Blind only: K, components in all; default ``8 * n_sources`` (those of
        the fit that is grouped; a refinement fits twice as many, see
        ``rhythm_weight``).
    groups : list of lists of int, optional
        Blind only: the components of each source, chosen by hand instead of
        by :func:`group_components`, e.g. ``[[0, 3, 5], [1, 2, 4]]`` after
        looking at the components that :func:`audionmf.decompose` (or
        ``audionmf plot``) finds with the same ``n_components``, analysis
        options and ``random_state``: they are the ones fitted here (for
        signals the fit takes whole; a longer one is refused, see Notes).
        Sources are numbered in the order of the groups; ``n_sources``, if
        given, must agree.
    two_stems : {"drums"} or None
        Split into ``"drums"`` and ``"no_drums"``, blindly, with generic drum
        templates that ship with the package against harmonic combs, blended
        with an HPSS mask (see :mod:`audionmf.drums`). The analysis is the drum
        model's; ``n_sources``, ``models`` and ``groups`` do not apply.
    beta : float or {"kl", "is", "euclidean"} or None
        Divergence; default "kl", or the models'.
    power : float or None
        Spectrogram exponent, in (0, 2]; default :func:`default_power` (beta), or the
        models'.
    n_fft, hop_length, window
        STFT parameters; default 2048, ``n_fft // 4``, "hann", or the models'.
    mask_power : float or None
        Exponent p of the soft masks; 2 gives Wiener-like masks, larger values
        harder masks. Default 2, but 3 with ``two_stems`` (see
        :data:`TWO_STEMS_MASK_POWER`).
    max_iter : int or None
        Most NMF iterations; default 200, but 60 with ``two_stems`` and 50 with
        models and no free components: with every template fixed the
        activations settle sooner (on the corpus, 200 iterations changed the
        SDR by 0.04 and at most 0.25 dB respectively, at 3-4 times the cost).
    tol, init, sparsity, random_state, callback
        Passed to :func:`audionmf.nmf` (``sparsity`` penalizes the activations).
    rhythm_weight : float or None
        Blind only (refused with ``groups``, ``models`` or ``two_stems``,
        which decide the sources themselves): weight of activation rhythm
        beside template timbre when grouping components (see
        :func:`group_components`).
        Default: :data:`RHYTHM_WEIGHT` (2.5) if at least
        :data:`RHYTHM_ABOVE_PERCUSSIVE_SHARE` (6%) of the mixture's energy is
        percussive (:func:`percussive_share`, on the spectrogram the
        factorization is fitted on), else 0. At 0, the grouping is the one
        for sustained notes: timbre and how notes start
        (:data:`ATTACK_WEIGHT`), then, where the mixture is plainly sustained
        (:data:`REFINE_BELOW_PERCUSSIVE_SHARE`), refined: a second fit with
        :data:`REFINE_COMPONENTS` times the components, each given to a source
        by the masks of the first (:func:`assign_by_masks`); the ``callback``
        then sees both fits. On a spectrogram larger than
        :data:`REFINE_VALUES` the second fit is of stretches of it, and its
        templates then give the activations of every frame (a third fit,
        templates fixed, that the ``callback`` does not see).

    Returns
    -------
    sources : dict of str -> np.ndarray
        Blind: ``"source1"`` ... ``"sourceN"``, loudest first (with ``groups``,
        in their order). With models: the models' names, then ``"residual"`` if
        ``free_components``. With ``two_stems="drums"``: ``"drums"``, ``"no_drums"``. Each
        has the shape and dtype of ``y``; together they sum to ``y``.

    Notes
    -----
    Long signals cost memory in proportion to a block, not to their length:
    the factorization is fitted on the whole spectrogram up to
    :data:`FIT_VALUES` values (about 3 minutes of 44.1 kHz audio), and on
    excerpts spread evenly over longer signals, whose activations are then
    estimated a block at a time with the templates fixed. Masks and the
    inverse STFT always go a block at a time; block boundaries change nothing.
    :func:`separate_file` does the same from file to file.

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
    plan = _plan(sr, n_sources=n_sources, models=models, free_components=free_components,
                 n_components=n_components, groups=groups, two_stems=two_stems, beta=beta,
                 power=power, n_fft=n_fft,
                 hop_length=hop_length, window=window, mask_power=mask_power, max_iter=max_iter,
                 tol=tol, init=init, sparsity=sparsity, rhythm_weight=rhythm_weight,
                 random_state=random_state, callback=callback)
    if y.shape[-1] < plan.params.n_fft:
        raise ParameterError(f"too short: {y.shape[-1]} samples, need at least n_fft={plan.params.n_fft}")
    if not np.any(y):
        raise ParameterError("the audio is silent: there is nothing to separate")
    out = np.empty((len(plan.names), *y.shape), dtype=y.dtype)
    position = [0] * len(plan.names)

    def write(index, samples):
        n = samples.shape[-1]
        out[index, ..., position[index] : position[index] + n] = samples.reshape(*y.shape[:-1], n)
        position[index] += n

    _run(Signal(np.asarray(y, dtype=np.float64), sr), plan, write)
    return dict(zip(plan.names, out))


def separate_file(path, folder, *, format="wav", figure=None, progress=None, **options):
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
    progress : callable or None
        ``progress(done_frames, total_frames)`` after each block.
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
    if not isinstance(format, str) or format.lower() not in ("wav", "flac"):
        raise ParameterError(f"format={format!r}: expected 'wav' or 'flac'")
    format = format.lower()
    with Signal.open(path) as signal:
        plan = _plan(**{**options, "sr": signal.sr})
        if signal.n_samples < plan.params.n_fft:
            raise ParameterError(f"{signal.name}: too short: {signal.n_samples} samples, "
                                 f"need at least n_fft={plan.params.n_fft}")
        folder = os.fspath(folder)
        targets = {name: os.path.join(folder, f"{name}.{format}") for name in plan.names}
        picture = os.path.join(folder, "separation.png")
        for target in list(targets.values()) + ([picture] if figure is not None else []):
            if _same_file(target, path):
                raise AudioError(f"{signal.name}: output {target} is the input file; "
                                 "choose another folder")
        created = missing_folders(folder)
        try:
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError as exc:
                raise AudioError(f"{folder}: cannot create folder ({exc.strerror or exc})") from None
            with OutputFiles(list(targets.values()), signal.sr, signal.n_channels) as files:
                summary = SpectraSummary(plan, signal) if figure is not None else None
                _run(signal, plan, files.write, summary=summary, progress=progress)
                pictures = ([(picture, figure(summary.spectra(), signal.sr, summary.hop_length,
                                              plan.params.n_fft))]
                            if figure is not None else [])
                files.commit(pictures)
        except BaseException:  # an error or an interrupt: no empty folder of ours stays behind
            remove_empty_folders(created)
            raise
    return targets


def _same_file(a, b):
    """Whether two paths name one existing file (through links too)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # either does not exist
        return False


#: Spectrogram values per block when a signal is masked and resynthesized: about
#: 2**20 (for 1025 bins, a thousand frames: 8 MB of complex64 per channel and source).
BLOCK_VALUES = 2**20
#: Most spectrogram values the factorization is fitted on at once (64 MB of
#: float32). A longer signal is fitted on excerpts spread evenly over it, and
#: its activations are then estimated block by block with the templates fixed.
FIT_VALUES = 2**24
#: Frames per excerpt of a long signal (6 s at 22.05 kHz with hop 512).
EXCERPT_FRAMES = 256


#: Templates learned on the mixture itself take the plain multiplicative steps: those
#: of the blind fit (components grouped into sources, or by hand) and the free ones
#: beside models. Over-relaxed steps reach a lower loss in the same iterations, but what
#: follows is sensitive to where the fit settles. On bench-dev, blind: mean SDR 2.69 to
#: 0.18 dB on speech_music (4.92 to 5.72 on two_instruments, 1.81 to 1.99 on
#: drums_harmonic); one model and 16 free templates (seeds 0, 1, 2): piano model on
#: two_instruments 11.0 to 7.9-9.1, harmonic model on drums_harmonic 4.5-4.7 to 4.1-4.3,
#: speech model on speech_music 7.5-7.7 to 7.7-7.9. So the measured default stays.
MIXTURE_OVER_RELAXATION = 1.0


#: Blind grouping weighs how components move over time (:func:`activation_features`)
#: beside their timbre with this weight when the mixture is percussive enough: at least
#: this share of its energy in the percussive part (:func:`percussive_share`). Rhythm
#: helps where something is struck or spoken and harms sustained notes, which timbre
#: alone groups right: on bench-dev, weight 2.5 against timbre alone took the mean SDR
#: from 1.26 to 5.75 dB on speech_music and from 2.58 to 3.64 on drums_harmonic, but
#: from 5.43 to 0.90 on two_instruments (flute over piano). The percussive share of
#: those mixtures is 0.13-0.40, 0.15-0.53 and 0.010-0.025: the threshold lies between
#: the classes.
#: On 18 mixtures of the corpus's training clips (benchmarks/blind_heldout.py), sustained
#: ones scored 0.011-0.035 and struck or spoken ones 0.13-0.34, and the rule picked the
#: better of the two weights for 17. Weights 2 and 3 did about equally well; 1.5 lost
#: about 1.5 dB on drums_harmonic (mean of 3 seeds).
RHYTHM_WEIGHT = 2.5
RHYTHM_ABOVE_PERCUSSIVE_SHARE = 0.06

#: Where rhythm does not count (sustained notes), blind grouping weighs how notes start
#: and end (:func:`attack_asymmetry`: struck and plucked notes jump up and fade, blown
#: and bowed ones swell and stop) beside timbre with this weight, and then refines: see
#: :data:`REFINE_COMPONENTS`. On bench-dev two_instruments (flute over piano), mean SDR
#: over 5 seeds 4.8 dB by timbre alone, 7.1 / 7.3 / 7.0 with weight 1 / 1.5 / 2 (and
#: the refinement); on the 9 sustained mixtures of benchmarks/blind_heldout.py it costs
#: a little: 12.5 dB with both (3 seeds), 12.9 with the refinement alone (3 seeds, in
#: an experiment that seeded the finer fit on its own).
ATTACK_WEIGHT = 1.5
#: The refinement of sustained-note grouping: a second factorization of the same
#: spectrogram with this many times the components, finer (single notes rather than
#: groups of them), each given to the source whose soft mask, from the first fit and its
#: grouping, keeps the largest share of it (:func:`assign_by_masks`). It is the finer
#: model that pays: on two_instruments the true grouping of 16 components gives 7.0 dB
#: and of 32 11.4, but clustering 32 directly went wrong on held-out mixtures (every
#: clusterer tried lost 1-4 dB on one of them), while refining took the mean SDR from
#: 4.8 to 6.3 dB (7.3 with :data:`ATTACK_WEIGHT`), and on the sustained held-out
#: mixtures from 10.8 to 12.9; 1.5 and 3 times the components did worse (4.7, 6.7 dB on
#: two_instruments, one seed; 7.3 for 2). On struck or spoken mixtures (where rhythm
#: counts) it lost 0.6 dB on speech_music, so it is left out there. Unlike the first
#: fit, the finer one takes nmf's over-relaxed steps: what matters here is how well it
#: fits, not how its components cluster (plain steps: 7.07 against 7.25 dB on
#: two_instruments, 5 seeds, and 11.5 against 12.7 on the sustained held-out mixtures, 2
#: seeds).
REFINE_COMPONENTS = 2
#: The refinement's finer fit is fitted on at most this many values (about 47 s of 44.1
#: kHz audio, 95 s at 22.05 kHz, with the default n_fft and hop): on a whole spectrogram
#: it costs about 2.5 times the first fit (the finer one needs its 200 iterations: 60 or
#: 100 lost 0.6-1.3 dB). A larger spectrogram gives it evenly spread stretches of
#: :data:`EXCERPT_FRAMES` frames that hold sound (:func:`_refined_frames`), so the finer
#: fit costs no more than on 47 s; its templates then give the activations of all the
#: frames (a fit with the templates fixed, block by block, which grows with the length as
#: the rest of the separation does; on a file fitted on excerpts, the blocks' activations
#: have twice the components). Measured on long sustained mixtures of bench-dev's clips at
#: 22.05 kHz, without the refinement and with it on stretches: flute over piano, organ and
#: bass, and music, 130 s, 7.21 -> 7.96 dB (5 seeds; the whole spectrogram refined: 7.94,
#: 2 seeds); the same tiled to 3 minutes, stereo, 7.74 -> 8.14 (3 seeds), 3.5 -> 6.6 s;
#: flute over organ and bass and music tiled to 120 s, 4.43 -> 4.49 (5 seeds); tiled to 10
#: minutes (fitted on excerpts), 3.49 -> 3.56, 11.6 -> 12.3 s. The same 3-minute song at
#: 44.1 kHz, refined by force (its percussive share, 0.042, is above the threshold below),
#: lost 0.6 dB (0.17 -> -0.5: its grouping fails there), in 10.8 s instead of 7.8.
REFINE_VALUES = 2**22
#: ... and on mixtures plainly of sustained notes: a percussive share
#: (:func:`percussive_share`) under this. It was measured on such mixtures only (their
#: shares 0.010-0.035), and a finer fit can let a steady tone's component take in the
#: hits that cross its frequencies: on the tone-and-clicks test signal (share 0.054)
#: the clicks came out with a relative error of 0.46 instead of 0.19.
REFINE_BELOW_PERCUSSIVE_SHARE = 0.04


#: The mask exponent of ``separate(two_stems=...)``. Harder masks than Wiener's keep more
#: of the drums' low ring out of the quieter part: on drums_harmonic, mean SDR 8.68 /
#: 8.83 / 8.92 / 8.97 / 9.02 / 9.01 for p = 1.5 / 2 / 2.5 / 3 / 4 / 6 (SIR 14.3 -> 14.9,
#: SAR 10.8 -> 10.7 from 2 to 3): 3 is within the plateau, with the least artifacts.
TWO_STEMS_MASK_POWER = 3.0


def default_max_iter(two_stems=None, models=False, free_components=0):
    """Most NMF iterations of :func:`separate` when ``max_iter`` is None: 200
    when templates are learned, fewer when they are all fixed (60 with
    ``two_stems``, 50 with models and no free components)."""
    if two_stems is not None:
        return 60
    return 50 if models and not free_components else 200


class _Plan:
    """Everything the separation of one signal needs to know, checked."""

    def __init__(self, **fields):
        self.__dict__.update(fields)


def _plan(sr, *, n_sources=None, models=None, free_components=0, n_components=None, groups=None,
          two_stems=None, beta=None, power=None, n_fft=None, hop_length=None, window=None,
          mask_power=None, max_iter=None, tol=1e-4, init=None, sparsity=0.0, rhythm_weight=None,
          random_state=None, callback=None):
    """Check the arguments of :func:`separate` and gather what its steps need."""
    if mask_power is None:
        mask_power = 2.0 if two_stems is None else TWO_STEMS_MASK_POWER
    mask_power = check_nonnegative_real(mask_power, "mask_power", allow_zero=False)
    if rhythm_weight is not None:
        rhythm_weight = check_feature_weight(rhythm_weight, "rhythm_weight")
    if max_iter is None:
        max_iter = default_max_iter(two_stems, models is not None, free_components)
    max_iter = check_positive_int(max_iter, "max_iter")
    sr = check_positive_int(sr, "sr")
    fixed, labels, hpss, short_rows = None, None, False, None
    if two_stems is not None:
        given = {"models": models, "groups": groups, "n_sources": n_sources,
                 "n_components": n_components}
        given = [name for name, value in given.items() if value is not None]
        given += ["free_components"] if free_components else []
        given += ["rhythm_weight"] if rhythm_weight is not None else []
        if given:
            raise ParameterError(f"two_stems cannot be used with {', '.join(given)}: "
                                 "its drum templates decide the sources")
        from .drums import two_stems_dictionary

        templates, labels, names, model, short_rows = two_stems_dictionary(two_stems)
        names = list(names)
        analysis = _analysis_from_models([model], beta, power, n_fft, hop_length, window)
        fixed = _templates_at_rate(templates, analysis, sr)
        hpss = True
    elif models is not None:
        if groups is not None:
            raise ParameterError("groups cannot be used with models: the models are the groups")
        if rhythm_weight is not None:
            raise ParameterError("rhythm_weight cannot be used with models: the models are the groups")
        if n_sources is not None or n_components is not None:
            given = ", ".join(name for name, value in (("n_sources", n_sources), ("n_components", n_components))
                              if value is not None)
            raise ParameterError(f"{given} cannot be used with models: the models decide the sources "
                                 "and their templates (free_components adds templates)")
        analysis = _analysis_from_models(models, beta, power, n_fft, hop_length, window)
        free_components = check_positive_int(free_components, "free_components", minimum=0)
        names = [m.name for m in models] + (["residual"] if free_components else [])
        fixed = _templates_at_rate(np.hstack([m.templates for m in models]), analysis, sr)
        labels = np.repeat(np.arange(len(names)),
                           [m.n_components for m in models] + ([free_components] if free_components else []))
    else:
        if free_components:
            raise ParameterError("free_components needs models")
        analysis = _analysis_from_arguments(sr, beta, power, n_fft, hop_length, window)
        if groups is not None:
            labels = labels_from_groups(groups, n_components)
            if n_sources is not None and n_sources != labels.max() + 1:
                raise ParameterError(f"n_sources={n_sources} but {labels.max() + 1} groups")
            if rhythm_weight is not None:
                raise ParameterError("rhythm_weight cannot be used with groups: the groups are given")
            n_sources, n_components = int(labels.max()) + 1, len(labels)
        n_sources = check_positive_int(2 if n_sources is None else n_sources, "n_sources")
        n_components = 8 * n_sources if n_components is None else n_components
        n_components = check_positive_int(n_components, "n_components")
        if n_components < n_sources:
            raise ParameterError(
                f"n_components={n_components} is smaller than n_sources={n_sources}: "
                "each source needs at least one component"
            )
        names = [f"source{i + 1}" for i in range(n_sources)]
    params = _params_at_rate(analysis["params"], analysis["sr"], sr)
    n_freq = params.n_fft // 2 + 1
    context = analysis.get("context", 0)
    n_rows = n_freq if fixed is None else fixed.shape[0] // (2 * context + 1)
    pool = fit_templates = None
    short_width = 0
    if short_rows is not None:
        from .drums import SHORT_NOTE_SECONDS

        short_width = max(1, int(round(SHORT_NOTE_SECONDS * sr / params.hop_length)))
    if hpss:
        # Fit and HPSS on bins above 2 kHz summed in narrow bands; masks at full resolution.
        from .drums import band_pooling

        pool = band_pooling(n_rows, sr=sr, n_fft=params.n_fft)
        # Single-threaded, like the product in _spectrogram, since a fit follows: after a
        # multi-threaded product OpenBLAS's idle workers spin for about 0.1 s, taking a
        # core from the fit (a 10 s two-stems separation took 20% longer).
        with _serial_blas():
            fit_templates = np.vstack([pool @ block for block in np.split(fixed, 2 * context + 1)])
    return _Plan(
        sr=sr, params=params, beta=analysis["beta"], power=analysis["power"], context=context,
        names=names, labels=labels, fixed=fixed, n_rows=n_rows, pool=pool,
        fit_templates=fixed if fit_templates is None else fit_templates, hpss=hpss,
        short_rows=short_rows, short_width=short_width,
        n_free=free_components if models is not None else 0,
        n_components=n_components if fixed is None else None, n_sources=len(names),
        mask_power=mask_power, rhythm_weight=rhythm_weight, init=init,
        fit=dict(beta=analysis["beta"], max_iter=max_iter, tol=tol, sparsity=sparsity),
        rng=np.random.default_rng(random_state), callback=callback,
    )


def _templates_at_rate(W, analysis, sr):
    """Templates of an analysis on the STFT grid of a signal at rate ``sr``.

    At the models' own rate they are returned as they are. At another rate the
    STFT keeps the models' frame and hop durations, so its bins are (nearly) the
    models' frequencies; each template is interpolated onto the bins up to the
    lower of the two Nyquist frequencies, which are the rows the analysis
    uses. No resampling: the signal is analysed and resynthesized at its own rate.
    """
    W = np.asarray(W, dtype=np.float32)
    params, model_sr, context = analysis["params"], analysis["sr"], analysis.get("context", 0)
    if model_sr == sr:
        return W
    out = _params_at_rate(params, model_sr, sr)
    model_freqs = np.arange(params.n_fft // 2 + 1) * model_sr / params.n_fft
    freqs = np.arange(out.n_fft // 2 + 1) * sr / out.n_fft
    freqs = freqs[freqs <= model_freqs[-1]]
    n_model = len(model_freqs)
    blocks = [
        np.stack([np.interp(freqs, model_freqs, column) for column in W[i * n_model : (i + 1) * n_model].T],
                 axis=1)
        for i in range(2 * context + 1)
    ]
    return np.ascontiguousarray(np.vstack(blocks), dtype=np.float32)


def _run(signal, plan, write, *, summary=None, progress=None):
    """Separate ``signal`` (an :class:`audionmf.io.Signal`), a block at a time.

    Calls ``write(source_index, samples)`` with consecutive pieces of each
    source, shape (n_channels, n_samples_piece), which together are the
    sources of :func:`separate`.

    1. Learn: fit the factorization on the spectrogram of the whole signal or,
       when it is longer than :data:`FIT_VALUES` allows, of evenly spread
       excerpts; group the components into sources.
    2. For each block of :data:`BLOCK_VALUES`: its activations (those of the fit,
       or estimated with the templates fixed), soft masks, masked STFT, and the
       part of the inverse STFT that no later frame changes.
    3. The sources' round-off against the input is shared among them, so they
       sum to the input exactly.
    """
    params, c = plan.params, plan.context
    n_frames = 1 + signal.n_samples // params.hop_length
    n_freq = params.n_fft // 2 + 1
    height = (plan.n_rows if plan.pool is None else plan.pool.shape[0]) * (2 * c + 1)
    whole = n_frames * height <= FIT_VALUES
    W, H, labels = _learn(signal, plan, n_frames, whole)
    # Two stems: the low combs that play short notes only (decided once, on the
    # activations of the whole signal or of its excerpts) give those notes to the drums.
    short_rows = None
    if plan.short_rows is not None:
        short_rows = _drum_like_combs(H, plan)
        if whole:
            W, H, labels = _short_notes_to_drums(W, H, labels, short_rows, plan.short_width)
            short_rows = None
        else:
            H = None  # those of the excerpts

    # Frames beyond a block that its masks depend on: the activations' context, and
    # the short-note opening's (its value at a frame depends on frames up to
    # short_width - 1 away); their own, when estimated here; and the HPSS median
    # filter's reach.
    spread = c + (plan.short_width - 1 if short_rows is not None else 0)
    block = max(8 * spread + 8, BLOCK_VALUES // n_freq)
    reach = max(0 if whole else spread + c, HPSS_KERNEL // 2 if plan.hpss else 0)
    n_sources, n_channels = len(plan.names), signal.n_channels
    inverse = OverlapAdd(params, signal.n_samples, (n_sources, n_channels))
    done = 0  # samples written of every source
    heard = False
    for t0 in range(0, n_frames, block):
        t1 = min(n_frames, t0 + block)
        h0, h1 = max(0, t0 - spread), min(n_frames, t1 + spread)  # activations the masks of t0..t1 use
        v0, v1 = max(0, t0 - reach), min(n_frames, t1 + reach)  # frames transformed
        first, end = frame_span(v0, v1, params)
        segment = signal.read(first, end)
        heard = heard or bool(np.any(segment))
        X = _stft(segment, params)
        if whole:
            H_block = H[:, h0:h1]
        else:
            a, b = max(0, h0 - c), min(n_frames, h1 + c)
            V = _spectrogram(X[..., a - v0 : b - v0], plan)[:, h0 - a : h1 - a]
            H_block = _activations(V, plan.fit_templates if plan.fixed is not None and not plan.n_free
                                   else W, plan)
        if short_rows is not None:
            masks = wiener_masks(*_short_notes_to_drums(W, H_block, labels, short_rows, plan.short_width),
                                 mask_power=plan.mask_power, context=c)
        else:
            masks = wiener_masks(W, H_block, labels, mask_power=plan.mask_power, context=c)
        masks = masks[:, :, t0 - h0 : t1 - h0]
        if plan.hpss:
            masks = _blend_with_hpss(masks, X, t0 - v0, t1 - v0, plan)
        X = X[..., t0 - v0 : t1 - v0]
        if plan.n_rows < n_freq:  # above the models' band: the top band's shares
            masks = np.concatenate(
                [masks, np.repeat(masks[:, -1:], n_freq - plan.n_rows, axis=1)], axis=1)
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
            start = done - first
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


def _spectrogram(X, plan, context=None):
    """Stacked spectrogram of an STFT block (float32): channels summed, the rows
    of the analysis (pooled in bands if the plan says so), ``context`` frames
    (default: the plan's) stacked on each side."""
    V = np.abs(X[..., : plan.n_rows, :]) ** plan.power
    if V.ndim == 3:
        V = V.sum(axis=0)
    if plan.pool is not None:
        with _serial_blas():  # a fit follows
            V = plan.pool @ V
    return stack_frames(V.astype(np.float32, copy=False), plan.context if context is None else context)


def _drum_like_combs(H, plan):
    """The low combs (of ``plan.short_rows``) that :func:`~audionmf.drums.short_note_part`
    finds playing short notes only in activations ``H``."""
    from .drums import short_note_part

    rows = plan.short_rows
    return rows[short_note_part(H[rows], plan.short_width).any(axis=1)]


def _short_notes_to_drums(W, H, labels, rows, width):
    """Templates, activations and labels with the short notes of combs ``rows`` as drums.

    Each of those combs gets a twin labelled drums that takes its notes
    shorter than ``width`` frames; the comb keeps the rest.
    """
    from .drums import short_note_part

    H = np.array(H, dtype=np.float64)
    short = short_note_part(H[rows], width, share=0.0)
    H[rows] -= short
    drums = np.zeros(len(rows), dtype=np.asarray(labels).dtype)
    return np.hstack([W, W[:, rows]]), np.vstack([H, short]), np.concatenate([labels, drums])


def _blend_with_hpss(masks, X, t0, t1, plan):
    """Two-stems masks with the first (drums) blended with the HPSS percussive mask.

    ``X`` holds frames reaching :data:`HPSS_KERNEL` // 2 beyond ``t0 .. t1`` on
    each side (or to the signal's edge), so the median filters see what they
    would see on the whole signal.
    """
    from .drums import blend_masks, hpss_mask

    A = np.abs(X[..., : plan.n_rows, :])
    if A.ndim == 3:
        A = A.sum(axis=0)
    percussive = plan.pool.T @ hpss_mask(plan.pool @ A, HPSS_KERNEL)[:, t0:t1]
    drums = blend_masks(masks[0], percussive)
    return np.stack([drums, 1.0 - drums])


def _stft(segment, params):
    """STFT frames of a segment, in single precision (complex64).

    The sources are written in single precision, and their spectra need no
    more: a 3-minute stereo song at 44.1 kHz spent 0.7 s less in its transforms
    and masks than in double (2.6 -> 1.9 s), and its sources still sum to the
    input exactly (the round-off is shared out in :func:`_run`). Samples are at
    most :data:`audionmf._validation.MAX_SAMPLE`, so no spectrum overflows (for
    power <= 2).
    """
    return stft_frames(segment.astype(np.float32), params)


def _power(signal, plan, t0, t1):
    """Unstacked spectrogram of frames t0 .. t1 - 1 of a signal (float32)."""
    X = _stft(signal.read(*frame_span(t0, t1, plan.params)), plan.params)
    return _spectrogram(X, plan, context=0)


def _learn(signal, plan, n_frames, whole):
    """Fit the factorization: templates W, labels of the components, and (``whole``) H.

    Without ``whole`` and with nothing to learn (models only), returns the
    models' templates and no activations; with two stems, the activations of
    the excerpts (for :func:`_drum_like_combs`).
    """
    params, c = plan.params, plan.context
    if not whole and plan.fixed is not None and not plan.n_free and plan.short_rows is None:
        return plan.fixed, None, plan.labels
    if whole:
        step = max(1, BLOCK_VALUES // plan.n_rows)
        V = np.concatenate([_power(signal, plan, t0, min(n_frames, t0 + step))
                            for t0 in range(0, n_frames, step)], axis=1)
        if not np.any(V):
            raise ParameterError(f"{signal.name}: silent: there is nothing to separate")
        V = stack_frames(V / V.max(), c)
    else:
        if plan.labels is not None and plan.fixed is None:
            raise ParameterError(
                f"{signal.name}: groups name the components of a fit of the whole file, and this "
                f"file is longer than one fit takes ({FIT_VALUES // (plan.n_rows * (2 * c + 1))} "
                "frames), so it is fitted on excerpts: separate it without groups, or in parts")
        height = plan.n_rows * (2 * c + 1)
        count = max(2, FIT_VALUES // (height * EXCERPT_FRAMES))
        starts = np.linspace(0, n_frames - EXCERPT_FRAMES, count).astype(int)
        def excerpts(starts):
            return np.concatenate([stack_frames(_power(signal, plan, t0, t0 + EXCERPT_FRAMES), c)
                                   for t0 in starts], axis=1)

        V = excerpts(starts)
        if not np.any(V):  # the sound falls between them: take the loudest stretches instead
            starts = _loudest_stretches(signal, plan.params.hop_length, n_frames, count)
            if not len(starts):
                raise ParameterError(f"{signal.name}: silent: there is nothing to separate")
            V = excerpts(starts)
        V /= V.max()
    fit = dict(plan.fit, random_state=plan.rng, callback=plan.callback)
    if plan.fixed is None:
        result = nmf(V, plan.n_components, init=plan.init, over_relaxation=MIXTURE_OVER_RELAXATION, **fit)
        labels = plan.labels
        if labels is None:
            weight, share = plan.rhythm_weight, None

            def percussive():
                return percussive_share(V[:plan.n_rows], sr=plan.sr, n_fft=params.n_fft,
                                        hop_length=params.hop_length, power=plan.power,
                                        stretch=EXCERPT_FRAMES)

            if weight is None:
                share = percussive()
                weight = RHYTHM_WEIGHT if share >= RHYTHM_ABOVE_PERCUSSIVE_SHARE else 0.0
            labels = group_components(result.W, result.H, plan.n_sources, sr=plan.sr,
                                      hop_length=params.hop_length, n_fft=params.n_fft,
                                      rhythm_weight=weight, attack_weight=0.0 if weight else ATTACK_WEIGHT,
                                      segment_frames=None if whole else EXCERPT_FRAMES,
                                      random_state=plan.rng)
            n_finer = REFINE_COMPONENTS * plan.n_components
            frames = _refined_frames(V) if not weight and plan.n_sources > 1 else ()
            if n_finer <= min(V.shape[0], len(frames)) and \
                    (share if share is not None else percussive()) < REFINE_BELOW_PERCUSSIVE_SHARE:
                # Over-relaxed steps here (nmf's default): see REFINE_COMPONENTS.
                all_frames = len(frames) == V.shape[1]
                finer = nmf(V if all_frames else V[:, frames], n_finer, init=plan.init, **fit)
                # A source that no finer component prefers still gets the one that leans its
                # way most (assign_by_masks). Keeping the first fit instead, in that case,
                # was tried: of the 27 mixtures of bench-dev and blind_heldout.py it arose in
                # one (flute + organ and bass), which it took from 2.68 to 1.51 dB.
                labels = assign_by_masks(finer.W, finer.H, result.W,
                                         result.H if all_frames else result.H[:, frames], labels,
                                         mask_power=plan.mask_power)
                if all_frames or not whole:
                    result = finer
                else:  # fitted on stretches: the activations of all frames, templates fixed
                    fit["callback"] = None  # (block by block, as in _activations)
                    result = nmf(V, n_finer, W=finer.W, update_W=False, **fit)
    elif not plan.n_free:  # nothing to learn: the activations of the whole signal
        # No progress callback: with one, nmf would sweep all frames per iteration and stop
        # on the whole matrix instead of block by block, so the result would depend on it.
        fit["callback"] = None
        result = nmf(V, plan.fixed.shape[1], W=plan.fit_templates, update_W=False, **fit)
        return plan.fixed, result.H, plan.labels  # (of the excerpts, if not whole)
    else:
        free = plan.rng.random((V.shape[0], plan.n_free)).astype(np.float32)
        W = np.hstack([plan.fixed, free / np.maximum(free.sum(axis=0), 1e-30)])
        update = np.r_[np.zeros(plan.fixed.shape[1], bool), np.ones(plan.n_free, bool)]
        result = nmf(V, W.shape[1], W=W, update_W=update, over_relaxation=MIXTURE_OVER_RELAXATION, **fit)
        labels = plan.labels
    return result.W, (result.H if whole else None), labels


def _refined_frames(V):
    """Frames of the spectrogram ``V`` that the refinement's finer fit is fitted on.

    All of them up to :data:`REFINE_VALUES` values; else as many stretches of
    :data:`EXCERPT_FRAMES` frames as fit in that many values, spread evenly over
    the stretches that hold any sound (aligned on multiples of EXCERPT_FRAMES, so
    that on a spectrogram of excerpts they are excerpts); none (no refinement)
    where not even one stretch fits or none holds sound.
    """
    n_rows, n_frames = V.shape
    if V.size <= REFINE_VALUES:
        return np.arange(n_frames)
    count = REFINE_VALUES // (n_rows * EXCERPT_FRAMES)
    n_stretches = n_frames // EXCERPT_FRAMES
    heard = np.flatnonzero([np.any(V[:, i * EXCERPT_FRAMES:(i + 1) * EXCERPT_FRAMES])
                            for i in range(n_stretches)])
    if not count or not len(heard):
        return np.arange(0)
    chosen = heard[np.unique(np.linspace(0, len(heard) - 1, min(count, len(heard))).round().astype(int))]
    return (chosen[:, None] * EXCERPT_FRAMES + np.arange(EXCERPT_FRAMES)).ravel()


def _loudest_stretches(signal, hop_length, n_frames, count):
    """First frames of the ``count`` loudest stretches of :data:`EXCERPT_FRAMES`
    frames that hold any sound, in time order (one forward pass over the signal)."""
    width = EXCERPT_FRAMES * hop_length
    energy = np.array([np.sum(signal.read(t0 * hop_length, t0 * hop_length + width) ** 2)
                       for t0 in range(0, max(1, n_frames - EXCERPT_FRAMES + 1), EXCERPT_FRAMES)])
    loudest = np.sort(np.argsort(-energy, kind="stable")[:count])
    return loudest[energy[loudest] > 0] * EXCERPT_FRAMES


def _activations(V, W, plan):
    """Activations of a block with the templates fixed; zeros for a silent block."""
    if not np.any(V):
        return np.zeros((W.shape[1], V.shape[1]), dtype=np.float32)
    return nmf(V / V.max(), W.shape[1], W=W, update_W=False, **plan.fit).H


class SpectraSummary:
    """Power spectrograms of a mixture and its sources, pooled over time, built
    block by block: what a picture of an hour-long separation needs.

    At most ``max_columns`` columns: each is the mean power of consecutive frames.
    """

    def __init__(self, plan, signal, max_columns=1500):
        n_frames = 1 + signal.n_samples // plan.params.hop_length
        self.pool = -(-n_frames // max_columns)
        self.hop_length = plan.params.hop_length * self.pool
        self.names = ["mixture", *plan.names]
        n_freq = plan.params.n_fft // 2 + 1
        self.sums = np.zeros((len(self.names), n_freq, -(-n_frames // self.pool)))
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


def _analysis_from_arguments(sr, beta, power, n_fft, hop_length, window):
    """The analysis of a factorization without models: the arguments, or the defaults."""
    beta = beta_to_float("kl" if beta is None else beta)
    return {
        "sr": sr,
        "params": STFTParams(2048 if n_fft is None else n_fft, hop_length, window or "hann"),
        "beta": beta,
        "power": default_power(beta) if power is None else check_spectrogram_power(power),
        "context": 0,
    }


def _analysis_from_models(models, beta, power, n_fft, hop_length, window):
    """The analysis the models were learned with; explicit arguments must agree."""
    from .models import SourceModel, check_models

    models = list(models)
    if not models:
        raise ParameterError("models is empty")
    for m in models:
        if not isinstance(m, SourceModel):
            raise ParameterError(f"models must be SourceModel objects, got {type(m).__name__}")
    check_models(models)
    ref = models[0]
    given = {"beta": None if beta is None else beta_to_float(beta), "power": power,
             "n_fft": n_fft, "hop_length": hop_length, "window": window}
    for field, value in given.items():
        if value is not None and value != getattr(ref, field):
            raise ParameterError(
                f"{field}={value!r} differs from the models' {getattr(ref, field)!r}; "
                "the analysis must be the one the models were learned with"
            )
    return {"sr": ref.sr, "params": ref.stft_params, "beta": ref.beta, "power": ref.power,
            "context": ref.context}


def _params_at_rate(params, from_sr, to_sr):
    """The STFT with the same frame and hop durations at another sampling rate."""
    if from_sr == to_sr:
        return params
    ratio = to_sr / from_sr
    n_fft = max(2, int(round(params.n_fft * ratio)))
    return STFTParams(n_fft, max(1, min(n_fft, int(round(params.hop_length * ratio)))), params.window)


def wiener_masks(W, H, labels, *, mask_power=2.0, context=0):
    """Soft masks ``M_s = (W_s H_s)**p / sum_j (W_j H_j)**p``, one per source.

    Parameters
    ----------
    W : np.ndarray [shape=(n_freq * (2 * context + 1), K)]
    H : np.ndarray [shape=(K, n_frames)]
    labels : np.ndarray [shape=(K,), dtype=int]
        Source index (0 .. N-1) of each component; every source needs one.
    mask_power : float
        p.
    context : int
        For templates of stacked frames (:func:`audionmf.stack_frames`): each
        source's spectrogram is the average of its stacked predictions.

    Returns
    -------
    masks : np.ndarray [shape=(N, n_freq, n_frames), dtype=float64]
        Values in [0, 1], summing to 1 in every bin. Where every source model
        is zero the mass is shared equally.
    """
    labels = np.asarray(labels)
    n_sources = int(labels.max()) + 1
    missing = set(range(n_sources)) - set(labels.tolist())
    if missing:
        raise ParameterError(f"sources {sorted(missing)} have no component")
    W = np.asarray(W, dtype=np.float64)
    H = np.asarray(H, dtype=np.float64)
    n_freq = W.shape[0] // (2 * context + 1)
    models = np.stack([
        unstack_frames(W[:, labels == s] @ H[labels == s], n_freq, context) for s in range(n_sources)
    ])
    # Scale each bin by its largest model before the power: no overflow, no underflow.
    top = models.max(axis=0)
    np.divide(models, top, out=models, where=top > 0)
    models[:, top <= 0] = 1.0
    models **= mask_power
    models /= models.sum(axis=0)
    return models


def assign_by_masks(W, H, W_coarse, H_coarse, labels_coarse, *, mask_power=2.0):
    """Give the components of one factorization to the sources of another.

    Each component ``W[:, k] H[k]`` goes to the source whose soft mask (of the
    grouped factorization ``W_coarse``, ``H_coarse``, ``labels_coarse``, as
    :func:`wiener_masks` makes it) keeps the largest share of it (summed over
    the spectrogram's bins): a fit with more components than grouping can
    sort reliably, grouped by the sources of one with fewer. Both
    factorizations are of the same spectrogram. Sources keep their numbers,
    then are renumbered by decreasing energy of their part of ``W @ H``, as
    :func:`group_components` numbers them.

    Returns
    -------
    labels : np.ndarray [shape=(K,), dtype=int]
        Source index of each component; each source gets at least one
        (where no component has its largest share there, the one with the
        largest share there, taken from a source that has several).
    """
    W = np.asarray(W, dtype=np.float64)
    H = np.asarray(H, dtype=np.float64)
    labels_coarse = np.asarray(labels_coarse)
    mask_power = check_nonnegative_real(mask_power, "mask_power", allow_zero=False)
    if labels_coarse.shape != (np.shape(W_coarse)[1],):
        raise ParameterError(f"labels_coarse has {labels_coarse.size} labels for "
                             f"{np.shape(W_coarse)[1]} coarse components")
    n_sources = int(labels_coarse.max()) + 1
    if W.shape[1] < n_sources:
        raise ParameterError(f"cannot make {n_sources} sources from {W.shape[1]} components")
    if H.shape[1] != np.shape(H_coarse)[1] or W.shape[0] != np.shape(W_coarse)[0]:
        raise ParameterError(f"the factorizations are of different spectrograms: W {W.shape}, H "
                             f"{H.shape} and W {np.shape(W_coarse)}, H {np.shape(H_coarse)}")
    # kept[k, s]: the part of component k's spectrogram that source s's mask keeps,
    # summed a block of frames at a time (the masks of a long signal are large).
    kept = np.zeros((W.shape[1], n_sources))
    step = max(1, BLOCK_VALUES // W.shape[0])
    for t0 in range(0, H.shape[1], step):
        masks = wiener_masks(W_coarse, H_coarse[:, t0:t0 + step], labels_coarse, mask_power=mask_power)
        for s, mask in enumerate(masks):
            kept[:, s] += np.sum(W * (mask @ H[:, t0:t0 + step].T), axis=0)
    shares = kept / np.maximum(kept.sum(axis=1, keepdims=True), 1e-300)
    labels = _fill_empty_groups(shares.argmax(axis=1), shares)
    return _by_energy(W, H, labels, n_sources)

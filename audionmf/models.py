"""Source models: spectral templates learned from example recordings of one source.

A :class:`SourceModel` holds the templates of one source (for example "speech"
or "drums") together with every parameter needed to use them on a mixture:
sampling rate, STFT parameters, divergence and spectrogram exponent. Models are
saved as ``.npz`` files that load without pickle and are checked on loading.
"""
import io
import math
import numbers
import os
import stat
import unicodedata
import zipfile
from dataclasses import dataclass

import numpy as np

from ._validation import (
    MAX_COMPONENTS,
    ParameterError,
    beta_to_float,
    check_audio,
    check_nonnegative_real,
    check_path,
    check_positive_int,
    check_sample_rate,
    check_spectrogram_power,
)
from ._learning import (
    MAX_COPIES,
    check_semitones,
    check_tempos,
    factorize,
    model_pooling,
    shifted as _shifted,
    stretched,
)
from .analysis import Analysis
from .io import atomic_file, load, looks_like_audio
from .spectrogram import STFTParams, check_context, stack_frames, stft

__all__ = ["SourceModel", "ModelError", "FORMAT_VERSION", "check_models", "check_name", "model_pooling"]

#: Files of models learned in one factorization are written as version 1, which older
#: releases read; version 2 adds ``fits``.
FORMAT_VERSION = 2
_KIND = "audionmf.SourceModel"
#: A model file may not unpack to more than this (a crafted file cannot exhaust memory).
MAX_MODEL_BYTES = 256 * 1024**2
_FIELDS = ("kind", "format_version", "name", "templates", "sr", "n_fft", "hop_length",
           "window", "beta", "power", "context")
#: Fields a file may lack, and their value then (files written before they existed).
_OPTIONAL = {"fits": 1}


class ModelError(Exception):
    """A model file is missing, corrupt, foreign or inconsistent."""


#: The array kinds (numpy's dtype.kind) a model file's scalar fields may have: whole
#: numbers stay whole (a float sr of 22050.7 is not truncated), names are text.
_FIELD_KINDS = {"name": ("U", "text"), "window": ("U", "text"), "sr": ("iu", "a whole number"),
                "n_fft": ("iu", "a whole number"), "hop_length": ("iu", "a whole number"),
                "context": ("iu", "a whole number"), "fits": ("iu", "a whole number"),
                "beta": ("iuf", "a real number"),
                "power": ("iuf", "a real number")}


def _field_value(field, value):
    """The Python value of a model file's scalar field, or ParameterError naming it."""
    kinds, what = _FIELD_KINDS[field]
    if value.ndim != 0:
        raise ParameterError(f"{field} has shape {value.shape}: parameters must be scalars")
    if value.dtype.kind not in kinds:
        raise ParameterError(f"{field} is {value.dtype}: expected {what}")
    return value.item()  # int, float or str: no overflow, no truncation


def _read_model_file(path):
    """The bytes of a model file, as a file object: read once, MAX_MODEL_BYTES at most.

    Only a regular file is opened: a device (``/dev/zero``), a named pipe or a
    socket would be read without end (or block), and a folder holds no model.
    The file is checked again once open, as it may have been replaced since.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ModelError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ModelError(f"{path}: is a folder, not a model file") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ModelError(f"{path}: is a folder, not a model file")
        raise ModelError(f"{path}: not a regular file (a device, pipe or socket): "
                         "a model is an .npz file written by 'audionmf learn'")
    with os.fdopen(fd, "rb") as handle:
        if info.st_size > MAX_MODEL_BYTES:
            raise ModelError(f"{path}: model file of {info.st_size} bytes, more than a model needs")
        try:
            contents = handle.read(MAX_MODEL_BYTES + 1)
        except OSError as exc:
            raise ModelError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if len(contents) > MAX_MODEL_BYTES:  # it grew while being read
        raise ModelError(f"{path}: model file of more than {MAX_MODEL_BYTES} bytes, more than "
                         "a model needs")
    return io.BytesIO(contents)


def _check_unpacked_size(path, contents):
    """ModelError if the arrays of an .npz archive (a file object) would take more than
    MAX_MODEL_BYTES, by the sizes its entries and the arrays' headers declare."""
    total = declared = 0
    with zipfile.ZipFile(contents) as archive:
        for info in archive.infolist():
            total += info.file_size
            if total > MAX_MODEL_BYTES:
                break
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                else:
                    raise ModelError(f"{path}: not a readable model file (.npy format {version})")
            declared += math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    if max(total, declared) > MAX_MODEL_BYTES:
        raise ModelError(f"{path}: model file unpacks to {max(total, declared)} bytes, more than "
                         "a model needs")
    contents.seek(0)


#: What :meth:`SourceModel.learn` uses unless told otherwise (the CLI shows them too):
#: two factorizations of 100 templates, 100 iterations each (docs/decisions.md,
#: "Source models: discriminative dictionaries measured, an ensemble of two fits kept").
LEARN_DEFAULTS = {"n_components": 100, "fits": 2, "context": 2, "sparsity": 0.0, "max_iter": 100,
                  "semitones": (-1, 0, 1), "tempos": (1.0,)}

#: Most factorizations one model may hold (each costs a fit at separation).
MAX_FITS = 8

#: :meth:`SourceModel.learn`'s frame when none is given: ``LEARN_FRAME[1]`` samples at
#: ``LEARN_FRAME[0]`` Hz (139 ms, a hop of a quarter), the same duration at other rates
#: (docs/decisions.md, "Source models: frames of 139 ms").
LEARN_FRAME = (22050, 3072)


def learn_n_fft(sr):
    """The frame :meth:`SourceModel.learn` uses at the rate ``sr`` when none is given:
    :data:`LEARN_FRAME`'s duration (3072 samples at 22.05 kHz, 6144 at 44.1 kHz)."""
    rate, n_fft = LEARN_FRAME
    return max(4, int(round(n_fft * sr / rate)))  # (4: a hop of at least 1 at absurd rates)


#: Most iterations :meth:`SourceModel.learn` runs (it runs all it is given: tol=0).
MAX_LEARN_ITER = 100_000

#: Longest name of a model, in bytes of UTF-8: its source's file, with an extension and
#: the hidden temporary name wrapped around it while it is written, must fit the 255
#: bytes of a file name on common file systems.
MAX_NAME_BYTES = 200
#: Unicode categories a model's name may not hold: control characters (a tab, a newline),
#: line and paragraph separators, and surrogates (bytes of a command-line argument that
#: are not UTF-8). Format characters, such as the zero-width joiner that Persian spelling
#: or an emoji sequence needs, are fine.
_NOT_IN_NAMES = ("Cc", "Zl", "Zp", "Cs")


def check_name(name):
    """ParameterError unless ``name`` can name a model and its output file."""
    if not isinstance(name, str) or not name.strip():
        raise ParameterError(f"name={name!r}: a model needs a non-empty name")
    if any(c in name for c in "/\\\0") or name.startswith("."):
        raise ParameterError(f"name={name!r}: must be usable as a file name, and not a hidden one")
    if any(unicodedata.category(c) in _NOT_IN_NAMES for c in name):
        raise ParameterError(f"name={name!r}: must be usable as a file name: no control characters, "
                             "line breaks or bytes that are not UTF-8")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise ParameterError(f"name={name[:40]!r}...: at most {MAX_NAME_BYTES} bytes (it names "
                             "the output file of its source)")
    if name == "residual":
        raise ParameterError("name='residual' is reserved for the templates learned on the "
                             "mixture (free_components, --free): choose another")


def check_fits(fits, n_components):
    """``fits`` as an int, or ParameterError: between 1 and MAX_FITS, at most one per template."""
    fits = check_positive_int(fits, "fits", maximum=MAX_FITS)
    if fits > n_components:
        raise ParameterError(f"fits={fits}: more factorizations than the {n_components} "
                             "templates (each needs at least one)")
    return fits


def check_models(models, keyword="models"):
    """Refuse models that cannot share one factorization.

    They must be :class:`SourceModel` objects (``keyword`` names the argument in
    the message), with unique names (other than "residual", the name of free
    components) and the same analysis. Raises ParameterError saying which differ.
    """
    for m in models:
        if not isinstance(m, SourceModel):
            raise ParameterError(f"{keyword} must be SourceModel objects, got {type(m).__name__}")
    names = [m.name for m in models]
    if len(set(names)) < len(names) or "residual" in names:
        raise ParameterError(f"model names must be unique and not 'residual': {names}")
    for m in models[1:]:
        problem = models[0].compatible_with(m)
        if problem:
            raise ParameterError(f"the models cannot be used together: {problem}")


@dataclass(frozen=True, eq=False)
class SourceModel:
    """Spectral templates of one source and the analysis they belong to.

    Attributes
    ----------
    name : str
        Source name; separated files are called ``<name>.wav``.
    templates : np.ndarray [shape=(n_freq, K), dtype=float32]
        Non-negative, each column scaled to sum to 1 (a template's level is its
        activations'; at 1e-9 or 1e30 a model lost to, or took everything from,
        another).
    sr : int
        Sampling rate the templates were learned at.
    n_fft, hop_length, window
        STFT parameters (see :class:`audionmf.STFTParams`).
    beta : float
        Divergence used to learn them, and to be used with them.
    power : float
        Spectrogram exponent, in (0, 2] (1 magnitude, 2 power).
    context : int
        Frames of context on each side: each template spans ``2 * context + 1``
        consecutive frames (:func:`audionmf.stack_frames`), so it describes
        how a sound evolves, and has ``n_freq * (2 * context + 1)`` rows.
    fits : int
        The templates are those of ``fits`` factorizations of the examples from
        different random starts, in consecutive groups of columns as even as
        possible (:meth:`groups`; :meth:`learn` makes them equal). Separation
        fits the activations of each group on its own (group ``g`` of every
        model together) and averages the masks: an ensemble.
    """

    name: str
    templates: np.ndarray
    sr: int
    n_fft: int = 2048
    hop_length: int = 512
    window: str = "hann"
    beta: float = 1.0
    power: float = 1.0
    context: int = 0
    fits: int = 1

    def __post_init__(self):
        check_name(self.name)
        params = STFTParams(self.n_fft, self.hop_length, self.window)
        object.__setattr__(self, "hop_length", params.hop_length)
        object.__setattr__(self, "n_fft", params.n_fft)
        object.__setattr__(self, "sr", check_sample_rate(self.sr, "sr"))
        object.__setattr__(self, "beta", beta_to_float(self.beta))
        object.__setattr__(self, "power", check_spectrogram_power(self.power))
        object.__setattr__(self, "context", check_context(self.context))
        W = np.asarray(self.templates)
        rows = (self.n_fft // 2 + 1) * (2 * self.context + 1)
        if W.ndim != 2 or W.shape[0] != rows or W.shape[1] < 1:
            raise ParameterError(
                f"templates have shape {W.shape}; expected ({rows}, K) for n_fft={self.n_fft} "
                f"and context={self.context}"
            )
        if not np.issubdtype(W.dtype, np.floating):
            raise ParameterError("templates must be finite, non-negative floating-point numbers")
        with np.errstate(over="ignore"):  # beyond float32's range: Inf, refused below
            W = np.array(W, dtype=np.float32)  # our own read-only copy
        if not np.all(np.isfinite(W)) or W.min() < 0:
            raise ParameterError("templates must be finite, non-negative floating-point numbers "
                                 "(within single precision's range)")
        silent = np.flatnonzero(~W.any(axis=0))
        if len(silent):
            raise ParameterError(f"template {silent[0]} of {W.shape[1]} is all zeros: it models nothing")
        sums = W.sum(axis=0, dtype=np.float64)
        if np.any(np.abs(sums - 1.0) > 1e-3):  # (learned ones sum to 1: left bit for bit as they are)
            W = (W / sums).astype(np.float32)  # the fits clip templates to [eps, 1 / eps]
        W.setflags(write=False)
        object.__setattr__(self, "templates", W)
        object.__setattr__(self, "fits", check_fits(self.fits, W.shape[1]))

    def groups(self):
        """The columns of :attr:`templates` of each factorization: ``fits`` arrays of indices."""
        return np.array_split(np.arange(self.n_components), self.fits)

    @property
    def n_components(self):
        return self.templates.shape[1]

    @property
    def stft_params(self):
        return STFTParams(self.n_fft, self.hop_length, self.window)

    @property
    def analysis(self):
        """The :class:`audionmf.analysis.Analysis` the templates belong to."""
        return Analysis(self.sr, self.stft_params, self.beta, self.power, self.context)

    def compatible_with(self, other):
        """Why two models cannot be used in one factorization, or None."""
        for field in ("sr", "n_fft", "hop_length", "window", "beta", "power", "context"):
            mine, theirs = getattr(self, field), getattr(other, field)
            if mine != theirs:
                return f"{field} differs: {self.name!r} has {mine}, {other.name!r} has {theirs}"
        return None

    # ----------------------------------------------------------------- learning
    @classmethod
    def learn(
        cls,
        audio,
        sr=None,
        *,
        name,
        n_components=LEARN_DEFAULTS["n_components"],
        fits=LEARN_DEFAULTS["fits"],
        beta="kl",
        power=None,
        n_fft=None,
        hop_length=None,
        window="hann",
        context=LEARN_DEFAULTS["context"],
        semitones=LEARN_DEFAULTS["semitones"],
        tempos=LEARN_DEFAULTS["tempos"],
        sparsity=LEARN_DEFAULTS["sparsity"],
        max_iter=LEARN_DEFAULTS["max_iter"],
        silence_db=-40.0,
        random_state=None,
        callback=None,
    ):
        """Learn the templates of one source from example recordings.

        Parameters
        ----------
        audio : path, array, or a list of them
            Example recordings of the source alone, any number and length.
            Paths are read (and resampled to ``sr``); arrays need ``sr``.
            Multichannel examples are averaged to mono.
        sr : int or None
            Sampling rate of the model; ``None`` takes the first file's.
        name : str
            Source name.
        n_components : int
            Number of templates K of each factorization.
        fits : int
            Factorizations of the examples from different random starts, each
            of K templates and ``max_iter`` iterations: the model holds
            ``fits * K`` templates. Two of 100 templates, 100 iterations
            each, separate better than one of 200 iterations, in the same time
            (an ensemble: see the class).
        beta, power, n_fft, hop_length, window
            Analysis, as in :func:`audionmf.separate`, but for the frame: by default
            139 ms (:func:`learn_n_fft`: 3072 samples at 22.05 kHz, 6144 at 44.1 kHz),
            which separates better than the 93 ms of 2048 samples at 22.05 kHz
            (docs/decisions.md, "Source models: frames of 139 ms").
        context : int
            Frames of context on each side of every template (see the class).
        semitones : sequence of float
            Pitch shifts of the examples learned from: each example's
            spectrogram is also used with every frame's spectrum moved by
            these many semitones (read at ``f / 2 ** (k / 12)``, linearly
            interpolated between bins; time untouched). A model then covers
            notes near the ones its examples play. ``(0,)`` learns from the
            examples as they are.
        tempos : sequence of float
            Rates, in [0.5, 2], at which every (shifted) spectrogram is also
            played: frames interpolated in time, spectra untouched, so that
            templates of several frames also know faster and slower notes.
            At most :data:`MAX_COPIES` times the examples' own frames are
            learned from, drawn at random among all the copies.
        sparsity : float
            L1 penalty on the activations while learning (see :func:`audionmf.nmf`).
        max_iter : int
            NMF iterations of each factorization.
        silence_db : float
            Frames quieter than this, in dB relative to the loudest frame of
            the examples, are left out: silence teaches nothing.
        random_state : None, int or np.random.Generator
        callback : callable, optional
            Passed to :func:`audionmf.nmf`.

        Returns
        -------
        SourceModel
        """
        if isinstance(audio, (str, os.PathLike, np.ndarray)):
            items = [audio]
        elif isinstance(audio, (list, tuple)):
            items = list(audio)
        else:
            raise ParameterError(f"audio={audio!r:.60}: expected a path, an array of samples, "
                                 "or a list of them")
        if not items:
            raise ParameterError("audio=[]: learn needs at least one example recording")
        check_name(name)
        if sr is not None:
            sr = check_sample_rate(sr)
        max_iter = check_positive_int(max_iter, "max_iter", minimum=0)
        if max_iter > MAX_LEARN_ITER:
            raise ParameterError(f"max_iter={max_iter}: must be at most {MAX_LEARN_ITER}")
        check_nonnegative_real(sparsity, "sparsity")
        if isinstance(silence_db, bool) or not isinstance(silence_db, numbers.Real) \
                or not -np.inf < silence_db <= 0:
            raise ParameterError(f"silence_db={silence_db!r}: expected a finite level in dB, at most 0")
        if not (random_state is None or isinstance(random_state, np.random.Generator) or (
                isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool)
                and random_state >= 0)):
            raise ParameterError(f"random_state={random_state!r}: expected None, a seed >= 0 or a "
                                 "numpy Generator")
        if callback is not None and not callable(callback):
            raise ParameterError(f"callback={callback!r}: expected a function or None")
        def analysis_at(rate):  # (the default frame needs the rate; checked once before it)
            frame = n_fft if n_fft is not None else learn_n_fft(rate or LEARN_FRAME[0])
            return Analysis.from_arguments(rate, beta=beta, power=power, n_fft=frame,
                                           hop_length=hop_length, window=window)

        analysis = analysis_at(sr)
        beta, power = analysis.beta, analysis.power
        n_components = check_positive_int(n_components, "n_components", maximum=MAX_COMPONENTS)
        fits = check_positive_int(fits, "fits", maximum=MAX_FITS)  # K each: fitted apart
        context = check_context(context)
        semitones = check_semitones(semitones)
        tempos = check_tempos(tempos)
        spectra, labels = [], []
        for i, item in enumerate(items):
            if isinstance(item, (str, os.PathLike)):
                check_path(item, f"audio[{i}]" if isinstance(audio, (list, tuple)) else "audio")
                label = os.fspath(item)
                y, sr_item = load(item, sr=sr, mono=True, dtype=np.float64)
                if sr is None:  # the model's rate: the first file's, checked before any work
                    try:
                        sr = check_sample_rate(sr_item)
                    except ParameterError as exc:
                        raise ParameterError(f"{label}: {exc}; resample it, or pass sr") from None
                    analysis = analysis_at(sr)
            else:
                if sr is None:
                    raise ParameterError("sr is needed when examples are given as arrays")
                y = np.asarray(item)
                if y.dtype.kind in "iu":
                    y = y.astype(np.float64)
                y = check_audio(y, f"audio[{i}]" if len(items) > 1 or not isinstance(audio, np.ndarray)
                                else "audio").astype(np.float64, copy=False)
                y = y.mean(axis=0) if y.ndim == 2 else y
                label = "an example"
            params = analysis.stft
            if y.shape[-1] < params.n_fft:
                raise ParameterError(f"{label}: too short: {y.shape[-1]} samples, need n_fft={params.n_fft}")
            if not np.all(np.isfinite(y)):
                raise ParameterError(f"{label}: contains NaN or Inf samples")
            S = np.abs(stft(y, n_fft=params.n_fft, hop_length=params.hop_length, window=params.window))
            spectra.append(S)
            labels.append(label)
        peak = max(S.max() for S in spectra)
        if peak <= 0:
            files = list(dict.fromkeys(label for label in labels if label != "an example"))
            raise ParameterError(f"{', '.join(files) + ': ' if files else ''}silent: the examples "
                                 f"of {name!r} hold no sound")
        # The level does not matter (V is scaled below): one scale for all, so that no
        # power of a loud example overflows, nor of a quiet one underflows.
        for S in spectra:  # (ours: scaled in place)
            S /= peak
        def copies():  # made twice (energies, then frames) rather than all kept at once
            for rate in tempos:
                for k in semitones:
                    yield from (S**power for S in stretched(_shifted(spectra, k), rate))

        energy = np.concatenate([(S ** (2.0 / power)).sum(axis=0) for S in copies()])
        keep = np.flatnonzero(energy >= energy.max() * 10.0 ** (silence_db / 10.0))
        rng = np.random.default_rng(random_state)
        most = MAX_COPIES * keep.size // (len(semitones) * len(tempos))  # the examples' frames x 3
        if keep.size > most:  # a fair draw among the copies: the cost stays bounded
            keep = np.sort(rng.choice(keep, most, replace=False))
        # Frames are stacked within each example, never across two of them.
        V, start = [], 0
        for S in copies():
            mine = keep[(keep >= start) & (keep < start + S.shape[1])] - start
            if mine.size:
                V.append(stack_frames(S, context)[:, mine])
            start += S.shape[1]
        V = np.concatenate(V, axis=1)
        V = (V / V.max()).astype(np.float32)  # the level does not matter
        W = np.hstack([factorize(V, n_components, beta=beta, max_iter=max_iter, sparsity=sparsity,
                                 random_state=rng, callback=callback) for _ in range(fits)])
        return cls(name=name, templates=W, sr=sr, n_fft=params.n_fft,
                   hop_length=params.hop_length, window=params.window, beta=beta, power=power,
                   context=context, fits=fits)

    # ----------------------------------------------------------------- files
    def save(self, path):
        """Write the model to an ``.npz`` file, atomically."""
        path = os.fsdecode(check_path(path))
        if not path.endswith(".npz"):
            raise ParameterError(f"{path}: model files end in .npz")
        try:
            with atomic_file(path) as handle:
                np.savez_compressed(
                    handle,
                    kind=np.str_(_KIND),
                    format_version=np.int64(FORMAT_VERSION if self.fits > 1 else 1),
                    name=np.str_(self.name),
                    templates=self.templates,
                    sr=np.int64(self.sr),
                    n_fft=np.int64(self.n_fft),
                    hop_length=np.int64(self.hop_length),
                    window=np.str_(self.window),
                    beta=np.float64(self.beta),
                    power=np.float64(self.power),
                    context=np.int64(self.context),
                    **({"fits": np.int64(self.fits)} if self.fits > 1 else {}),
                )
        except OSError as exc:
            raise ModelError(f"{path}: cannot write ({exc.strerror or exc})") from None

    @classmethod
    def load(cls, path):
        """Read and check a model file written by :meth:`save`.

        Raises
        ------
        ModelError
            Missing, not an audionmf model, from a newer version, or with
            inconsistent contents; the message names the file and the problem.
        """
        path = check_path(path)
        contents = _read_model_file(path)
        if looks_like_audio(contents.getvalue()[:4]):
            raise ModelError(f"{path}: an audio file, not a model: a model is an .npz file "
                             "written by 'audionmf learn'")
        try:
            _check_unpacked_size(path, contents)
            with np.load(contents, allow_pickle=False) as data:
                missing = [f for f in _FIELDS if f not in data.files]
                if "kind" not in data.files or str(data["kind"]) != _KIND:
                    raise ModelError(f"{path}: not an audionmf model file")
                if missing:
                    raise ModelError(f"{path}: model file lacks {', '.join(missing)}")
                version = data["format_version"]
                if version.ndim != 0 or version.dtype.kind not in "iu":
                    raise ModelError(f"{path}: not a readable model file (format_version is "
                                     f"{version.dtype} of shape {version.shape}, not a whole number)")
                version = int(version)
                if version > FORMAT_VERSION:
                    raise ModelError(
                        f"{path}: model format {version} is newer than this audionmf reads "
                        f"({FORMAT_VERSION}); upgrade audionmf"
                    )
                if version < 1:
                    raise ModelError(f"{path}: inconsistent model: format_version={version}: "
                                     "versions start at 1")
                fields = {f: data[f] for f in _FIELDS[2:]}
                fields.update({f: data[f] for f in _OPTIONAL if f in data.files})
        except ModelError:
            raise
        except (zipfile.BadZipFile, ValueError, TypeError, OSError, EOFError, KeyError) as exc:
            raise ModelError(f"{path}: not a readable model file ({type(exc).__name__}: {exc})") from None
        try:
            values = {f: _field_value(f, v) for f, v in fields.items() if f != "templates"}
        except (ParameterError, TypeError, ValueError) as exc:
            raise ModelError(f"{path}: inconsistent model: {exc}") from None
        try:
            check_name(values.get("name"))
        except ParameterError as exc:  # (perhaps learned before the rule: the templates are fine)
            raise ModelError(f"{path}: inconsistent model: {exc} (learn it again under another "
                             "name)") from None
        try:
            return cls(templates=fields["templates"], **values)
        except (ParameterError, TypeError, ValueError) as exc:
            raise ModelError(f"{path}: inconsistent model: {exc}") from None

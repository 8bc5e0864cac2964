"""Reading and writing audio files.

Signals follow librosa's layout: shape ``(n_samples,)`` for one channel and
``(n_channels, n_samples)`` for several. Files are written atomically: the data
goes to a hidden temporary file in the target folder, which is then renamed over
the final name, so a crash or a full disk never leaves a half-written file
under the name a user asked for.
"""
import contextlib
import os
import tempfile

import numpy as np
import soundfile as sf

from ._validation import AudioError, ParameterError, check_positive_int

__all__ = ["load", "save", "resample", "WRITE_FORMATS"]

#: Extensions taken for audio files when a folder is given (what libsndfile reads).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au")

#: Output formats by file extension, with the sample format written by default.
#: WAV is written as 32-bit float so that separated sources sum back to the
#: input exactly; FLAC cannot hold floats and gets 24-bit integers.
WRITE_FORMATS = {".wav": ("WAV", "FLOAT"), ".flac": ("FLAC", "PCM_24")}


def load(path, *, sr=None, mono=False, dtype=np.float32):
    """Read an audio file.

    Parameters
    ----------
    path : str or os.PathLike
        Any format the installed libsndfile reads (WAV, FLAC, OGG/Vorbis, and
        MP3 with libsndfile >= 1.1).
    sr : int or None
        Target sampling rate. ``None`` keeps the file's own rate; any other
        value resamples (soxr, high quality).
    mono : bool
        Average the channels into one.
    dtype : np.dtype
        Floating type of the returned samples (values in [-1, 1] for PCM files).

    Returns
    -------
    y : np.ndarray [shape=(n_samples,) or (n_channels, n_samples)]
    sr : int

    Raises
    ------
    AudioError
        The file is missing, unreadable, not audio, or holds no samples.
        The message names the file.

    Examples
    --------
    >>> import audionmf
    >>> y, sr = audionmf.load("audio_samples/drums_organ_bass.flac")
    >>> y.shape, sr
    ((220500,), 22050)
    """
    path = os.fspath(path)
    if sr is not None:
        sr = check_positive_int(sr, "sr")
    if not os.path.exists(path):
        raise AudioError(f"{path}: no such file")
    if os.path.isdir(path):
        raise AudioError(f"{path}: is a directory, not an audio file")
    try:
        data, file_sr = sf.read(path, dtype="float64", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        detail = str(exc).split(":")[-1].strip().rstrip(".") or type(exc).__name__
        raise AudioError(f"{path}: not a readable audio file ({detail})") from None
    except OSError as exc:
        raise AudioError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: holds no samples")
    y = data.T  # (n_channels, n_samples)
    if mono:
        y = y.mean(axis=0, keepdims=True)
    if sr is not None and sr != file_sr:
        y = resample(y, file_sr, sr)
        file_sr = sr
    if y.shape[0] == 1:
        y = y[0]
    return np.ascontiguousarray(y, dtype=dtype), int(file_sr)


def resample(y, orig_sr, target_sr):
    """Change the sampling rate of a signal (soxr, high quality; what librosa uses by default).

    Parameters
    ----------
    y : np.ndarray [shape=(n_samples,) or (n_channels, n_samples)]
    orig_sr, target_sr : int

    Returns
    -------
    np.ndarray [shape=(..., ceil(n_samples * target_sr / orig_sr))], the dtype of y
    """
    import soxr

    if orig_sr == target_sr:
        return y
    out = soxr.resample(np.asarray(y).T, orig_sr, target_sr, quality="HQ")
    return np.ascontiguousarray(out.T, dtype=y.dtype)


def save(path, y, sr, *, subtype=None):
    """Write a signal to a WAV or FLAC file, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Target file; the extension (``.wav`` or ``.flac``) picks the format.
        The folder must exist. An existing file is replaced in one step.
    y : np.ndarray [shape=(n_samples,) or (n_channels, n_samples)]
        Finite samples; integer formats (FLAC) need them within [-1, 1] and
        refuse anything louder rather than clip it.
    sr : int
        Sampling rate in Hz.
    subtype : str or None
        libsndfile sample format (``"PCM_16"``, ``"PCM_24"``, ``"FLOAT"``...).
        Default: see :data:`WRITE_FORMATS`.
    """
    _commit([_write_temporary(path, y, sr, subtype)])


def save_together(items, sr, *, subtype=None, files=()):
    """Write several files so that either all of them appear or none does.

    ``items`` is a sequence of ``(path, y)`` signals; ``files`` of ``(path, bytes)``
    written as they are (a figure, say). Every file is written to a temporary
    name first; only when all writes succeeded are they renamed. If a rename
    fails, the files it already put in place where there was none are removed
    again (a file that existed before is replaced by its complete new version).
    """
    pending = []
    try:
        for path, y in items:
            pending.append(_write_temporary(path, y, sr, subtype))
        for path, data in files:
            try:
                with _temporary_beside(path) as (handle, tmp):
                    handle.write(data)
            except OSError as exc:
                raise AudioError(f"{path}: cannot write ({exc.strerror or exc})") from None
            pending.append((tmp, os.fspath(path)))
    except BaseException:
        for tmp, _ in pending:
            _remove_quietly(tmp)
        raise
    _commit(pending)


def output_format(path, subtype=None):
    """Return ``(format, subtype)`` for an output path, or raise ParameterError."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in WRITE_FORMATS:
        raise ParameterError(
            f"{os.fspath(path)}: cannot write {ext or 'files without extension'!r}; "
            f"use one of {', '.join(WRITE_FORMATS)}"
        )
    fmt, default_subtype = WRITE_FORMATS[ext]
    subtype = default_subtype if subtype is None else subtype
    if not sf.check_format(fmt, subtype):
        raise ParameterError(f"{os.fspath(path)}: {fmt} cannot hold sample format {subtype!r}")
    return fmt, subtype


@contextlib.contextmanager
def atomic_file(path):
    """A binary handle on a hidden temporary file beside ``path``, renamed to it on success.

    On any error (or interruption) the temporary file is removed and ``path`` is
    left as it was. Raises ``OSError`` when the folder cannot hold the file.
    """
    with _temporary_beside(path) as (handle, tmp):
        yield handle
    try:
        os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise


@contextlib.contextmanager
def _temporary_beside(path):
    """Yield ``(handle, name)`` of a new hidden file in ``path``'s folder.

    The file is removed if the block fails, and kept (readable as a final file
    would be) if it succeeds: renaming it is the caller's move.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle, tmp
        os.chmod(tmp, 0o666 & ~_umask())
    except BaseException:
        _remove_quietly(tmp)
        raise


def _write_temporary(path, y, sr, subtype):
    path = os.fspath(path)
    fmt, subtype = output_format(path, subtype)
    sr = check_positive_int(sr, "sr")
    y = np.asarray(y)
    if y.ndim not in (1, 2) or y.shape[-1] == 0:
        raise ParameterError(f"{path}: cannot write a signal of shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ParameterError(f"{path}: refusing to write NaN or Inf samples")
    data = np.atleast_2d(y).T
    peak = float(np.max(np.abs(data)))
    if peak > 1.0 and not subtype.startswith(("FLOAT", "DOUBLE")):
        raise AudioError(
            f"{path}: samples reach {peak:.3g}, beyond the [-1, 1] that {fmt} {subtype} holds; "
            "write a float WAV instead of clipping"
        )
    try:
        with _temporary_beside(path) as (handle, tmp):
            sf.write(handle, data, sr, subtype=subtype, format=fmt)
    except (OSError, sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"{path}: cannot write ({getattr(exc, 'strerror', None) or exc})") from None
    return tmp, path


def _commit(pending):
    done = 0
    new = [not os.path.exists(path) for _, path in pending]
    try:
        for tmp, path in pending:
            os.replace(tmp, path)
            done += 1
    except BaseException as exc:  # a full disk or Ctrl-C: no temporary file stays behind
        for tmp, _ in pending[done:]:
            _remove_quietly(tmp)
        for (_, path), was_new in zip(pending[:done], new):
            if was_new:
                _remove_quietly(path)
        if isinstance(exc, OSError):
            raise AudioError(f"{pending[done][1]}: cannot write ({exc.strerror or exc})") from None
        raise


def _remove_quietly(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask

"""Writing audio files and other outputs atomically (behind :mod:`audionmf.io`).

The data goes to a hidden temporary file in the target folder, which is then
renamed over the final name, so a crash or a full disk never leaves a
half-written file under the name a user asked for; several files appear
together or not at all (:class:`OutputFiles`).
"""
import contextlib
import errno
import os
import secrets
import shutil

import numpy as np
import soundfile as sf

from ._validation import (
    AudioError,
    ParameterError,
    check_path,
    check_positive_int,
    check_sample_rate,
)

__all__ = ["save", "OutputFiles", "WRITE_FORMATS", "output_format", "atomic_file", "missing_folders",
           "remove_empty_folders", "sf_path", "check_name_fits"]

#: Output formats by file extension, with the sample format written by default.
#: WAV is written as 32-bit float so that separated sources sum back to the
#: input exactly; FLAC cannot hold floats and gets 24-bit integers.
WRITE_FORMATS = {".wav": ("WAV", "FLOAT"), ".flac": ("FLAC", "PCM_24")}


def sf_path(path):
    """A path as soundfile takes it whatever bytes the name holds: soundfile encodes a
    str strictly, so a name that is not UTF-8 (legal on Linux, read back with
    surrogates) goes as the bytes the file system holds."""
    return os.fsencode(path) if isinstance(path, str) else path


def _detail(exc):
    return str(exc).split(":")[-1].strip().rstrip(".") or type(exc).__name__


def _why_not_written(exc, path, detail=_detail):
    """What stopped a write, in words: the OS's reason, else ``detail(exc)``; where
    libsndfile says only "System error", a full disk if the folder's file system has no
    room left."""
    reason = getattr(exc, "strerror", None) or detail(exc)
    if "system error" in reason.lower():
        try:
            if shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free < 2**20:
                return "No space left on device"
        except OSError:
            pass
    return reason


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
    path = check_path(path)
    sr = check_sample_rate(sr)
    if subtype is not None and not isinstance(subtype, str):
        raise ParameterError(f"subtype={subtype!r}: expected a libsndfile sample format name such as 'PCM_24'")
    y = np.asarray(y)
    if y.dtype.kind not in "fiu" or y.ndim not in (1, 2) or y.size == 0:
        raise ParameterError(f"y: expected samples of shape (n_samples,) or (n_channels, n_samples), "
                             f"got {y.dtype} of shape {y.shape}")
    _commit([_write_temporary(path, y, sr, subtype)])


class OutputFiles:
    """Audio files written a block at a time, appearing together or not at all.

    Each file is written under a hidden temporary name beside its target; on
    :meth:`commit` all are renamed. If a rename fails, the files it already put
    in place where there was none are removed again (a file that existed before
    is replaced by its complete new version). Leaving the ``with`` block without
    a commit (by an error or an interrupt, say) removes the temporary files, so
    nothing half-written is ever left under a name the user asked for.

    Parameters
    ----------
    paths : sequence of str
        Target files; their extensions pick the formats (:data:`WRITE_FORMATS`).
    sr, n_channels : int
    subtype : str or None
        See :func:`save`.

    Examples
    --------
    >>> import os, tempfile
    >>> from audionmf import load
    >>> folder = tempfile.mkdtemp()
    >>> paths = [os.path.join(folder, name) for name in ("a.wav", "b.wav")]
    >>> with OutputFiles(paths, 8000, 1) as files:
    ...     for block in range(3):
    ...         files.write(0, np.zeros(100))
    ...         files.write(1, np.ones(100) / 2)
    ...     files.commit()
    >>> sorted(os.listdir(folder)), load(paths[1])[0].shape
    (['a.wav', 'b.wav'], (300,))
    """

    def __init__(self, paths, sr, n_channels, *, subtype=None):
        self._open = []
        self._pending = []
        try:
            for path in map(os.fspath, paths):
                fmt, kind = output_format(path, subtype, n_channels)
                try:
                    fd, tmp = _new_temporary(path)  # reserves the name; soundfile reopens it
                except OSError as exc:  # a folder we may not write in, a name too long...
                    raise AudioError(f"{path}: cannot write ({exc.strerror or _detail(exc)})") from None
                os.close(fd)
                self._pending.append((tmp, path))
                try:
                    handle = sf.SoundFile(sf_path(tmp), "w", samplerate=check_positive_int(sr, "sr"),
                                          channels=n_channels, subtype=kind, format=fmt)
                except (sf.LibsndfileError, RuntimeError, OSError) as exc:
                    raise AudioError(f"{path}: cannot write ({_why_not_written(exc, path)})") from None
                self._open.append((handle, path, kind.startswith(("FLOAT", "DOUBLE"))))
        except BaseException:
            self.discard()
            raise

    def write(self, index, y):
        """Append samples of shape (n_samples,) or (n_channels, n_samples) to file ``index``."""
        handle, path, is_float = self._open[index]
        y = np.atleast_2d(y)
        if not y.shape[-1]:
            return
        if not np.all(np.isfinite(y)):
            raise ParameterError(f"{path}: refusing to write NaN or Inf samples")
        peak = float(np.max(np.abs(y)))
        if peak > 1.0 and not is_float:
            raise AudioError(f"{path}: samples reach {peak:.3g}, beyond the [-1, 1] that "
                             f"{handle.format} {handle.subtype} holds; write a float WAV instead "
                             "of clipping")
        try:
            handle.write(y.T)
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise AudioError(f"{path}: cannot write ({_why_not_written(exc, path)})") from None

    def commit(self, files=()):
        """Close the files and rename them into place, with ``files`` of
        ``(path, bytes)`` (a figure, say) written beside them, all or none."""
        try:
            self._close_all()
            for path, data in files:
                self._pending.append(_write_bytes_temporary(path, data))
        except BaseException:
            self.discard()
            raise
        pending, self._pending = self._pending, []
        _commit(pending)

    def discard(self):
        """Remove every temporary file; the targets stay as they were."""
        try:
            self._close_all()
        except Exception:
            pass
        for tmp, _ in self._pending:
            _remove_quietly(tmp)
        self._pending = []

    def _close_all(self):
        while self._open:
            handle, path, _ = self._open.pop()
            try:
                handle.close()
            except (sf.LibsndfileError, RuntimeError, OSError) as exc:
                raise AudioError(f"{path}: cannot write ({_why_not_written(exc, path)})") from None

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        self.discard()  # after a commit, nothing is left to discard


#: Most channels a FLAC file holds.
FLAC_CHANNELS = 8


def output_format(path, subtype=None, n_channels=1):
    """Return ``(format, subtype)`` for an output path of ``n_channels``, or raise ParameterError."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in WRITE_FORMATS:
        raise ParameterError(
            f"{os.fspath(path)}: cannot write {ext or 'files without extension'!r}; "
            f"use one of {', '.join(WRITE_FORMATS)}"
        )
    fmt, default_subtype = WRITE_FORMATS[ext]
    subtype = default_subtype if subtype is None else subtype
    if not sf.check_format(fmt, subtype):
        raise ParameterError(f"{os.fspath(path)}: subtype={subtype!r}: {fmt} cannot hold that sample format")
    if fmt == "FLAC" and n_channels > FLAC_CHANNELS:
        raise ParameterError(f"{os.fspath(path)}: FLAC holds at most {FLAC_CHANNELS} channels, "
                             f"not {n_channels}; write WAV")
    return fmt, subtype


def missing_folders(folder):
    """The folders that ``os.makedirs(folder)`` would create, deepest first.

    Spelled as in ``folder``, as makedirs follows it: in ``new/../out`` it
    creates ``new`` as well as ``out``.
    """
    missing = []
    while folder and not os.path.isdir(folder):
        head, tail = os.path.split(folder)
        if not tail:  # a trailing separator
            head, tail = os.path.split(head)
        if tail not in (os.curdir, os.pardir):
            missing.append(folder)
        if head == folder:
            break
        folder = head
    return missing


def remove_empty_folders(created):
    """Remove the folders of :func:`missing_folders` (deepest first) while they are empty.

    One that is not there (never made: ``makedirs`` failed before it) is passed over.
    """
    for made in created:
        if not os.path.isdir(made):
            continue
        try:
            os.rmdir(made)
        except OSError:  # not empty (another file's outputs)
            break


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
    """Yield ``(handle, name)`` of a new hidden file in ``path``'s folder (:func:`_new_temporary`).

    The file is removed if the block fails, and kept if it succeeds: renaming it
    is the caller's move.
    """
    fd, tmp = _new_temporary(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle, tmp
    except BaseException:
        _remove_quietly(tmp)
        raise


def check_name_fits(path):
    """Refuse (AudioError naming ``path``), before any work, a file name too long for its
    folder's file system once the hidden temporary name (:func:`_new_temporary`) wraps it."""
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    existing = folder
    while not os.path.isdir(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    try:
        limit = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # not told: the usual limit
        limit = 255
    size = len(os.fsencode(_temporary_name(name)))
    if size > limit:
        raise AudioError(f"{path}: the name is too long: {size - len(os.fsencode(name))} bytes more for "
                         f"the temporary file would make {size}, and a name here holds {limit}")


def _temporary_name(name, tag="00000000"):
    return f".{name}.{tag}.part"


def _new_temporary(path):
    """Create ``.NAME.XXXXXXXX.part`` beside ``path``; return its descriptor (open for
    writing) and its name.

    Created as any new file is (mode 0o666, less the umask, which the system applies),
    so that once renamed it has a new file's permissions; ``O_EXCL`` never opens a
    file that is already there. Raises ``OSError`` when the folder cannot hold it.
    """
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):  # a name already taken is 1 in 4 billion
        tmp = os.path.join(folder, _temporary_name(name, secrets.token_hex(4)))
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", tmp)


def _write_temporary(path, y, sr, subtype):
    path = os.fspath(path)
    sr = check_positive_int(sr, "sr")
    y = np.asarray(y)
    if y.ndim not in (1, 2) or y.shape[-1] == 0:
        raise ParameterError(f"{path}: cannot write a signal of shape {y.shape}")
    if y.ndim == 2 and y.shape[0] > y.shape[1]:
        raise ParameterError(f"{path}: a signal of shape {y.shape} has more channels than samples; "
                             "the layout is (n_channels, n_samples): pass y.T")
    fmt, subtype = output_format(path, subtype, 1 if y.ndim == 1 else y.shape[0])
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
        raise AudioError(f"{path}: cannot write ({_why_not_written(exc, path, str)})") from None
    return tmp, path


def _write_bytes_temporary(path, data):
    """Write bytes to a temporary file beside ``path``; returns ``(temporary, path)``."""
    try:
        with _temporary_beside(path) as (handle, tmp):
            handle.write(data)
    except OSError as exc:
        raise AudioError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return tmp, os.fspath(path)


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

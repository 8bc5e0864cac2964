"""Reading and writing audio files.

Signals follow librosa's layout: shape ``(n_samples,)`` for one channel and
``(n_channels, n_samples)`` for several. Files are written atomically: the data
goes to a hidden temporary file in the target folder, which is then renamed over
the final name, so a crash or a full disk never leaves a half-written file
under the name a user asked for.
"""
import contextlib
import errno
import os
import re
import secrets
import stat

import numpy as np
import soundfile as sf

from ._validation import (
    MAX_SAMPLE,
    AudioError,
    ParameterError,
    check_flag,
    check_path,
    check_positive_int,
    check_sample_rate,
)

__all__ = ["load", "save", "resample", "Signal", "OutputFiles", "WRITE_FORMATS"]

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
    path = check_path(path)
    if sr is not None:
        sr = check_sample_rate(sr)
    mono = check_flag(mono, "mono")
    dtype = _check_float_dtype(dtype)
    with _open(path) as f:
        try:
            data = f.read(dtype="float64", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"{path}: not a readable audio file ({_detail(exc)})") from None
        file_sr = f.samplerate
        _check_length(f, path, f.frames, data.shape[0])
    if data.shape[0] == 0:
        raise AudioError(f"{path}: holds no samples")
    # Samples the dtype asked for cannot hold would become Inf (with a RuntimeWarning),
    # then be blamed on the file as NaN or Inf: say what they are. A NaN fails neither
    # test and is left to the caller's check.
    largest = float(np.finfo(dtype).max)
    if max(float(data.max()), -float(data.min())) > largest:
        bad = int(np.flatnonzero((np.abs(data) > largest).any(axis=1))[0])
        raise AudioError(f"{path}: a sample of magnitude {np.abs(data[bad]).max():.3g} at "
                         f"{bad / file_sr:.2f} s, beyond what {np.dtype(dtype).name} holds")
    y = data.T  # (n_channels, n_samples)
    if mono:
        y = y.mean(axis=0, keepdims=True)
    if sr is not None and sr != file_sr:
        y = resample(y, file_sr, sr)
        file_sr = sr
    if y.shape[0] == 1:
        y = y[0]
    return np.ascontiguousarray(y, dtype=dtype), int(file_sr)


def _check_float_dtype(dtype):
    """``dtype`` as a floating np.dtype, or ParameterError naming it."""
    try:
        kind = np.dtype(dtype) if dtype is not None else None
    except TypeError:
        kind = None
    if kind is None or kind.kind != "f":
        raise ParameterError(f"dtype={dtype!r}: expected a floating type, np.float32 or np.float64")
    return kind


def _open(path):
    """An open soundfile.SoundFile, or AudioError naming the file and the problem."""
    if not os.path.exists(path):
        raise AudioError(f"{path}: no such file")
    if os.path.isdir(path):
        raise AudioError(f"{path}: is a directory, not an audio file")
    if not _seekable(path):
        raise AudioError(f"{path}: is a pipe or stream, not a file: its samples are read more than "
                         "once, so save it to a file first")
    try:
        handle = sf.SoundFile(path)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        if not os.access(path, os.R_OK):  # libsndfile would only say "System error"
            raise AudioError(f"{path}: cannot be read (Permission denied)") from None
        raise AudioError(f"{path}: not a readable audio file ({_detail(exc)})") from None
    except OSError as exc:
        raise AudioError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    declared = _declared_frames(handle)
    if declared is not None and handle.frames < declared:
        handle.close()
        raise AudioError(f"{path}: truncated: its header declares {declared} samples, "
                         f"the file holds {handle.frames}")
    return handle


def _seekable(path):
    """Whether ``path`` can be read more than once: a regular file, or a device that
    seeks (not a named pipe, a socket or a terminal, which would also block).

    A stream is refused rather than buffered: a separation reads its input twice
    (the fit, then block by block), and a copy of a stream of any length would
    have to go to memory or disk unbounded.
    """
    try:
        info = os.stat(path)
    except OSError:
        return True  # let the open say what is wrong
    if stat.S_ISREG(info.st_mode) or stat.S_ISBLK(info.st_mode):
        return True
    if stat.S_ISFIFO(info.st_mode) or stat.S_ISSOCK(info.st_mode):
        return False
    try:  # a character device: opened without blocking, seeks or not
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return True
    try:
        os.lseek(fd, 0, os.SEEK_CUR)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


#: Where libsndfile's log of a file's header gives the size of its sample data: the
#: entry, and the bytes of chunk header that size counts.
_DATA_SIZE = {"WAV": ("data", 0), "WAVEX": ("data", 0), "RF64": ("Data size", 0),
              "W64": ("data", 24), "AIFF": ("SSND", 8)}
_SAMPLE_BYTES = {"PCM_S8": 1, "PCM_U8": 1, "ULAW": 1, "ALAW": 1, "PCM_16": 2, "PCM_24": 3,
                 "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8}


def _declared_frames(handle):
    """The number of samples (per channel) a WAV, RF64, W64 or AIFF header declares, or None.

    libsndfile reads such a file cut short as a complete, shorter one. A declared size
    of 0 or of 2 GB and more is taken for the placeholder of a writer that streamed
    (to a pipe), not a length; so are compressed sample formats (no fixed frame size).
    """
    key, header = _DATA_SIZE.get(handle.format, (None, 0))
    width = _SAMPLE_BYTES.get(handle.subtype)
    if key is None or width is None:
        return None
    match = re.search(rf"^\s*{re.escape(key)}\s*:\s*(\d+)", handle.extra_info, re.M)
    if not match:
        return None
    size = int(match.group(1)) - header
    if not 0 < size < 0x7FFF0000:
        return None
    return size // (width * handle.channels)


def _check_length(handle, path, expected, got):
    """Raise AudioError if ``got`` samples could be read where the header gives
    ``expected`` (a file cut short). An MP3's length is an estimate (from the first
    frame's bitrate where it has no Xing header): one that ends early is read as far
    as it goes."""
    if got < expected and handle.format != "MP3":
        raise AudioError(f"{path}: truncated: {got} of the {expected} samples its header "
                         "gives could be read")


def _detail(exc):
    return str(exc).split(":")[-1].strip().rstrip(".") or type(exc).__name__


class Signal:
    """Samples of a signal, read a block at a time, from an array or a file.

    A long file is never read whole: :meth:`read` reads the block asked for.
    Use as a context manager (the file is closed at the end).

    Attributes
    ----------
    n_samples, n_channels, sr : int
    name : str
        The file's path (or ``"the audio"``), for error messages.

    Examples
    --------
    >>> signal = Signal(np.arange(6.0).reshape(2, 3), 8000)
    >>> signal.read(-1, 2)  # zeros before the start
    array([[0., 0., 1.],
           [0., 3., 4.]])
    >>> with Signal.open("audio_samples/drums_organ_bass.flac") as song:
    ...     song.n_samples, song.n_channels, song.sr, song.read(0, 4).shape
    (220500, 1, 22050, (1, 4))
    """

    def __init__(self, y=None, sr=None, *, path=None):
        if path is not None:
            self.name = check_path(path)
            self._file = _open(self.name)
            self.sr, self.n_channels = self._file.samplerate, self._file.channels
            self.n_samples = self._file.frames
            self._position = 0  # where the open handle stands
            self._last = (0, np.zeros((self.n_channels, 0)))  # the last block read, from where
            if self.n_samples <= 0:
                self._file.close()
                raise AudioError(f"{self.name}: holds no samples")
            self._array = None
        else:
            self.name, self._file = "the audio", None
            self._array = np.atleast_2d(y)
            self.n_channels, self.n_samples = self._array.shape
            self.sr = check_sample_rate(sr)

    @classmethod
    def open(cls, path):
        """The signal of an audio file (AudioError if it cannot be used)."""
        return cls(path=path)

    def read(self, start, stop):
        """Samples ``start .. stop - 1`` as float64 of shape (n_channels, stop - start),
        zeros where the range reaches outside the signal."""
        out = np.zeros((self.n_channels, stop - start))
        lo, hi = max(start, 0), min(stop, self.n_samples)
        if hi > lo:
            if self._array is not None:
                out[:, lo - start : hi - start] = self._array[:, lo:hi]
            else:
                block = self._read_file(lo, hi)
                out[:, lo - start : lo - start + block.shape[1]] = block
            part = out[:, lo - start : hi - start]
            if not max(part.max(), -part.min()) <= MAX_SAMPLE:  # also NaN
                bad = int(np.flatnonzero(~(np.abs(part) <= MAX_SAMPLE).all(axis=0))[0])
                seconds = (lo + bad) / self.sr
                size = np.abs(part[:, bad]).max()
                if np.isfinite(size):
                    raise AudioError(f"{self.name}: a sample of magnitude {size:.3g} at {seconds:.2f} s, "
                                     f"beyond what audio holds ({MAX_SAMPLE:.0e} at most)")
                raise AudioError(f"{self.name}: NaN or Inf samples (the first at {seconds:.2f} s)")
        return out

    def _read_file(self, lo, hi):
        """Samples lo .. hi - 1 of the file, read forward as far as possible.

        libsndfile's seek is exact on a freshly opened file, but on an Ogg
        Vorbis handle that has already been read it can land a few hundred
        samples off. So blocks are read forward: the part that overlaps the
        previous block comes from it, the rest continues from where the
        handle stands, and only a jump elsewhere reopens the file and seeks.
        """
        start = lo
        cached_lo, cached = self._last
        parts = []
        if cached_lo <= lo < cached_lo + cached.shape[1]:
            parts.append(cached[:, lo - cached_lo : hi - cached_lo])
            lo = cached_lo + cached.shape[1]
        try:
            if lo < hi:
                if lo != self._position:
                    self._file.close()
                    self._file = _open(self.name)
                    self._file.seek(lo)
                parts.append(self._file.read(hi - lo, dtype="float64", always_2d=True).T)
                self._position = lo + parts[-1].shape[1]
                if self._position < hi:  # the file ends before its header says
                    _check_length(self._file, self.name, self.n_samples, self._position)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"{self.name}: not a readable audio file ({_detail(exc)})") from None
        except OSError as exc:
            raise AudioError(f"{self.name}: cannot be read ({exc.strerror or exc})") from None
        block = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
        self._last = (start, block)
        return block

    def close(self):
        if self._file is not None:
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


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
                    handle = sf.SoundFile(tmp, "w", samplerate=check_positive_int(sr, "sr"),
                                          channels=n_channels, subtype=kind, format=fmt)
                except (sf.LibsndfileError, RuntimeError, OSError) as exc:
                    raise AudioError(f"{path}: cannot write ({_detail(exc)})") from None
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
            raise AudioError(f"{path}: cannot write ({_detail(exc)})") from None

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
                raise AudioError(f"{path}: cannot write ({_detail(exc)})") from None

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
        tmp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.part")
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
        raise AudioError(f"{path}: cannot write ({getattr(exc, 'strerror', None) or exc})") from None
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

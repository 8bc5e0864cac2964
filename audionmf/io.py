"""Reading and writing audio files.

Signals follow librosa's layout: shape ``(n_samples,)`` for one channel and
``(n_channels, n_samples)`` for several. Files are written atomically: the data
goes to a hidden temporary file in the target folder, which is then renamed over
the final name, so a crash or a full disk never leaves a half-written file
under the name a user asked for (the writing lives in :mod:`audionmf._writing`
and is part of this module's interface).
"""
import os
import re
import stat

import numpy as np
import soundfile as sf

from ._validation import (
    MAX_SAMPLE,
    AudioError,
    ParameterError,
    check_flag,
    check_path,
    check_sample_rate,
)
from ._writing import (
    WRITE_FORMATS,
    OutputFiles,
    _detail,
    atomic_file,
    check_name_fits,
    missing_folders,
    output_format,
    remove_empty_folders,
    save,
    sf_path,
)

__all__ = ["load", "save", "resample", "Signal", "OutputFiles", "WRITE_FORMATS", "atomic_file",
           "output_format", "missing_folders", "remove_empty_folders", "check_name_fits",
           "looks_like_audio"]

#: Extensions taken for audio files when a folder is given (what libsndfile reads).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au")
#: How audio files begin (WAV, RF64, AIFF, FLAC, Ogg).
_AUDIO_MAGIC = (b"RIFF", b"RF64", b"FORM", b"fLaC", b"OggS")


def looks_like_audio(head):
    """Whether a file's first bytes are those of an audio file (WAV, RF64, AIFF, FLAC,
    Ogg): a file given where a model or a melody belongs is then named as audio."""
    return bytes(head[:4]) in _AUDIO_MAGIC


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
        The file is missing, unreadable, not audio, cut short (a WAV, AIFF or Ogg
        that ends before its header or last page says), or holds no samples.
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
                         f"{_position(bad, file_sr)}, beyond what {np.dtype(dtype).name} holds")
    y = data.T  # (n_channels, n_samples)
    if mono:
        y = y.mean(axis=0, keepdims=True)
    if sr is not None and sr != file_sr:
        y = resample(y, file_sr, sr)
        file_sr = sr
    if y.shape[0] == 1:
        y = y[0]
    return np.ascontiguousarray(y, dtype=dtype), int(file_sr)


def _position(index, sr):
    """Where sample ``index`` lies, for a message: ``"2.00 s, sample 44100"``."""
    return f"{index / sr:.2f} s, sample {index}"


def _check_float_dtype(dtype):
    """``dtype`` as a floating np.dtype, or ParameterError naming it."""
    try:
        kind = np.dtype(dtype) if dtype is not None else None
    except TypeError:
        kind = None
    if kind is None or kind.kind != "f":
        raise ParameterError(f"dtype={dtype!r}: expected a floating type, np.float32 or np.float64")
    return kind


def _open(path, *, again=False):
    """An open soundfile.SoundFile, or AudioError naming the file and the problem
    (``again``: a file opened before, whose length was checked then)."""
    if not os.path.exists(path):
        raise AudioError(f"{path}: no such file")
    if os.path.isdir(path):
        raise AudioError(f"{path}: is a directory, not an audio file")
    if not _seekable(path):
        raise AudioError(f"{path}: is a pipe or stream, not a file: its samples are read more than "
                         "once, so save it to a file first")
    try:
        handle = sf.SoundFile(sf_path(path))
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
    if handle.format == "OGG" and not again:
        cut = _ogg_cut_at(path)
        if cut is not None:
            handle.close()
            raise AudioError(f"{path}: truncated: it ends inside an Ogg page, at byte {cut} "
                             "(an interrupted download or copy?)")
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


#: An Ogg page's header: capture pattern, version, flags, granule position, serial
#: number, sequence number, checksum and the number of segments (RFC 3533, section 6).
_OGG_PAGE = 27


def _ogg_cut_at(path):
    """The size of an Ogg file whose last page ends past the end of the file (a file cut
    short, which libsndfile reads as a complete, shorter one), else None.

    The pages are walked from the start by their headers (a read of a few dozen bytes
    per page of a few KB), once per file: a file opened again to seek is not walked
    again. A file whose pages stop being pages, or that ends in a few bytes that do
    not begin a page's header (``OggS`` and version 0), is left to the decoder; one
    that ends on a page's boundary is taken as whole, as is a stream recorded without
    its last page's end-of-stream flag.
    """
    try:
        f = open(path, "rb")
    except OSError:
        return None  # (libsndfile opened it: let the read say what is wrong)
    with f:
        size = os.fstat(f.fileno()).st_size
        at = 0
        while at < size:
            f.seek(at)
            header = f.read(_OGG_PAGE)
            if len(header) < _OGG_PAGE:  # a page's start cut, or a few bytes of something else
                return size if header[:5] == b"OggS\x00" else None
            if header[:4] != b"OggS" or header[4] != 0:
                return None
            table = f.read(header[26])
            if len(table) < header[26]:
                return size
            at += _OGG_PAGE + header[26] + sum(table)
        return size if at > size else None


def _check_length(handle, path, expected, got):
    """Raise AudioError if ``got`` samples could be read where the header gives
    ``expected`` (a file cut short). An MP3's length is an estimate (from the first
    frame's bitrate where it has no Xing header): one that ends early is read as far
    as it goes."""
    if got < expected and handle.format != "MP3":
        raise AudioError(f"{path}: truncated: {got} of the {expected} samples its header "
                         "gives could be read")


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
                where = _position(lo + bad, self.sr)
                size = np.abs(part[:, bad]).max()
                if np.isfinite(size):
                    raise AudioError(f"{self.name}: a sample of magnitude {size:.3g} at {where}, "
                                     f"beyond what audio holds ({MAX_SAMPLE:.0e} at most)")
                raise AudioError(f"{self.name}: NaN or Inf samples (the first at {where})")
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
                    self._file = _open(self.name, again=True)
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

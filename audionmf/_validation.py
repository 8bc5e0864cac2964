"""Errors and small checks shared by the public functions.

Public functions validate their arguments here and raise :class:`ParameterError`
(a ``ValueError``) with the offending value in the message; the numba kernels
behind them trust their input.
"""
import numbers
import os

import numpy as np

__all__ = ["ParameterError", "AudioError"]

#: Loss names accepted wherever a beta-divergence is asked for.
BETA_NAMES = {
    "euclidean": 2.0,
    "frobenius": 2.0,
    "kl": 1.0,
    "kullback-leibler": 1.0,
    "is": 0.0,
    "itakura-saito": 0.0,
}


#: Largest sample magnitude that separation and decomposition accept. They work on
#: spectra in single precision (as the sources are written): with samples up to this,
#: a magnitude or power spectrogram (power <= 2, as check_spectrogram_power requires),
#: even summed over all its bins, stays far below float32's largest value (3.4e38),
#: while anything audio holds fits (integer PCM read unscaled reaches 2.1e9; a louder
#: sample is a mistake, refused in one line). Functions that work in double precision
#: (stft, evaluate) take any finite samples.
MAX_SAMPLE = 1e10


#: Largest magnitude of beta taken. The divergences in use lie in [0, 2]; far beyond,
#: powers of the data overflow (|beta| of 20 or more, or 50 on loud audio, did).
MAX_BETA = 10.0

#: Most components (templates) of a separation, a decomposition or a model: far more
#: than a spectrogram's notes and timbres need, and few enough that a fit of a long file
#: fits in memory (4096 templates of 1025 bins are 16 MB; their activations over 3
#: minutes at 44.1 kHz, 127 MB). Beyond it, a refusal before any work instead of
#: running out of memory.
MAX_COMPONENTS = 4096
#: Highest sampling rate taken where one is asked for (a model's, a resampling's, a
#: file's to write): 768 kHz, the highest rate audio interfaces record at. A model at
#: 10 MHz learned from 30 s of examples would need about 10 GB for its spectrogram;
#: 1e300 is a mistake.
MAX_SR = 768_000


class ParameterError(ValueError):
    """A function was called with an argument it cannot work with."""


class AudioError(Exception):
    """An audio file cannot be read or written, or holds nothing usable."""


def beta_to_float(beta):
    """Map a loss name (``"kl"``, ``"is"``, ``"euclidean"``) or a number to beta."""
    if isinstance(beta, str):
        key = beta.strip().lower()
        if key in BETA_NAMES:
            return BETA_NAMES[key]
        try:
            value = float(key)
        except ValueError:
            raise ParameterError(
                f"beta={beta!r}: expected one of {sorted(BETA_NAMES)} or a number"
            ) from None
    elif isinstance(beta, numbers.Real) and not isinstance(beta, bool):
        value = float(beta)
    else:
        raise ParameterError(f"beta={beta!r}: expected a loss name or a real number")
    if not np.isfinite(value):
        raise ParameterError(f"beta={beta!r}: must be finite")
    if abs(value) > MAX_BETA:
        raise ParameterError(f"beta={beta!r}: must lie in [-{MAX_BETA:g}, {MAX_BETA:g}] "
                             "(0: Itakura-Saito, 1: Kullback-Leibler, 2: Euclidean)")
    return value


def check_positive_int(value, name, minimum=1, maximum=None):
    """Return ``value`` as an int, or raise if it is not an integer in ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ParameterError(f"{name}={value!r}: expected an integer")
    if value < minimum:
        raise ParameterError(f"{name}={value!r}: must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise ParameterError(f"{name}={value!r}: must be at most {maximum}")
    return int(value)


def check_sample_rate(sr, name="sr"):
    """Return ``sr`` as an int in [1, :data:`MAX_SR`] Hz, or raise ParameterError.

    A float is refused, even a whole one: 22050.7 would be truncated silently.
    """
    sr = check_positive_int(sr, name)
    if sr > MAX_SR:
        raise ParameterError(f"{name}={sr}: a sampling rate of at most {MAX_SR} Hz is expected")
    return sr


def check_path(path, name="path"):
    """Return ``os.fspath(path)``, or raise ParameterError for what is not a file name."""
    if isinstance(path, bool) or not isinstance(path, (str, bytes, os.PathLike)) or not os.fspath(path):
        raise ParameterError(f"{name}={path!r}: expected a file name (str or os.PathLike)")
    return os.fspath(path)


def check_flag(value, name):
    """Return ``value`` as a bool, or raise ParameterError if it is not True or False."""
    if not isinstance(value, (bool, np.bool_)):
        raise ParameterError(f"{name}={value!r}: expected True or False")
    return bool(value)


def check_nonnegative_real(value, name, allow_zero=True):
    """Return ``value`` as a float, or raise if it is not a finite real >= 0 (> 0)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ParameterError(f"{name}={value!r}: expected a real number")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = "non-negative" if allow_zero else "positive"
        raise ParameterError(f"{name}={value!r}: must be finite and {bound}")
    return value


def check_spectrogram_power(power):
    """Return the exponent of a spectrogram, ``|X| ** power``, which must lie in (0, 2].

    Spectra are single precision: with samples up to :data:`MAX_SAMPLE`, a power of
    2 stays far below float32's largest value, a power of 3 or more does not.
    """
    power = check_nonnegative_real(power, "power", allow_zero=False)
    if power > 2:
        raise ParameterError(f"power={power!r}: must be at most 2 (magnitude: 1, power "
                             "spectrogram: 2); higher powers overflow single-precision spectra")
    return power


def check_nonnegative_matrix(X, name, dtype=None):
    """Return ``X`` as a 2-D floating array, refusing negative, NaN or Inf entries."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise ParameterError(f"{name} must be a 2-D array, got shape {X.shape}")
    if X.size == 0:
        raise ParameterError(f"{name} is empty (shape {X.shape})")
    if dtype is not None:
        X = X.astype(dtype, copy=False)
    elif X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    if not np.all(np.isfinite(X)):
        raise ParameterError(f"{name} contains NaN or Inf")
    if X.min() < 0:
        raise ParameterError(f"{name} contains negative values (min {X.min():g})")
    return X


#: A 2-D signal with at most this many columns and at least 16 times as many rows is
#: taken for soundfile's (n_samples, n_channels) layout, and refused naming the fix:
#: as (n_channels, n_samples), it would be a few samples of many channels.
LAYOUT_CHANNELS = 64


def check_audio(y, name="audio", *, loudest=None):
    """Check a signal of shape (n_samples,) or (n_channels, n_samples), and with
    ``loudest``, that no sample's magnitude exceeds it.

    An array that looks transposed (see :data:`LAYOUT_CHANNELS`), such as the
    (44100, 2) of ``soundfile.read``, is refused with the fix in the message.
    """
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.floating):
        raise ParameterError(f"{name} must be floating point, got dtype {y.dtype}")
    if y.ndim not in (1, 2):
        raise ParameterError(
            f"{name} must have shape (n_samples,) or (n_channels, n_samples), got {y.shape}"
        )
    if y.shape[-1] == 0 or (y.ndim == 2 and y.shape[0] == 0):
        raise ParameterError(f"{name} holds no samples")
    if y.ndim == 2 and y.shape[1] <= LAYOUT_CHANNELS and y.shape[0] >= 16 * y.shape[1]:
        raise ParameterError(
            f"{name} has shape {y.shape}: that is soundfile's (n_samples, n_channels) layout; "
            "audionmf takes (n_channels, n_samples) as librosa does: pass y.T"
        )
    if not np.all(np.isfinite(y)):
        raise ParameterError(f"{name} contains NaN or Inf samples")
    if loudest is not None:
        peak = max(float(y.max()), -float(y.min()))  # no copy, as np.abs would make
        if peak > loudest:
            raise ParameterError(f"{name} has a sample of magnitude {peak:.3g}, beyond what "
                                 f"audio holds ({loudest:.0e} at most)")
    return y

import numpy as np
import pytest

from audionmf import ParameterError, bin_frequencies, frame_times, istft, stack_frames, stft, unstack_frames
from audionmf.spectrogram import mel_filters


@pytest.mark.parametrize("n_fft", [256, 1024, 2048])
@pytest.mark.parametrize("hop_div", [2, 4, 8])
@pytest.mark.parametrize("n_samples", [5000, 5001])
def test_istft_inverts_stft(rng, n_fft, hop_div, n_samples):
    y = rng.standard_normal(n_samples)
    hop = n_fft // hop_div
    S = stft(y, n_fft=n_fft, hop_length=hop)
    assert S.shape == (n_fft // 2 + 1, 1 + n_samples // hop)
    back = istft(S, length=n_samples, n_fft=n_fft, hop_length=hop)
    assert back.shape == y.shape
    np.testing.assert_allclose(back, y, atol=1e-10)


def test_multichannel_round_trip(rng):
    y = rng.standard_normal((3, 4000))
    S = stft(y, n_fft=512)
    assert S.shape[:2] == (3, 257)
    np.testing.assert_allclose(istft(S, length=4000, n_fft=512), y, atol=1e-10)


def test_window_is_shared_both_ways(rng):
    y = rng.standard_normal(3000)
    S = stft(y, n_fft=512, hop_length=128, window="hamming")
    np.testing.assert_allclose(
        istft(S, length=3000, n_fft=512, hop_length=128, window="hamming"), y, atol=1e-10
    )


def test_a_tone_peaks_at_its_bin():
    sr, n_fft = 8000, 1024
    freqs = bin_frequencies(sr=sr, n_fft=n_fft)
    y = np.sin(2 * np.pi * freqs[100] * np.arange(sr) / sr)
    S = np.abs(stft(y, n_fft=n_fft))
    assert np.all(S[:, 2:-2].argmax(axis=0) == 100)


def test_axes():
    freqs = bin_frequencies(sr=22050, n_fft=2048)
    assert freqs.shape == (1025,)
    assert freqs[0] == 0 and freqs[-1] == pytest.approx(11025)
    times = frame_times(5, sr=22050, hop_length=512)
    np.testing.assert_allclose(times, np.arange(5) * 512 / 22050)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_fft": 1}, "n_fft=1"),
        ({"n_fft": 256, "hop_length": 512}, "hop_length=512 is larger"),
        ({"hop_length": 0}, "hop_length=0"),
    ],
)
def test_bad_parameters(rng, kwargs, match):
    with pytest.raises(ParameterError, match=match):
        stft(rng.standard_normal(1000), **kwargs)


def test_bad_signals():
    with pytest.raises(ParameterError, match="NaN"):
        stft(np.array([0.0, np.nan] * 600))
    with pytest.raises(ParameterError, match="no samples"):
        stft(np.zeros(0))
    with pytest.raises(ParameterError, match="floating"):
        stft(np.zeros(3000, dtype=np.int16))


def test_istft_checks_the_frequency_axis():
    with pytest.raises(ParameterError, match="expected"):
        istft(np.zeros((100, 10), dtype=complex), length=1000, n_fft=2048)


@pytest.mark.parametrize("context", [0, 1, 3])
def test_stacked_frames_round_trip(rng, context):
    V = rng.random((7, 20))
    S = stack_frames(V, context)
    assert S.shape == (7 * (2 * context + 1), 20)
    # Block i of column t is frame t + i - context (edges repeat the end frames).
    for i in range(2 * context + 1):
        for t in (0, 10, 19):
            np.testing.assert_array_equal(S[i * 7 : (i + 1) * 7, t], V[:, min(max(t + i - context, 0), 19)])
    np.testing.assert_allclose(unstack_frames(S, 7, context), V)


def test_unstack_averages_the_guesses(rng):
    M = np.zeros((3 * 4, 5))
    M[0:4, 2] = 3.0  # block 0 of column 2 describes frame 1
    M[8:12, 0] = 6.0  # block 2 of column 0 describes frame 1
    out = unstack_frames(M, 4, 1)
    np.testing.assert_allclose(out[:, 1], 3.0)  # (3 + 0 + 6) / 3
    np.testing.assert_allclose(out[:, 3], 0.0)


@pytest.mark.parametrize("transforms", ["numpy", "scipy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_fft, hop, n", [(2048, 512, 22050), (512, 128, 5001), (256, 100, 3001)])
@pytest.mark.parametrize("window", ["hann", "hamming"])
def test_same_as_librosa(rng, monkeypatch, transforms, dtype, n_fft, hop, n, window):
    """Both ways, with numpy's transforms (a short signal's frames) and scipy's."""
    import librosa

    from audionmf import spectrogram

    monkeypatch.setattr(spectrogram, "SMALL_FFT_FRAMES", 2**62 if transforms == "numpy" else 0)

    y = rng.standard_normal((2, n)).astype(dtype)
    ours = stft(y, n_fft=n_fft, hop_length=hop, window=window)
    theirs = librosa.stft(y, n_fft=n_fft, hop_length=hop, window=window)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    tolerance = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(ours, theirs, atol=tolerance * np.abs(theirs).max())
    back = istft(theirs, length=n, n_fft=n_fft, hop_length=hop, window=window)
    ref = librosa.istft(theirs, length=n, n_fft=n_fft, hop_length=hop, window=window)
    assert back.dtype == ref.dtype
    np.testing.assert_allclose(back, ref, atol=10 * tolerance)


@pytest.mark.parametrize("sr, n_fft, n_mels", [(22050, 2048, 40), (8000, 512, 40), (44100, 4096, 128)])
def test_mel_filters_as_librosa(sr, n_fft, n_mels):
    import librosa

    np.testing.assert_allclose(
        mel_filters(sr=sr, n_fft=n_fft, n_mels=n_mels),
        librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels),
        atol=1e-8,
    )


def test_unknown_window():
    with pytest.raises(ParameterError, match="window='nope'"):
        stft(np.ones(3000), window="nope")


def test_single_precision_is_kept_where_numpy_computes_in_double(monkeypatch, rng):
    """numpy before 2.0 transforms float32 in double: a short signal's spectra and
    inverse stay complex64 and float32 all the same."""
    rfft, irfft = np.fft.rfft, np.fft.irfft
    monkeypatch.setattr(np.fft, "rfft", lambda x, n=None, axis=-1: rfft(x.astype(np.float64), n=n, axis=axis))
    monkeypatch.setattr(np.fft, "irfft", lambda x, n=None, axis=-1: irfft(x.astype(np.complex128), n=n,
                                                                          axis=axis))
    y = rng.standard_normal(4000).astype(np.float32)
    S = stft(y, n_fft=256)
    assert S.dtype == np.complex64
    assert istft(S, length=y.size, n_fft=256).dtype == np.float32

import dataclasses

import librosa
import numpy as np
import pytest

from audionmf import ParameterError, SourceModel, beta_divergence, bin_frequencies, frame_times, nmf, stft
from audionmf.features import Decomposition, decompose

from conftest import gated, rel_error, tone

SR = 8000
N_FFT = 512
HOP = N_FFT // 4


def two_tones():
    """A 440 Hz tone in the first half of each 0.5 s, a 1250 Hz tone in the second."""
    a = 0.3 * gated(tone(440, SR, 2.0), SR, period=0.5, duty=0.5)
    b = 0.3 * gated(tone(1250, SR, 2.0), SR, period=0.5, duty=0.5, offset=0.25)
    return a, b


@pytest.fixture(scope="module")
def signals():
    return two_tones()


@pytest.fixture(scope="module")
def dec(signals):
    a, b = signals
    return decompose(a + b, SR, n_components=2, n_fft=N_FFT, random_state=0)


@pytest.fixture(scope="module")
def model(signals):
    # Learned from the signal as it is (no shifted copies): two templates, two exact tones.
    return SourceModel.learn(signals[0] + signals[1], SR, name="tones", n_components=2,
                             n_fft=N_FFT, context=0, semitones=(0,), max_iter=100, random_state=0)


def magnitude(y):
    return np.abs(stft(y, n_fft=N_FFT))


def tone_order(dec):
    """Component indices of the 440 Hz and the 1250 Hz tone."""
    return tuple(np.argsort(dec.frequencies[dec.templates.argmax(axis=0)]))


def test_shapes_axes_and_parameters(signals, dec):
    n_frames = 1 + len(signals[0]) // HOP
    assert dec.templates.shape == (N_FFT // 2 + 1, 2)
    assert dec.activations.shape == (2, n_frames)
    np.testing.assert_array_equal(dec.frequencies, bin_frequencies(sr=SR, n_fft=N_FFT))
    np.testing.assert_array_equal(dec.times, frame_times(n_frames, sr=SR, hop_length=HOP))
    assert (dec.sr, dec.n_fft, dec.hop_length, dec.window) == (SR, N_FFT, HOP, "hann")
    assert (dec.beta, dec.power, dec.context, dec.n_components) == (1.0, 1.0, 0, 2)


def test_finds_the_tones_and_when_they_sound(signals, dec):
    low, high = tone_order(dec)
    assert dec.frequencies[dec.templates[:, low].argmax()] == pytest.approx(440, abs=SR / N_FFT)
    assert dec.frequencies[dec.templates[:, high].argmax()] == pytest.approx(1250, abs=SR / N_FFT)
    for k, y in ((low, signals[0]), (high, signals[1])):
        envelope = magnitude(y).sum(axis=0)
        assert np.corrcoef(dec.activations[k], envelope)[0, 1] > 0.99


def test_loss_is_the_divergence_of_the_model(signals, dec):
    V = magnitude(signals[0] + signals[1])
    assert dec.loss == pytest.approx(beta_divergence(V, dec.reconstruct(), beta=1), rel=1e-3)
    assert dec.loss < 0.05 * beta_divergence(V, np.full_like(V, V.mean()), beta=1)


def test_components_add_up_to_the_model(dec):
    np.testing.assert_allclose(dec.reconstruct(), dec.templates @ dec.activations, rtol=1e-6)
    total = sum(dec.component(k) for k in range(dec.n_components))
    np.testing.assert_allclose(total, dec.reconstruct(), rtol=1e-5)
    with pytest.raises(ParameterError, match="k=2"):
        dec.component(2)


@pytest.mark.parametrize("dtype, atol", [(np.float64, 1e-10), (np.float32, 1e-6)])
def test_component_audio_sums_to_the_signal(signals, dec, dtype, atol):
    y = (signals[0] + signals[1]).astype(dtype)
    parts = [dec.component_audio(y, k) for k in range(dec.n_components)]
    assert all(p.shape == y.shape and p.dtype == dtype for p in parts)
    np.testing.assert_allclose(sum(parts), y, atol=atol)
    low, high = tone_order(dec)
    assert rel_error(parts[low], signals[0]) < 0.1
    assert rel_error(parts[high], signals[1]) < 0.1


def test_component_audio_needs_the_analysed_signal(signals, dec):
    with pytest.raises(ParameterError, match="frames"):
        dec.component_audio(signals[0][:-HOP], 0)


def test_fixed_templates_give_the_activations_of_nmf(signals, dec):
    a, b = signals
    y = 0.5 * a + b
    # tol=0: where a block stops would otherwise hang on the last bits of V / V.max().
    fixed = decompose(y, SR, templates=dec.templates, n_fft=N_FFT, tol=0)
    np.testing.assert_array_equal(fixed.templates, dec.templates)
    # decompose's spectra are single precision, as separate's
    expected = nmf(magnitude(y.astype(np.float32)), 2, W=dec.templates, update_W=False, tol=0)
    np.testing.assert_allclose(fixed.activations, expected.H, rtol=1e-5)  # float32 round-off
    assert fixed.loss == pytest.approx(expected.loss)
    # Halving the 440 Hz tone halves its activations, not the other's.
    low, high = tone_order(dec)
    ratio = fixed.activations.sum(axis=1) / dec.activations.sum(axis=1)
    assert ratio[low] == pytest.approx(0.5, rel=0.05)
    assert ratio[high] == pytest.approx(1.0, rel=0.05)


def test_templates_array_is_checked(signals, dec):
    y = signals[0] + signals[1]
    with pytest.raises(ParameterError, match="n_components=3 differs"):
        decompose(y, SR, templates=dec.templates, n_fft=N_FFT, n_components=3)
    with pytest.raises(ParameterError, match="rows"):
        decompose(y, SR, templates=dec.templates[:100], n_fft=N_FFT)
    with pytest.raises(ParameterError, match="negative"):
        decompose(y, SR, templates=-dec.templates, n_fft=N_FFT)


def test_source_model_brings_its_analysis(signals, model, dec):
    y = signals[0] + signals[1]
    fixed = decompose(y, SR, templates=model, n_fft=N_FFT)  # agreeing explicit value
    np.testing.assert_array_equal(fixed.templates, model.templates)
    assert (fixed.n_fft, fixed.hop_length, fixed.beta, fixed.power) == (
        model.n_fft, model.hop_length, model.beta, model.power)
    # Templates learned on this signal explain it as well as a free factorization.
    V = magnitude(y)
    assert rel_error(fixed.reconstruct(), V) < 1.05 * rel_error(dec.reconstruct(), V)


@pytest.mark.parametrize("conflict", [dict(beta="is"), dict(n_fft=1024), dict(hop_length=64),
                                      dict(power=2.0), dict(window="hamming")])
def test_source_model_refuses_conflicting_parameters(signals, model, conflict):
    name = next(iter(conflict))
    with pytest.raises(ParameterError, match=f"{name}=.* differs"):
        decompose(signals[0], SR, templates=model, **conflict)


def test_source_model_at_another_rate(signals, model):
    y = signals[0] + signals[1]
    native = decompose(y, SR, templates=model)
    y16 = librosa.resample(y, orig_sr=SR, target_sr=2 * SR)
    dec = decompose(y16, 2 * SR, templates=model)
    assert dec.sr == SR
    np.testing.assert_array_equal(dec.times, native.times)
    np.testing.assert_allclose(dec.activations, native.activations,
                               atol=0.02 * native.activations.max())


def test_templates_with_context(signals):
    y = signals[0] + signals[1]
    model = SourceModel.learn(y, SR, name="ctx", n_components=2, n_fft=N_FFT, context=1,
                              max_iter=50, random_state=0, fits=1)
    for templates in (model, model.templates):
        dec = decompose(y, SR, templates=templates, n_fft=N_FFT)
        n_frames = dec.activations.shape[1]
        assert dec.context == 1 and dec.templates.shape == (3 * (N_FFT // 2 + 1), 2)
        assert dec.reconstruct().shape == (N_FFT // 2 + 1, n_frames)
        np.testing.assert_allclose(sum(dec.component(k) for k in range(2)), dec.reconstruct(),
                                   rtol=1e-5)
        parts = [dec.component_audio(y, k) for k in range(2)]
        np.testing.assert_allclose(sum(parts), y, atol=1e-10)


def test_stereo_factorizes_the_sum_over_channels(signals, dec):
    y = signals[0] + signals[1]
    stereo = np.stack([y, y])
    mono = decompose(y, SR, templates=dec.templates, n_fft=N_FFT)
    both = decompose(stereo, SR, templates=dec.templates, n_fft=N_FFT)
    np.testing.assert_allclose(both.activations, 2 * mono.activations, rtol=1e-4)
    parts = [both.component_audio(stereo, k) for k in range(2)]
    assert parts[0].shape == stereo.shape
    np.testing.assert_allclose(sum(parts), stereo, atol=1e-10)


def test_power_follows_the_divergence(signals):
    dec = decompose(signals[0], SR, n_components=1, beta="is", n_fft=N_FFT, max_iter=5)
    assert (dec.beta, dec.power) == (0.0, 2.0)


def test_callback_sees_every_iteration(signals):
    seen = []
    decompose(signals[0], SR, n_components=1, n_fft=N_FFT, max_iter=7, tol=0,
              callback=lambda i, loss: seen.append(i))
    assert seen == list(range(1, 8))


@pytest.mark.parametrize(
    "y, kwargs, match",
    [
        (np.zeros(SR), {}, "silent"),
        (np.ones(N_FFT - 1), {}, "too short"),
        (np.ones(SR, dtype=int), {}, "floating point"),
        (np.full(SR, np.nan), {}, "NaN"),
        (np.ones(SR), dict(n_components=0), "n_components"),
        (np.ones(SR), dict(beta="nope"), "beta"),
        (np.ones(SR), dict(hop_length=N_FFT + 1), "hop_length"),
        (np.ones(SR), dict(power=3), "power=3.0: must be at most 2"),
    ],
)
def test_bad_input_is_refused(y, kwargs, match):
    with pytest.raises(ParameterError, match=match):
        decompose(y, SR, **{"n_fft": N_FFT, **kwargs})


def test_decomposition_is_read_only(dec):
    with pytest.raises(dataclasses.FrozenInstanceError):
        dec.sr = 1
    with pytest.raises(ValueError, match="read-only"):
        dec.activations[0, 0] = 1.0


def test_save_npz(tmp_path, dec):
    path = tmp_path / "dec.npz"
    dec.save(path)
    with np.load(path, allow_pickle=False) as data:
        for name in ("templates", "activations", "frequencies", "times"):
            np.testing.assert_array_equal(data[name], getattr(dec, name))
        for name in ("sr", "n_fft", "hop_length", "window", "beta", "power", "loss", "context"):
            assert data[name].ndim == 0 and data[name] == getattr(dec, name)
    assert [p.name for p in tmp_path.iterdir()] == ["dec.npz"]


def test_save_csv(tmp_path, dec):
    path = tmp_path / "activations.csv"
    path.write_text("old contents")
    dec.save(str(path))
    lines = path.read_text().splitlines()
    assert lines[0] == "time,c0,c1"
    assert len(lines) == 1 + len(dec.times)
    table = np.loadtxt(path, delimiter=",", skiprows=1)
    np.testing.assert_allclose(table[:, 0], dec.times, rtol=1e-9)
    np.testing.assert_allclose(table[:, 1:], dec.activations.T, rtol=1e-7)
    assert [p.name for p in tmp_path.iterdir()] == ["activations.csv"]


def test_failed_save_leaves_nothing(tmp_path, dec, monkeypatch):
    with pytest.raises(ParameterError, match="use one of .npz, .csv"):
        dec.save(tmp_path / "dec.json")
    with pytest.raises(FileNotFoundError):
        dec.save(tmp_path / "missing" / "dec.npz")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savetxt", full_disk)
    with pytest.raises(OSError, match="No space"):
        dec.save(tmp_path / "dec.csv")
    assert list(tmp_path.iterdir()) == []


def test_decomposition_from_arrays():
    W, H = np.ones((3, 1)), np.arange(1.0, 5.0)[None]
    dec = Decomposition(W, H, frequencies=np.arange(3.0), times=np.arange(4.0), sr=4, n_fft=4,
                        hop_length=1, window="hann", beta=1.0, power=1.0, loss=0.0)
    np.testing.assert_array_equal(dec.reconstruct(), W @ H)
    assert H[0, 0] == 1.0 and dec.activations is not H

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from matplotlib.collections import QuadMesh
from matplotlib.figure import Figure

from audionmf import ParameterError, stft, wiener_masks
from audionmf import plot
from audionmf.features import decompose

from conftest import gated, tone

SR = 8000
N_FFT = 512
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def signal():
    a = 0.3 * gated(tone(440, SR, 1.0, (1, 0.5)), SR, period=0.5, duty=0.5)
    b = 0.3 * gated(tone(1250, SR, 1.0), SR, period=0.5, duty=0.5, offset=0.25)
    return a, b


@pytest.fixture(scope="module")
def dec(signal):
    return decompose(signal[0] + signal[1], SR, n_components=3, n_fft=N_FFT, max_iter=50,
                     random_state=0)


@pytest.fixture(autouse=True)
def warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def saved(fig, tmp_path, name="figure.png"):
    """Save a figure as PNG; check that every axes with data has labelled axes."""
    path = tmp_path / name
    fig.savefig(path, dpi=50)
    assert path.read_bytes()[:8] == PNG
    for ax in fig.axes:
        if ax.get_label() != "<colorbar>" and ax.has_data():
            assert ax.get_xlabel() or ax.get_ylabel()
    return path


@pytest.mark.parametrize("log_freq", [False, True])
def test_spectrogram_of_a_signal(tmp_path, signal, log_freq):
    y = signal[0] + signal[1]
    mesh = plot.spectrogram(y, SR, n_fft=N_FFT, log_freq=log_freq)
    assert isinstance(mesh, QuadMesh)
    ax = mesh.axes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("time (s)", "frequency (Hz)")
    assert ax.get_yscale() == ("symlog" if log_freq else "linear")
    levels = mesh.get_array()
    assert levels.max() == 0.0 and levels.min() >= -plot.TOP_DB
    assert ax.get_xlim()[1] == pytest.approx(len(y) / SR, abs=N_FFT / 4 / SR)
    colorbars = [a for a in ax.figure.axes if a is not ax]
    assert len(colorbars) == 1 and colorbars[0].get_ylabel() == "level (dB)"
    saved(ax.figure, tmp_path)


def test_spectrogram_of_a_matrix_on_given_axes(tmp_path, signal):
    X = stft(signal[0], n_fft=N_FFT)
    fig = Figure()
    axes = fig.subplots(1, 3)
    complex_mesh = plot.spectrogram(X, SR, n_fft=N_FFT, ax=axes[0])
    power_mesh = plot.spectrogram(np.abs(X) ** 2, SR, n_fft=N_FFT, power=2, ax=axes[1])
    linear = plot.spectrogram(np.abs(X), SR, n_fft=N_FFT, db=False, ax=axes[2])
    assert complex_mesh.axes is axes[0] and linear.axes is axes[2]
    # dB does not depend on whether magnitude or power was given.
    np.testing.assert_allclose(power_mesh.get_array(), complex_mesh.get_array(), atol=1e-9)
    np.testing.assert_allclose(linear.get_array().max(), np.abs(X).max())
    stereo = plot.spectrogram(np.stack([signal[0], signal[1]]), SR, n_fft=N_FFT)
    assert stereo.get_array().shape == complex_mesh.get_array().shape
    saved(fig, tmp_path)
    with pytest.raises(ParameterError, match="negative"):
        plot.spectrogram(-np.abs(X), SR, n_fft=N_FFT)
    with pytest.raises(ParameterError, match="n_fft=1024"):
        plot.spectrogram(X, SR, n_fft=1024)


def test_templates(tmp_path, dec):
    lines = plot.templates(dec)
    assert len(lines) == dec.n_components
    ax = lines[0].axes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("component", "frequency (Hz)")
    for k, line in enumerate(lines):
        np.testing.assert_array_equal(line.get_ydata(), dec.frequencies)
        assert line.get_xdata().min() >= k and line.get_xdata().max() == pytest.approx(k + 0.9)
    saved(ax.figure, tmp_path)
    raw = plot.templates(dec.templates)
    assert raw[0].axes.get_ylabel() == "frequency bin"
    with pytest.raises(ParameterError, match="frequencies"):
        plot.templates(dec.templates, frequencies=dec.frequencies[:-1])


def test_activations(tmp_path, dec):
    lines = plot.activations(dec)
    assert len(lines) == dec.n_components
    ax = lines[0].axes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("time (s)", "component")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "1", "2"]
    for line in lines:
        np.testing.assert_array_equal(line.get_xdata(), dec.times)
    saved(ax.figure, tmp_path)
    assert plot.activations(dec.activations)[0].axes.get_xlabel() == "frame"


@pytest.mark.parametrize("with_V", [False, True])
def test_decomposition(tmp_path, signal, dec, with_V):
    V = np.abs(stft(signal[0] + signal[1], n_fft=N_FFT)) if with_V else None
    fig = plot.decomposition(dec, V)
    assert isinstance(fig, Figure)
    titles = [ax.get_title() for ax in fig.axes]
    assert "templates W" in titles and "activations H" in titles
    assert ("spectrogram V" if with_V else "model W H") in titles
    saved(fig, tmp_path)


def test_decomposition_refuses_a_foreign_spectrogram(dec):
    with pytest.raises(ParameterError, match="shape"):
        plot.decomposition(dec, np.ones((10, 10)))


def test_masks(tmp_path, dec):
    M = wiener_masks(dec.templates, dec.activations, [0, 1, 1])
    fig = plot.masks(M, SR, N_FFT // 4, N_FFT, names=["low", "rest"])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:2] == ["mask: low", "mask: rest"]
    assert len(fig.axes) == 3  # two panels and a colorbar
    saved(fig, tmp_path)
    with pytest.raises(ParameterError, match="2 names for 1 masks"):
        plot.masks(M[:1], SR, n_fft=N_FFT, names=["a", "b"])


@pytest.mark.parametrize("kind, n_axes", [("waveform", 3), ("spectrogram", 4)])
def test_sources(tmp_path, signal, kind, n_axes):
    a, b = signal
    fig = plot.sources(a + b, {"low": a, "high": b}, SR, kind=kind, n_fft=N_FFT)
    assert [ax.get_title() for ax in fig.axes[:3]] == ["mixture", "low", "high"]
    assert len(fig.axes) == n_axes
    saved(fig, tmp_path)


def test_long_stereo_waveforms_are_drawn_as_envelopes(tmp_path, rng):
    y = 0.1 * rng.standard_normal((2, 10 * SR))
    fig = plot.sources(y, {"all": y}, SR)
    assert len(fig.axes[0].collections) == 2  # one envelope per channel
    saved(fig, tmp_path)


def test_sources_must_match_the_mixture(signal):
    with pytest.raises(ParameterError, match="shape"):
        plot.sources(signal[0], {"short": signal[1][:100]}, SR)
    with pytest.raises(ParameterError, match="kind"):
        plot.sources(signal[0], {}, SR, kind="3d")


def test_headless_without_pyplot(tmp_path):
    script = f"""
import sys
import numpy as np
from audionmf import plot
from audionmf.features import decompose
y = np.sin(2 * np.pi * 440 * np.arange(4000) / 8000)
plot.decomposition(decompose(y, 8000, n_components=2, n_fft=256, max_iter=5)).savefig(
    {str(tmp_path / "headless.png")!r})
assert "matplotlib.pyplot" not in sys.modules
"""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["MPLBACKEND"] = "Agg"
    subprocess.run([sys.executable, "-W", "error", "-c", script], check=True, env=env, timeout=60)
    assert (tmp_path / "headless.png").read_bytes()[:8] == PNG

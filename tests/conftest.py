import pathlib

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "audio_samples" / "drums_organ_bass.flac"
SAMPLE_STEMS = ROOT / "audio_samples" / "drums_organ_bass_stems"


@pytest.fixture
def rng():
    return np.random.default_rng(20261127)


def tone(freq, sr, seconds, harmonics=(1.0,), amp=1.0):
    """A steady harmonic tone."""
    t = np.arange(int(sr * seconds)) / sr
    return amp * sum(a * np.sin(2 * np.pi * freq * (h + 1) * t) for h, a in enumerate(harmonics))


def gated(signal, sr, period, duty, offset=0.0):
    """Switch a signal on and off: on for ``duty`` of each ``period`` seconds (smooth edges)."""
    t = np.arange(signal.shape[-1]) / sr
    phase = ((t - offset) / period) % 1.0
    gate = (phase < duty).astype(float)
    ramp = np.hanning(int(0.01 * sr) * 2 + 1)
    gate = np.convolve(gate, ramp / ramp.sum(), mode="same")
    return signal * gate

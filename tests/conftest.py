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


def rel_error(estimate, reference):
    return np.linalg.norm(estimate - reference) / np.linalg.norm(reference)


def separate_without_vote(y, sr, models, limits=None, adapt_gains=True, **options):
    """The sources of a mono ``y`` as ``separate(y, sr, models=models, limits=limits,
    **options)`` gives them with the vote off: what the models' templates alone separate
    (through the gain curves fitted to ``y`` unless ``adapt_gains`` is False)."""
    from audionmf import _blocks
    from audionmf.io import Signal
    from audionmf.separate import configure

    mode = configure(sr, {"models": models, **options}, limits=limits)
    assert mode.vote_parts > 0  # on by default
    mode.vote_parts = 0
    mode.adapt_gains = adapt_gains
    pieces = [[] for _ in mode.names]
    _blocks.run(Signal(np.asarray(y, dtype=np.float64), sr), mode,
                lambda index, samples: pieces[index].append(samples[0]))
    return {name: np.concatenate(p) for name, p in zip(mode.names, pieces)}

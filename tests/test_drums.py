"""Drums apart from the rest: separate(two_stems="drums") and its pieces."""
import sys

import librosa
import numpy as np
import pytest
import soundfile as sf

from audionmf import ParameterError, evaluate, load, separate
from audionmf.cli import main
from audionmf.limits import Limits
from audionmf.masks import blend_masks, hpss_mask
from audionmf.analysis import band_pooling
from audionmf.modes.drums import (MASK_POWER, comb_pitches, comb_templates, drum_model,
                                  short_note_part)

from conftest import SAMPLE, SAMPLE_STEMS


def test_the_shipped_drum_model_loads():
    model = drum_model()
    assert (model.name, model.sr, model.n_fft, model.hop_length, model.context) == \
        ("drums", 22050, 2048, 512, 2)
    assert model.templates.shape == (5 * 1025, 64)
    assert np.all(np.isfinite(model.templates)) and model.templates.min() >= 0


@pytest.mark.parametrize("sr, n_fft", [(22050, 2048), (44100, 4096), (8000, 512)])
def test_combs_are_harmonic_series(sr, n_fft):
    W = comb_templates(sr=sr, n_fft=n_fft)
    np.testing.assert_allclose(W.sum(axis=0), 1.0)
    freqs = np.arange(n_fft // 2 + 1) * sr / n_fft
    f0 = 27.5 * 2 ** (np.arange(W.shape[1]) / 12)
    assert np.isclose(f0[-1], 1800, rtol=0.03)
    for j in (0, 24, 48, W.shape[1] - 1):
        # The strongest bin is the fundamental's; the second partial is a quarter of it.
        assert abs(freqs[W[:, j].argmax()] - f0[j]) <= sr / n_fft
        second = W[np.argmin(np.abs(freqs - 2 * f0[j])), j]
        assert second == pytest.approx(W[:, j].max() / 4, rel=0.35)


def test_short_note_part_takes_rows_of_short_notes_only(rng):
    from scipy.ndimage import grey_opening

    T, width = 300, 9
    hits = np.zeros(T)
    for t in range(0, T - width, width + 1):  # notes shorter than width, apart
        hits[t : t + rng.integers(1, width)] = 0.1 + rng.random()
    held = np.zeros(T)
    held[50:200] = 1.0
    H = np.stack([hits, held, hits + 0.05 * held, hits + held, np.zeros(T)])
    short = short_note_part(H, width)
    assert np.all(short >= 0) and np.all(short <= H)
    np.testing.assert_allclose(short[0], hits)  # nothing but short notes: all of it
    assert not short[1].any() and not short[4].any()  # a held note; silence
    kept = H[2] - grey_opening(H[2], size=width, mode="nearest")
    assert kept.sum() >= 0.8 * H[2].sum()  # the held note is a small share here...
    np.testing.assert_allclose(short[2], kept)  # ... so the short notes go
    assert not short[3].any()  # but not where it holds most of the activity
    assert short_note_part(H, 1).sum() == 0  # no note is shorter than one frame


def test_comb_pitches_are_the_combs():
    W = comb_templates(sr=22050, n_fft=4096, fmax=500.0)
    f0 = comb_pitches(fmax=500.0)
    assert W.shape[1] == len(f0) and f0[0] == 27.5 and f0[-1] <= 500.0 < f0[-1] * 2 ** (1 / 12)
    np.testing.assert_allclose(np.diff(np.log2(f0)), 1 / 12)
    np.testing.assert_allclose(W.argmax(axis=0) * 22050 / 4096, f0, atol=22050 / 4096)


@pytest.mark.parametrize("long", [False, True])
def test_a_tuned_drum_goes_with_the_drums(long):
    """Tom hits (a 150 Hz ring of 0.3 s, no broadband attack) over a held bass note:
    the combs explain a pitched ring better than the generic drum templates, and the
    short-note rule sends it to the drums (21 dB; 11 dB without the rule). ``long``:
    as a long file, whose activations are estimated a block at a time."""
    limits = Limits(fit_values=1025 * 5 * 20, block_values=1025 * 40) if long else None
    sr = 22050
    t = np.arange(int(0.3 * sr)) / sr
    ring = np.sin(2 * np.pi * 150 * t) * np.exp(-t / 0.08) * np.hanning(2 * len(t))[len(t):]
    tom = np.zeros(6 * sr)
    for start in np.arange(0.25, 5.6, 0.6):
        i = int(start * sr)
        tom[i : i + len(t)] += ring
    n = np.arange(6 * sr) / sr
    bass = 0.3 * sum(np.sin(2 * np.pi * k * 41.2 * n) / k**2 for k in range(1, 6))
    y = (tom + bass).astype(np.float32)
    sources = separate(y, sr, two_stems="drums", limits=limits)
    np.testing.assert_allclose(sources["drums"] + sources["no_drums"], y, atol=1e-6)
    truth = {"drums": tom, "no_drums": bass}
    assert evaluate(truth, sources, sr)["mean"]["sdr"] > 16.0


@pytest.mark.parametrize("kernel", [(31, 31, 31), (0, 31), (17.5, 31), "31", True, (True, 31),
                                    ((3, 3), 3), [[3, 3]]])
def test_hpss_mask_refuses_a_bad_kernel(kernel):
    with pytest.raises(ParameterError, match="kernel="):
        hpss_mask(np.ones((8, 8)), kernel=kernel)


def test_hpss_mask_is_librosas(rng):
    S = np.abs(rng.standard_normal((120, 90))) ** 2
    _, percussive = librosa.decompose.hpss(S, mask=True)
    np.testing.assert_allclose(hpss_mask(S), percussive, atol=1e-12)


def test_blend_keeps_agreement_and_certainty():
    a = np.linspace(0, 1, 11)
    np.testing.assert_allclose(blend_masks(a, a), a)
    undecided = blend_masks(a, np.full(11, 0.5))
    assert undecided[0] == 0 and undecided[-1] == 1 and np.all(np.diff(undecided) > 0)
    np.testing.assert_allclose(blend_masks(a, 1 - a)[1:-1], 0.5)
    np.testing.assert_allclose(blend_masks(a, 0.8) + blend_masks(1 - a, 0.2), 1.0)


def test_band_pooling_sums_each_bin_once():
    P = band_pooling(1025, sr=22050, n_fft=2048)
    assert P.shape == (216, 1025)
    np.testing.assert_array_equal(P.sum(axis=0), 1)
    below = int(np.ceil(2000 * 2048 / 22050))
    np.testing.assert_array_equal(P[:below, :below], np.eye(below))


@pytest.fixture(scope="module")
def sample():
    y, sr = load(SAMPLE)
    stems = {"drums": sf.read(SAMPLE_STEMS / "drums.flac")[0],
             "no_drums": sf.read(SAMPLE_STEMS / "harmonic.flac")[0]}
    return y, sr, stems


def test_drums_come_apart_from_organ_and_bass(sample):
    y, sr, stems = sample
    sources = separate(y, sr, two_stems="drums")
    assert list(sources) == ["drums", "no_drums"]
    np.testing.assert_allclose(sum(sources.values()), y, atol=1e-6)
    ours = evaluate(stems, sources, sr)["mean"]["sdr"]
    harmonic, percussive = librosa.effects.hpss(y.astype(np.float64))
    hpss = evaluate(stems, {"drums": percussive, "no_drums": harmonic}, sr)["mean"]["sdr"]
    assert ours > 9.0 and ours > hpss + 4.0, (ours, hpss)


def test_two_stems_blocks_and_rates(sample):
    import soxr

    y, sr, stems = sample
    whole = separate(y[: 4 * sr], sr, two_stems="drums")
    blocked = separate(y[: 4 * sr], sr, two_stems="drums", limits=Limits(block_values=1025 * 37))
    for name in whole:  # the HPSS median filters see across block edges
        np.testing.assert_allclose(blocked[name], whole[name], atol=1e-6)
    y44 = soxr.resample(y, sr, 44100).astype(np.float32)
    sources = separate(y44, 44100, two_stems="drums")
    np.testing.assert_allclose(sum(sources.values()), y44, atol=1e-6)
    back = {name: soxr.resample(s, 44100, sr)[: len(y)] for name, s in sources.items()}
    assert evaluate(stems, back, sr)["mean"]["sdr"] > 9.0


def test_two_stems_of_a_long_signal_a_block_at_a_time(sample):
    """Too long for one fit: activations and the short-note rule work a block at a time."""
    y, sr, stems = sample
    y, stems = y[: 6 * sr], {name: s[: 6 * sr] for name, s in stems.items()}
    whole = evaluate(stems, separate(y, sr, two_stems="drums"), sr)["mean"]["sdr"]
    limits = Limits(fit_values=1025 * 5 * 20, block_values=1025 * 40)  # under 100 frames at once
    streamed = separate(y, sr, two_stems="drums", limits=limits)
    np.testing.assert_allclose(sum(streamed.values()), y, atol=1e-6)
    assert abs(evaluate(stems, streamed, sr)["mean"]["sdr"] - whole) < 1.0


def test_two_stems_masks_are_harder_by_default(sample):
    y, sr, _ = sample
    y = y[: 3 * sr]
    default = separate(y, sr, two_stems="drums")
    np.testing.assert_array_equal(default["drums"],
                                  separate(y, sr, two_stems="drums", mask_power=MASK_POWER)["drums"])
    assert MASK_POWER != 2.0
    assert not np.allclose(default["drums"], separate(y, sr, two_stems="drums", mask_power=2.0)["drums"])
    blind = separate(y, sr, n_sources=2, random_state=0)  # other separations keep Wiener's 2
    np.testing.assert_array_equal(blind["source1"],
                                  separate(y, sr, n_sources=2, random_state=0, mask_power=2.0)["source1"])


@pytest.mark.parametrize("options, message", [
    ({"models": []}, "models cannot be used with two_stems: the drum templates decide"),
    ({"groups": [[0], [1]], "n_sources": 2}, "n_sources, groups cannot be used with two_stems"),
    ({"rhythm_weight": 1.0}, "rhythm_weight cannot be used with two_stems"),
    ({"two_stems": "guitar"}, r"two_stems='guitar': expected one of \[[^\]]*'drums'"),
    ({"n_fft": 1024}, "n_fft=1024 differs from the models' 2048"),
])
def test_two_stems_refuses_what_does_not_apply(sample, options, message):
    y, sr, _ = sample
    with pytest.raises(ParameterError, match=message):
        separate(y, sr, **{"two_stems": "drums", **options})


def test_two_stems_from_the_command_line(tmp_path, sample, capsys):
    y, sr, _ = sample
    assert main(["separate", str(SAMPLE), "-o", str(tmp_path), "--two-stems", "drums", "-q"]) == 0
    written = {name: sf.read(tmp_path / SAMPLE.stem / f"{name}.wav", dtype="float32")[0]
               for name in ("drums", "no_drums")}
    expected = separate(y, sr, two_stems="drums")
    for name in written:
        np.testing.assert_allclose(written[name], expected[name], atol=1e-6)
    assert main(["separate", str(SAMPLE), "--two-stems", "drums", "--sources", "3"]) == 2
    assert "--sources cannot be used with --two-stems" in capsys.readouterr().err

"""How `SourceModel.learn` learns (shifts, tempos, copies drawn) and how models are fitted on bands."""
from dataclasses import replace

import numpy as np
import pytest

from audionmf import ParameterError, SourceModel, separate
from audionmf._learning import POOL_ABOVE_HZ, model_pooling
from audionmf.models import learn_n_fft

from conftest import gated, separate_without_vote, tone

SR = 22050


def bright_voice(seconds=2.0, f0=330.0, offset=0.0):
    """Harmonic tones with partials well above POOL_ABOVE_HZ."""
    parts = [tone(f0 * r, SR, seconds / 2, tuple(0.8 ** k for k in range(24))) for r in (1.0, 1.26)]
    return 0.3 * gated(np.concatenate(parts), SR, period=0.4, duty=0.7, offset=offset)


def test_model_pooling_keeps_low_bins_and_pools_high_ones():
    P = model_pooling(1025, sr=SR, n_fft=2048)
    np.testing.assert_array_equal(P.sum(axis=0), 1)  # each bin in exactly one row
    low = int(np.ceil(POOL_ABOVE_HZ * 2048 / SR))  # bins below the edge keep a row each
    np.testing.assert_array_equal(P[:low, :low], np.eye(low))
    assert P.shape[0] < 1025 / 2  # a fit on far fewer rows


def test_the_default_frame_keeps_its_duration_at_every_rate(tmp_path):
    import soundfile as sf

    kw = dict(name="v", n_components=2, fits=1, max_iter=2, semitones=(0,), random_state=0)
    assert learn_n_fft(22050) == 3072 and learn_n_fft(44100) == 6144 and learn_n_fft(11025) == 1536
    for sr in (22050, 44100):
        y = tone(330.0, sr, 1.0, (1.0, 0.5))
        model = SourceModel.learn(y, sr, **kw)
        assert (model.n_fft, model.hop_length) == (learn_n_fft(sr), learn_n_fft(sr) // 4)
        path = tmp_path / f"voice_{sr}.wav"  # the rate read from the first file
        sf.write(path, y, sr)
        assert SourceModel.learn([path], **kw).n_fft == learn_n_fft(sr)
    given = SourceModel.learn(tone(330.0, SR, 1.0), SR, n_fft=1024, **kw)
    assert (given.n_fft, given.hop_length) == (1024, 256)
    with pytest.raises(ParameterError, match="too short: 3000 samples, need n_fft=3072"):
        SourceModel.learn(tone(330.0, SR, 3000 / SR), SR, **kw)


def test_fractional_shifts_are_accepted_and_checked():
    m = SourceModel.learn(bright_voice(), SR, name="v", n_components=4, semitones=(-0.5, 0, 0.5),
                          random_state=0, max_iter=20, fits=1)
    assert m.n_components == 4
    for bad in ((0, float("nan")), (0, 25.0), ("a",), (True,)):
        with pytest.raises(ParameterError, match="semitones"):
            SourceModel.learn(bright_voice(), SR, name="v", semitones=bad)


def test_models_with_high_partials_separate_with_the_fit_on_bands():
    kw = dict(n_components=8, random_state=0, max_iter=60)
    a = SourceModel.learn(bright_voice(f0=330.0), SR, name="a", **kw)
    b = SourceModel.learn(bright_voice(f0=880.0, offset=0.1), SR, name="b", **kw)
    ya, yb = bright_voice(f0=330.0, offset=0.05), bright_voice(f0=880.0, offset=0.15)
    sources = separate(ya + yb, SR, models=[a, b], random_state=0)
    np.testing.assert_allclose(sources["a"] + sources["b"], ya + yb, atol=1e-5)
    for name, truth in (("a", ya), ("b", yb)):
        assert np.linalg.norm(sources[name] - truth) < 0.2 * np.linalg.norm(truth)


def test_stretched_spectrograms_keep_their_spectra():
    from audionmf._learning import stretched

    S = np.outer(np.arange(1.0, 5.0), np.linspace(1.0, 2.0, 101))  # a ramp in time
    same, = stretched([S], 1.0)
    np.testing.assert_array_equal(same, S)
    fast, = stretched([S], 1.25)
    slow, = stretched([S], 0.8)
    assert fast.shape[1] == 80 and slow.shape[1] == 125  # fewer frames played faster
    np.testing.assert_allclose(fast[:, -1], S[:, 98] * 0.25 + S[:, 99] * 0.75)  # frame 98.75
    np.testing.assert_allclose(slow[:, 5], S[:, 4])  # frame 4.0
    np.testing.assert_allclose(fast / fast[0], np.arange(1.0, 5.0)[:, None] + 0 * fast)  # spectra kept
    with pytest.raises(ParameterError, match="tempos"):
        SourceModel.learn(bright_voice(), SR, name="v", tempos=(3.0,))


def test_copies_learned_from_are_bounded(monkeypatch):
    import audionmf.models as models
    from audionmf._learning import MAX_COPIES

    seen = []
    real = models.factorize

    def spy(V, *args, **kwargs):
        seen.append(V.shape[1])
        return real(V, *args, **kwargs)

    monkeypatch.setattr(models, "factorize", spy)
    y = bright_voice() + 1e-3 * np.random.default_rng(0).standard_normal(2 * SR)  # no silent frame
    SourceModel.learn(y, SR, name="v", n_components=4, max_iter=5, semitones=(0,), tempos=(1,),
                      silence_db=-200.0, fits=1)
    SourceModel.learn(y, SR, name="v", n_components=4, max_iter=5, silence_db=-200.0, fits=1,
                      semitones=np.arange(-2, 2.01, 0.5), tempos=(0.85, 1, 1.15))
    frames = seen[0]  # the example's own
    # 9 shifts x 3 tempos drawn down to MAX_COPIES times them (the tempos change the count a bit)
    assert 0.98 * MAX_COPIES * frames <= seen[1] <= 1.03 * MAX_COPIES * frames


def test_fits_are_factorizations_from_different_starts():
    kw = dict(n_components=3, semitones=(0,), random_state=0, max_iter=20)
    single = SourceModel.learn(bright_voice(), SR, name="v", fits=1, **kw)
    three = SourceModel.learn(bright_voice(), SR, name="v", fits=3, **kw)
    assert three.n_components == 9 and three.fits == 3
    assert [list(g) for g in three.groups()] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    # the same frames; the first start is the one-fit model's, the others differ
    np.testing.assert_allclose(three.templates[:, :3], single.templates)
    assert not np.allclose(three.templates[:, 3:6], three.templates[:, :3])
    for bad in (0, 9, 2.0, True):
        with pytest.raises(ParameterError, match="fits"):
            SourceModel.learn(bright_voice(), SR, name="v", fits=bad, **kw)
    with pytest.raises(ParameterError, match="fits=3: more factorizations than the 2 templates"):
        replace(three, templates=three.templates[:, :2])


def test_an_ensemble_averages_the_masks_of_its_fits():
    """Each fit of the ensemble separates on its own; the ensemble's sources (before the
    vote) are the average of theirs, and still sum to the mixture. A model of one fit
    beside one of two lends its templates to both fits."""
    kw = dict(n_components=6, random_state=0, max_iter=40, fits=2)
    a = SourceModel.learn(bright_voice(f0=330.0), SR, name="a", **kw)
    b = SourceModel.learn(bright_voice(f0=880.0, offset=0.1), SR, name="b", **kw)
    y = bright_voice(f0=330.0, offset=0.05) + bright_voice(f0=880.0, offset=0.15)

    def alone(model, g):
        return replace(model, templates=model.templates[:, model.groups()[g]], fits=1)

    def by_models(models):  # the models' masks alone: the vote and the gain curves off
        return separate_without_vote(y, SR, models, adapt_gains=False, random_state=0)

    both = by_models([a, b])
    fits = [by_models([alone(a, g), alone(b, g)]) for g in (0, 1)]
    for name in ("a", "b"):
        np.testing.assert_allclose(both[name], (fits[0][name] + fits[1][name]) / 2, atol=1e-6)
    np.testing.assert_allclose(both["a"] + both["b"], y, atol=1e-5)
    mixed = by_models([a, alone(b, 0)])
    lent = [by_models([alone(a, g), alone(b, 0)]) for g in (0, 1)]
    np.testing.assert_allclose(mixed["a"], (lent[0]["a"] + lent[1]["a"]) / 2, atol=1e-6)
    voted = separate(y, SR, models=[a, b], random_state=0)
    np.testing.assert_allclose(voted["a"] + voted["b"], y, atol=1e-5)
    with_free = separate(y, SR, models=[a, b], free_components=2, random_state=0)
    np.testing.assert_allclose(sum(with_free.values()), y, atol=1e-5)


def test_ensemble_files_round_trip_and_single_fit_files_stay_version_1(tmp_path):
    import zipfile

    kw = dict(n_components=2, semitones=(0,), random_state=0, max_iter=5)
    for fits, version in ((1, 1), (2, 2)):
        model = SourceModel.learn(bright_voice(), SR, name="v", fits=fits, **kw)
        path = tmp_path / f"v{fits}.npz"
        model.save(path)
        with np.load(path) as data:
            assert int(data["format_version"]) == version and ("fits" in data.files) == (fits > 1)
        loaded = SourceModel.load(path)
        assert loaded.fits == fits
        np.testing.assert_array_equal(loaded.templates, model.templates)
    with zipfile.ZipFile(tmp_path / "v2.npz") as archive:  # a fits field that cannot be
        members = {n: archive.read(n) for n in archive.namelist()}
    import io as _io

    buffer = _io.BytesIO()
    np.save(buffer, np.int64(5))
    members["fits.npy"] = buffer.getvalue()
    with zipfile.ZipFile(tmp_path / "bad.npz", "w") as archive:
        for n, data in members.items():
            archive.writestr(n, data)
    from audionmf import ModelError

    with pytest.raises(ModelError, match="bad.npz: inconsistent model: fits=5: more factorizations"):
        SourceModel.load(tmp_path / "bad.npz")

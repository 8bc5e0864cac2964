import functools
import numpy as np
import pytest

from audionmf import ParameterError, group_components, nmf, separate, wiener_masks
from audionmf.grouping import activation_features, template_features

from conftest import gated, tone

SR = 8000


def relative_error(estimate, reference):
    return np.linalg.norm(estimate - reference) / np.linalg.norm(reference)


def best_match_error(sources, references):
    """Largest relative error over the sources, under the best of the two pairings."""
    est = list(sources.values())
    straight = max(relative_error(est[0], references[0]), relative_error(est[1], references[1]))
    swapped = max(relative_error(est[0], references[1]), relative_error(est[1], references[0]))
    return min(straight, swapped)


@pytest.fixture
def two_tones():
    a = 0.3 * gated(tone(440, SR, 3, (1, 0.5, 0.25)), SR, period=1.0, duty=0.5)
    b = 0.3 * gated(tone(1250, SR, 3, (1, 0.3)), SR, period=0.7, duty=0.5, offset=0.2)
    return a, b


@pytest.fixture
def tone_and_clicks():
    rng = np.random.default_rng(5)
    clicks = np.zeros(3 * SR)
    for start in range(0, 3 * SR, SR // 4):
        clicks[start : start + 200] += rng.standard_normal(200) * np.exp(-np.arange(200) / 30)
    return 0.2 * tone(660, SR, 3, (1, 0.4)), 0.5 * clicks


@pytest.mark.parametrize("n_components", [2, 16])
def test_two_tones_are_separated(two_tones, n_components):
    a, b = two_tones
    sources = separate(a + b, SR, n_sources=2, n_components=n_components, n_fft=512, random_state=0)
    assert best_match_error(sources, (a, b)) < 0.05


def test_tone_and_clicks_are_separated(tone_and_clicks):
    a, b = tone_and_clicks
    sources = separate(a + b, SR, n_sources=2, n_components=4, n_fft=512, random_state=0)
    assert best_match_error(sources, (a, b)) < 0.25


@pytest.mark.parametrize("dtype, tolerance", [(np.float32, 1e-6), (np.float64, 1e-12)])
@pytest.mark.parametrize("n_sources", [1, 2, 3])
def test_sources_sum_to_the_mixture(rng, dtype, tolerance, n_sources):
    y = (0.3 * rng.standard_normal(9000)).astype(dtype)
    sources = separate(y, SR, n_sources=n_sources, n_fft=256, max_iter=20)
    assert list(sources) == [f"source{i + 1}" for i in range(n_sources)]
    for s in sources.values():
        assert s.shape == y.shape and s.dtype == dtype
        assert np.all(np.isfinite(s))
    np.testing.assert_allclose(sum(sources.values()), y, atol=tolerance)


def test_stereo_gives_stereo_sources_masked_per_channel(two_tones):
    a, b = two_tones
    left = a + b
    y = np.stack([left, 0.5 * left])
    sources = separate(y, SR, n_sources=2, n_components=4, n_fft=512, random_state=0)
    for s in sources.values():
        assert s.shape == y.shape
        # One set of masks for both channels: the right channel stays half the left.
        np.testing.assert_allclose(s[1], 0.5 * s[0], atol=1e-6)
    np.testing.assert_allclose(sum(sources.values()), y, atol=1e-6)
    mono = separate(left, SR, n_sources=2, n_components=4, n_fft=512, random_state=0)
    assert best_match_error({k: v[0] for k, v in sources.items()}, list(mono.values())) < 1e-3


def test_same_seed_same_sources(rng):
    y = rng.standard_normal(6000)
    a = separate(y, SR, n_fft=256, max_iter=30, random_state=3)
    b = separate(y, SR, n_fft=256, max_iter=30, random_state=3)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize("mask_power", [0.5, 1.0, 2.0, 8.0])
def test_masks_sum_to_one(rng, mask_power):
    W, H = rng.random((20, 6)), rng.random((6, 30))
    W[4] = 0.0  # a bin no source explains
    labels = np.array([0, 1, 2, 0, 1, 2])
    masks = wiener_masks(W, H, labels, mask_power=mask_power)
    assert masks.shape == (3, 20, 30)
    assert masks.min() >= 0 and masks.max() <= 1
    np.testing.assert_allclose(masks.sum(axis=0), 1.0, atol=1e-12)
    np.testing.assert_allclose(masks[:, 4], 1 / 3)


def test_masks_follow_the_formula(rng):
    W, H = rng.random((5, 4)), rng.random((4, 7))
    labels = np.array([0, 0, 1, 1])
    model0, model1 = W[:, :2] @ H[:2], W[:, 2:] @ H[2:]
    masks = wiener_masks(W, H, labels, mask_power=2)
    np.testing.assert_allclose(masks[0], model0**2 / (model0**2 + model1**2))


def test_masks_need_a_component_per_source(rng):
    with pytest.raises(ParameterError, match="no component"):
        wiener_masks(rng.random((5, 3)), rng.random((3, 4)), np.array([0, 2, 2]))


def test_grouping_puts_alike_templates_together(rng):
    """Templates that are scaled copies of two shapes fall into two groups."""
    freqs = np.arange(513)
    low = np.exp(-freqs / 20.0)  # dark, bass-like
    high = np.exp(-((freqs - 300) ** 2) / 2000.0)  # a bright band
    W = np.stack([low * 1.0, high * 2.0, low * 0.5, high * 0.7, low * 3.0, high]).T
    W = W * rng.uniform(0.9, 1.1, W.shape)
    H = rng.random((6, 40))
    labels = group_components(W, H, 2, sr=SR, n_fft=1024, random_state=0)
    assert len(set(labels[[0, 2, 4]])) == 1 and len(set(labels[[1, 3, 5]])) == 1
    assert labels[0] != labels[1]
    energy = [(W[:, labels == s] @ H[labels == s]).sum() for s in (0, 1)]
    assert energy[0] >= energy[1]  # loudest source first


def test_grouping_leaves_no_source_empty(rng):
    V = rng.random((257, 4)) @ rng.random((4, 50))
    res = nmf(V, 5, max_iter=30, random_state=0)
    for n in range(1, 6):
        labels = group_components(res.W, res.H, n, sr=SR, n_fft=512, random_state=0)
        assert sorted(set(labels)) == list(range(n))


def test_template_features_ignore_level(rng):
    W = rng.random((513, 3))
    F = template_features(W, sr=SR, n_fft=1024)
    assert F.shape == (3, 13)  # MFCC 1..13
    np.testing.assert_allclose(F, template_features(7 * W, sr=SR, n_fft=1024))


@pytest.mark.parametrize(
    "y, kwargs, match",
    [
        (np.zeros(5000), {}, "silent"),
        (np.ones(100), {}, "too short: 100 samples"),
        (np.r_[np.ones(5000), np.nan], {}, "NaN"),
        (np.ones(5000), {"n_sources": 3, "n_components": 2}, "n_components=2 is fewer than n_sources=3"),
        (np.ones(5000), {"n_sources": 65}, "n_sources=65: must be at most 64"),
        (np.ones(5000), {"mask_power": 0}, "mask_power"),
        (np.ones(5000), {"power": 3}, r"power=3.0: must be at most 2"),
        (np.ones(5000), {"beta": "hellinger"}, "beta"),
        (np.ones((2, 3, 5000)), {}, "shape"),
    ],
)
def test_bad_input_is_refused(y, kwargs, match):
    with pytest.raises(ParameterError, match=match):
        separate(y, SR, **{"n_fft": 512, **kwargs})


def test_activation_features_tell_hits_from_notes(rng):
    n = 400
    sustained = 1 + np.sin(2 * np.pi * np.arange(n) / 200)  # slow swell
    hits = np.zeros(n)
    hits[::20] = 1.0  # a click every 20 frames
    F = activation_features(np.stack([sustained, hits]), sr=SR, hop_length=128)
    assert F.shape == (2, 5)
    assert F[1, 3] > F[0, 3]  # share of the fastest modulation band
    assert F[1, 4] > F[0, 4]  # sparseness


def test_activation_features_leave_out_excerpt_seams(rng):
    """Excerpts side by side, the same swell in each at another level: the modulation
    bands are those of one swell, as if the levels were one; the jumps at the seams
    would count without ``segment``."""
    swell = 1 + np.sin(2 * np.pi * np.arange(50) / 25)
    levels = np.concatenate([level * swell for level in rng.uniform(0.2, 1.0, 6)])
    even = np.tile(swell, 6)
    bands = slice(0, 4)  # the sparseness (column 4) is of the whole row, levels and all
    F = activation_features(levels[None], sr=SR, hop_length=128, segment=50)
    reference = activation_features(even[None], sr=SR, hop_length=128, segment=50)
    np.testing.assert_allclose(F[:, bands], reference[:, bands], atol=1e-9)
    seamed = activation_features(levels[None], sr=SR, hop_length=128)
    assert np.abs(seamed[:, bands] - reference[:, bands]).max() > 1
    with pytest.raises(ParameterError, match="not whole excerpts"):
        activation_features(levels[None], sr=SR, hop_length=128, segment=70)


def test_rhythm_weight_groups_by_how_components_move(rng):
    """Templates alike two by two in timbre, but with crossed rhythms: rhythm decides."""
    freqs = np.arange(513)
    low, high = np.exp(-freqs / 20.0), np.exp(-((freqs - 300) ** 2) / 2000.0)
    W = np.stack([low, high, low * 0.9, high * 1.1]).T * rng.uniform(0.95, 1.05, (513, 4))
    n = 400
    smooth = 1.5 + np.sin(2 * np.pi * np.arange(n) / 200)
    hits = np.zeros(n)
    hits[::20] = 1.0
    H = np.stack([smooth, smooth * 0.8, hits, hits * 1.2]) + 1e-3
    by_timbre = group_components(W, H, 2, sr=SR, n_fft=1024, random_state=0)
    assert by_timbre[0] == by_timbre[2] and by_timbre[1] == by_timbre[3]
    by_rhythm = group_components(W, H, 2, sr=SR, n_fft=1024, rhythm_weight=5.0, random_state=0)
    assert by_rhythm[0] == by_rhythm[1] and by_rhythm[2] == by_rhythm[3]
    assert by_rhythm[0] != by_rhythm[2]


def spectrum(y, n_fft=1024):
    import librosa

    return np.abs(librosa.stft(y, n_fft=n_fft, hop_length=n_fft // 4))


def test_percussive_share_of_notes_and_clicks(tone_and_clicks, two_tones):
    from audionmf.grouping import percussive_share
    from audionmf.modes.blind import RHYTHM_ABOVE_PERCUSSIVE_SHARE

    notes, clicks = tone_and_clicks
    chord = notes + 0.2 * tone(880, SR, 3, (1, 0.5))
    shares = [percussive_share(spectrum(y), sr=SR, n_fft=1024) for y in (chord, clicks, chord + clicks)]
    assert shares[0] < RHYTHM_ABOVE_PERCUSSIVE_SHARE / 2 < 0.5 < shares[1]
    assert shares[0] < shares[2] < shares[1]
    S = spectrum(clicks)
    assert percussive_share(np.zeros_like(S), sr=SR, n_fft=1024) == 0.0
    assert percussive_share(10.0 * S, sr=SR, n_fft=1024) == pytest.approx(shares[1], rel=1e-5)
    # past max_stretches, some of them: about the same share for a steady pattern
    long = np.tile(S, (1, 8))
    assert percussive_share(long, sr=SR, n_fft=1024, stretch=64, max_stretches=4) == pytest.approx(
        percussive_share(long, sr=SR, n_fft=1024), abs=0.05)
    # excerpts of notes side by side, each split on its own: their seams are not hits
    notes_S = spectrum(sum(two_tones))
    excerpts = np.hstack([notes_S[:, t:t + 16] for t in range(0, notes_S.shape[1] - 16, 24)])
    assert percussive_share(excerpts, sr=SR, n_fft=1024, stretch=16) < RHYTHM_ABOVE_PERCUSSIVE_SHARE / 2
    assert percussive_share(excerpts, sr=SR, n_fft=1024, stretch=256) > RHYTHM_ABOVE_PERCUSSIVE_SHARE
    with pytest.raises(ParameterError, match="513 rows"):
        percussive_share(S[:100], sr=SR, n_fft=1024)
    for bad in ({"max_stretches": 0}, {"power": 0}, {"stretch": -1}, {"hop_length": 0}):
        with pytest.raises(ParameterError, match=next(iter(bad))):
            percussive_share(S, sr=SR, n_fft=1024, **bad)


def test_percussive_share_keeps_its_filters_in_seconds():
    """The same sound analysed with a hop half as long scores about the same: the
    median filter across time spans the same duration, not the same frames (bursts
    of noise 0.3 s long are hits to a filter 0.72 s long, not to one half as long)."""
    import librosa

    from audionmf.grouping import percussive_share

    noise = np.random.default_rng(0).standard_normal(6 * SR)
    y = gated(noise, SR, period=1.0, duty=0.3) + 0.05 * tone(440, SR, 6, (1, 0.5))
    shares = [percussive_share(np.abs(librosa.stft(y, n_fft=1024, hop_length=hop)), sr=SR, n_fft=1024,
                               hop_length=hop) for hop in (256, 128)]
    assert shares[0] > 0.8
    assert shares[1] == pytest.approx(shares[0], abs=0.05)


def test_percussive_share_filter_fits_a_stretch():
    """The filter across time is at most a stretch long and at least 3 frames: at
    a tiny hop (359 frames would span 0.72 s) the score is the one of the longest
    odd filter that fits a stretch of 64 frames (63, spanning 0.72 s at hop 92);
    at a huge hop (1 frame would) the one of 3 frames."""
    from audionmf.grouping import percussive_share

    S = np.abs(np.random.default_rng(1).standard_normal((513, 300))) ** 3
    share = functools.partial(percussive_share, S, sr=SR, n_fft=1024, stretch=64)
    assert share(hop_length=16) == share(hop_length=92)
    assert share(hop_length=16) != share(hop_length=128)  # (where the cap does not bind)
    low = functools.partial(percussive_share, S, sr=4000, n_fft=1024)
    assert low(hop_length=4096) == low(hop_length=1024)  # 1 frame -> 3; 3 frames
    assert low(hop_length=4096) != low(hop_length=512)


def test_attack_asymmetry_known_answers():
    """A struck note (a jump, then a slow fade) scores high, the same note backwards
    exactly as low, a note that rises and falls alike 0; the scale does not count."""
    from audionmf.grouping import attack_asymmetry

    struck = np.r_[np.zeros(3), 0.9 ** np.arange(40)]
    swell = np.r_[np.linspace(0, 1, 11), np.linspace(1, 0, 11)[1:]]
    H = np.vstack([struck, struck[::-1], np.r_[swell, np.zeros(22)], 7.5 * struck, np.full(43, 2.0)])
    asym = attack_asymmetry(H)
    rises = 1.0  # the jump, squared; the falls: (0.1 * 0.9**k)**2 summed over 39 steps
    falls = sum((0.1 * 0.9 ** k) ** 2 for k in range(39))
    assert asym[0] == pytest.approx(np.log(rises / falls), rel=1e-9)
    assert asym[1] == pytest.approx(-asym[0], rel=1e-12)
    assert asym[2] == pytest.approx(0.0, abs=1e-9)
    assert asym[3] == pytest.approx(asym[0], rel=1e-12)
    assert asym[4] == 0.0 and np.all(np.isfinite(asym))
    floored = attack_asymmetry(H, floor=10.0)  # against a floor ten times the jump: near 0
    assert abs(floored[0]) < 0.1 * asym[0] and floored[3] > floored[0]  # the louder note counts more


@pytest.mark.parametrize("n_components", [6, 12, 24])
def test_three_steady_tones_stay_apart(n_components):
    """Three sustained tones, grouped as sustained notes (timbre, attack, refinement):
    the faint spare components of a large K must not make a source of their own."""
    a = 0.3 * gated(tone(440, SR, 4, (1, 0.5)), SR, period=1.0, duty=0.5)
    b = 0.3 * gated(tone(1250, SR, 4, (1, 0.3)), SR, period=0.7, duty=0.5, offset=0.2)
    c = 0.2 * gated(tone(2100, SR, 4), SR, period=0.9, duty=0.4, offset=0.1)
    sources = separate(a + b + c, SR, n_sources=3, n_components=n_components, n_fft=512, random_state=0)
    for reference in (a, b, c):
        assert min(relative_error(s, reference) for s in sources.values()) < 0.05


def test_grouping_by_attack_where_timbre_cannot_tell():
    """Four components of one template: two struck, two swelling. By timbre alone
    the grouping is a guess; with the attack weight it follows how the notes start."""
    W = np.repeat(np.exp(-np.arange(257) / 20.0)[:, None], 4, axis=1)
    struck = np.r_[np.zeros(3), 0.85 ** np.arange(30)]
    swell = np.r_[np.linspace(0, 1, 16), np.linspace(1, 0, 17)[1:], np.zeros(1)]
    H = np.vstack([np.tile(struck, 6), np.roll(np.tile(struck, 6), 11),
                   np.tile(swell, 6), np.roll(np.tile(swell, 6), 7)])
    labels = group_components(W, H, 2, sr=SR, n_fft=512, attack_weight=1.5, random_state=0)
    assert labels[0] == labels[1] != labels[2] == labels[3]
    with pytest.raises(ParameterError, match="attack_weight"):
        group_components(W, H, 2, sr=SR, n_fft=512, attack_weight=-1)


def test_assign_by_masks_follows_the_coarse_sources():
    """Fine components each inside one coarse source's band go to that source;
    sources are then numbered loudest first, and none is left empty."""
    from audionmf.grouping import assign_by_masks

    rng = np.random.default_rng(0)
    n_frames = 50
    low, high = np.r_[np.ones(10), np.zeros(10)], np.r_[np.zeros(10), np.ones(10)]
    W_coarse = np.column_stack([low, high])
    H_coarse = rng.random((2, n_frames)) + 0.1
    labels_coarse = np.array([0, 1])
    # fine: two components in the low band, two in the high one (louder)
    W = np.column_stack([low * rng.random(20), high * rng.random(20), low * rng.random(20),
                         high * rng.random(20)])
    H = np.vstack([rng.random(n_frames), 5 * rng.random(n_frames), rng.random(n_frames),
                   5 * rng.random(n_frames)])
    labels = assign_by_masks(W, H, W_coarse, H_coarse, labels_coarse)
    np.testing.assert_array_equal(labels, [1, 0, 1, 0])  # the high band is louder: source 0
    # all fine components in the low band: the high source still gets one
    labels = assign_by_masks(W[:, [0, 2]], H[[0, 2]], W_coarse, H_coarse, labels_coarse)
    assert sorted(labels) == [0, 1]
    with pytest.raises(ParameterError, match="different spectrograms"):
        assign_by_masks(W, H[:, :-1], W_coarse, H_coarse, labels_coarse)
    with pytest.raises(ParameterError, match="3 labels for 2 coarse components"):
        assign_by_masks(W, H, W_coarse, H_coarse, [0, 1, 1])


def test_attack_asymmetry_leaves_out_excerpt_seams():
    """Activations of excerpts laid side by side: the jumps at their seams are no
    rise or fall of a note. Left out, each swelling note scores 0 again."""
    from audionmf.grouping import attack_asymmetry

    rng = np.random.default_rng(0)
    swell = np.r_[np.linspace(0, 1, 8), np.linspace(1, 0, 8)[1:]]  # 15 frames, symmetric
    excerpts = [level * swell for level in rng.uniform(0.5, 2, 6)]
    H = np.concatenate([e + offset for e, offset in zip(excerpts, rng.uniform(0, 1, 6))])[None]
    assert abs(attack_asymmetry(H)[0]) > 0.05  # the seams' jumps count
    assert attack_asymmetry(H, segment=15)[0] == pytest.approx(0.0, abs=1e-9)


def test_refinement_needs_room(monkeypatch, two_tones):
    """No finer fit where it would have more components than frames (nndsvda could
    not start it)."""
    module, seen = refinements(monkeypatch)
    a, b = two_tones
    short = (a + b)[: 20 * 128]  # 21 frames: 12 components fit, 24 do not
    sources = separate(short, SR, n_sources=2, n_components=12, n_fft=512, init="nndsvda", random_state=0)
    assert seen == [12] and np.allclose(sum(sources.values()), short)
    separate(a + b, SR, n_sources=2, n_components=6, n_fft=512, init="nndsvda", random_state=0)
    assert seen == [12, 6, 12]


def refinements(monkeypatch):
    """The fits the blind mode runs: the n_components of each."""
    import sys

    module = sys.modules["audionmf.modes.blind"]
    seen, real_nmf = [], module.nmf

    def spy(V, K, **options):
        seen.append(K)
        return real_nmf(V, K, **options)

    monkeypatch.setattr(module, "nmf", spy)
    return module, seen


def test_sustained_notes_are_refined(monkeypatch, two_tones, tone_and_clicks):
    """Blind grouping of sustained notes is refined by a fit with twice the components,
    whose sources sum to the mixture; not for a percussive mixture or with groups."""
    module, seen = refinements(monkeypatch)
    a, b = two_tones
    sources = separate(a + b, SR, n_sources=2, n_components=6, n_fft=512, random_state=0)
    assert seen == [6, 12]
    assert best_match_error(sources, (a, b)) < 0.05
    np.testing.assert_allclose(sum(sources.values()), a + b, atol=1e-9)
    seen.clear()
    notes, clicks = tone_and_clicks
    separate(notes + 3.0 * clicks, SR, n_sources=2, n_components=6, n_fft=512, random_state=0,
             rhythm_weight=0)  # timbre only, but plainly percussive: no refinement
    separate(a + b, SR, groups=[[0, 1, 2], [3, 4, 5]], n_fft=512, random_state=0)
    assert seen == [6, 6]


def test_long_sustained_mixtures_are_refined_on_stretches(monkeypatch, two_tones):
    """Past limits.refine_values the finer fit is fitted on evenly spread stretches of
    limits.excerpt_frames frames, and gives its templates to a fit of all the frames'
    activations; the sources are as good, and sum to the mixture."""
    import sys

    from audionmf.limits import Limits
    from audionmf.modes.blind import refined_frames

    module = sys.modules["audionmf.modes.blind"]
    a, b = (np.tile(x, 4) for x in two_tones)  # 12 s: 751 frames of hop 128
    fits, real_nmf = [], module.nmf

    def spy(V, K, **options):
        fits.append((K, V.shape[1], options.get("update_W", True)))
        return real_nmf(V, K, **options)

    monkeypatch.setattr(module, "nmf", spy)
    whole = separate(a + b, SR, n_sources=2, n_components=6, n_fft=512, random_state=0)
    assert fits == [(6, 751, True), (12, 751, True)]
    two = Limits(refine_values=257 * 600)  # 2 stretches of the 2 there are
    fits.clear()
    stretches = separate(a + b, SR, n_sources=2, n_components=6, n_fft=512, random_state=0, limits=two)
    assert fits == [(6, 751, True), (12, 512, True), (12, 751, False)]
    assert best_match_error(stretches, (a, b)) < 0.05
    assert best_match_error(whole, (a, b)) < 0.05
    np.testing.assert_allclose(sum(stretches.values()), a + b, atol=1e-9)
    V = np.ones((257, 751))
    np.testing.assert_array_equal(refined_frames(V, two), np.arange(512))
    one = Limits(refine_values=257 * 300)  # 1 stretch, from the start
    np.testing.assert_array_equal(refined_frames(V, one), np.arange(256))
    three = Limits(refine_values=257 * 256 * 3)  # 3 of 7: first, middle, last
    picked = refined_frames(np.ones((257, 7 * 256 + 5)), three)
    np.testing.assert_array_equal(picked[::256], [0, 3 * 256, 6 * 256])
    assert len(picked) == 3 * 256
    none = Limits(refine_values=257 * 255)  # not even one stretch: none
    assert refined_frames(V, none).size == 0


def test_refinement_stretches_hold_sound(monkeypatch, two_tones):
    """The stretches of a long file are chosen among those that hold sound: a file
    silent but for one passage is refined on that passage (and separates), one whose
    sound lies only beyond the last whole stretch keeps the single fit."""
    import sys

    from audionmf.limits import Limits
    from audionmf.modes.blind import refined_frames

    module = sys.modules["audionmf.modes.blind"]
    two = Limits(refine_values=257 * 256 * 2)
    V = np.zeros((257, 8 * 256 + 100))
    V[:, 5 * 256 + 10] = 1.0  # one sound, in the sixth stretch
    np.testing.assert_array_equal(refined_frames(V, two), 5 * 256 + np.arange(256))
    V[:, 2 * 256 + 3] = V[:, 7 * 256 + 9] = 1.0
    np.testing.assert_array_equal(refined_frames(V, two)[::256], [2 * 256, 7 * 256])
    V[:] = 0.0
    V[:, -5] = 1.0  # after the last whole stretch
    assert refined_frames(V, two).size == 0
    a, b = two_tones  # 3 s of two tones in 15 s of silence: stretches 1 and 2 of 0-2 heard
    one = Limits(refine_values=257 * 256)  # one stretch: the first heard
    quiet = np.zeros(15 * SR)
    quiet[6 * SR:9 * SR] = a + b
    fits, real_nmf = [], module.nmf

    def spy(V, K, **options):
        fits.append((K, V.shape[1], options.get("update_W", True)))
        return real_nmf(V, K, **options)

    monkeypatch.setattr(module, "nmf", spy)
    sources = separate(quiet, SR, n_sources=2, n_components=6, n_fft=512, random_state=0, limits=one)
    assert fits == [(6, 938, True), (12, 256, True), (12, 938, False)]
    np.testing.assert_allclose(sum(sources.values()), quiet, atol=1e-9)
    assert best_match_error({k: v[6 * SR:9 * SR] for k, v in sources.items()}, (a, b)) < 0.1


@pytest.mark.parametrize("percussive", [False, True])
def test_rhythm_counts_by_default_where_the_mixture_is_percussive(monkeypatch, tone_and_clicks, percussive):
    import sys

    module = sys.modules["audionmf.modes.blind"]
    seen = []
    grouping = module.group_components

    def spy(W, H, n_sources, **kwargs):
        seen.append(kwargs["rhythm_weight"])
        return grouping(W, H, n_sources, **kwargs)

    monkeypatch.setattr(module, "group_components", spy)
    notes, clicks = tone_and_clicks
    y = notes + 0.2 * tone(880, SR, 3, (1, 0.5)) + (3.0 * clicks if percussive else 0.0)
    separate(y, SR, n_fft=1024, max_iter=20, random_state=0)
    separate(y, SR, n_fft=1024, max_iter=20, random_state=0, rhythm_weight=0.7)
    assert seen == [module.RHYTHM_WEIGHT if percussive else 0.0, 0.7]


@pytest.mark.parametrize("n_components", [4, 8, 16, 24])
def test_blind_grouping_keeps_two_steady_tones_apart(n_components):
    """Many more components than the two tones need: the spare ones, fitting little but
    onsets and noise, look flat; they must go with their tone, not form a source."""
    a = 0.3 * gated(tone(440, SR, 12, (1, 0.5, 0.25)), SR, period=1.0, duty=0.5)
    b = 0.3 * gated(tone(1250, SR, 12, (1, 0.3)), SR, period=0.7, duty=0.5, offset=0.2)
    sources = separate(a + b, SR, n_fft=512, n_components=n_components, random_state=0)
    assert best_match_error(sources, [a, b]) < 0.05


def test_rhythm_weight_is_checked(rng):
    W, H = rng.random((257, 4)), rng.random((4, 50))
    for bad in (-1.0, float("nan"), float("inf"), "2"):
        with pytest.raises(ParameterError, match="rhythm_weight"):
            group_components(W, H, 2, sr=SR, n_fft=512, rhythm_weight=bad)
    with pytest.raises(ParameterError, match="rhythm_weight"):
        separate(np.ones(5000), SR, n_fft=512, rhythm_weight=-1)
    # far beyond where timbre stops counting, squared distances overflowed into NaN
    with pytest.raises(ParameterError, match="rhythm_weight=1e\\+300: must be at most 1000"):
        separate(np.ones(5000), SR, n_fft=512, rhythm_weight=1e300)
    with pytest.raises(ParameterError, match="attack_weight=2000.0: must be at most 1000"):
        group_components(W, H, 2, sr=SR, n_fft=512, attack_weight=2000.0)


def test_groups_by_hand_pick_the_components(two_tones):
    from audionmf import decompose

    a, b = two_tones
    y = a + b
    dec = decompose(y, SR, n_components=4, n_fft=512, random_state=3)
    peaks = dec.frequencies[dec.templates.argmax(axis=0)]
    low = [k for k in range(4) if peaks[k] < 800]
    high = [k for k in range(4) if peaks[k] >= 800]
    assert low and high
    sources = separate(y, SR, groups=[high, low], n_fft=512, random_state=3)
    assert list(sources) == ["source1", "source2"]
    assert relative_error(sources["source1"], b) < 0.1
    assert relative_error(sources["source2"], a) < 0.1
    swapped = separate(y, SR, groups=[low, high], n_fft=512, random_state=3)
    np.testing.assert_array_equal(swapped["source1"], sources["source2"])
    np.testing.assert_allclose(sum(sources.values()), y, atol=1e-12)


@pytest.mark.parametrize("groups, message", [
    ([[0, 1], [1, 2, 3]], r"components \[1\] are in more than one group"),
    ([[0, 1], [3]], r"missing \[2\]"),
    ([[0, 1], [2, 3, 9]], r"missing \[4, 5, 6, 7, 8\]"),
    ([[0, 1], []], "every group needs at least one component"),
    ([["a"], [1]], "expected lists of component indices"),
])
def test_bad_groups_are_refused(two_tones, groups, message):
    with pytest.raises(ParameterError, match=message):
        separate(sum(two_tones), SR, groups=groups, n_fft=512)


def test_groups_must_cover_n_components(two_tones):
    with pytest.raises(ParameterError, match=r"no component \[4\] \(there are 4\)"):
        separate(sum(two_tones), SR, groups=[[0, 1], [2, 3, 4]], n_components=4, n_fft=512)


def test_decompose_fits_what_separate_fits(monkeypatch):
    """The components a plot of decompose numbers are those that groups name."""
    import sys

    from audionmf import decompose

    stream = sys.modules["audionmf.modes.blind"]
    y = np.vstack([tone(300, SR, 2, (1, 0.5)), gated(tone(900, SR, 2), SR, 0.4, 0.5)])
    fitted = []
    real_nmf = stream.nmf

    def spy(V, *args, **kwargs):
        result = real_nmf(V, *args, **kwargs)
        fitted.append(result)
        return result

    monkeypatch.setattr(stream, "nmf", spy)
    separate(y, SR, n_components=6, n_fft=512, random_state=4)
    dec = decompose(y, SR, n_components=6, n_fft=512, random_state=4)
    np.testing.assert_array_equal(fitted[0].W, dec.templates)
    np.testing.assert_allclose(fitted[0].H * (dec.activations.max() / fitted[0].H.max()),
                               dec.activations, rtol=1e-5)


def test_groups_conflicts_are_refused(two_tones):
    y = sum(two_tones)
    with pytest.raises(ParameterError, match="n_sources=3 but groups gives 2 sources"):
        separate(y, SR, groups=[[0], [1]], n_sources=3, n_fft=512)
    for weight in (0, 1.0):  # as the command line refuses --rhythm 0 with --group
        with pytest.raises(ParameterError, match="rhythm_weight cannot be used with groups"):
            separate(y, SR, groups=[[0], [1]], rhythm_weight=weight, n_fft=512)


def test_groups_refuse_a_signal_fitted_on_excerpts(two_tones):
    from audionmf.limits import Limits

    with pytest.raises(ParameterError, match=r"groups name the components of a fit of the whole"):
        separate(sum(two_tones), SR, groups=[[0], [1]], n_fft=512, limits=Limits(fit_values=257 * 50))


def test_groups_by_hand_are_not_bound_by_the_grouping_s_limit():
    """At most MAX_SOURCES sources from the automatic grouping (its time grows with the
    count); groups given by hand skip the grouping and may be more."""
    from audionmf.modes.blind import MAX_SOURCES, Blind

    many = [[i] for i in range(MAX_SOURCES + 1)]
    assert Blind.check_options({"groups": many})["n_sources"] == MAX_SOURCES + 1
    with pytest.raises(ParameterError, match=f"n_sources={MAX_SOURCES + 1}: must be at most {MAX_SOURCES}"):
        Blind.check_options({"n_sources": MAX_SOURCES + 1})

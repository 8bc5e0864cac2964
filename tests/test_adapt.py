"""Source models' gain curves (audionmf.adapt) and the Supervised mode's use of them."""
import numpy as np
import pytest

import audionmf
from audionmf import adapt, beta_divergence
from audionmf.modes.supervised import Supervised


def test_gain_bases_share_out_every_row():
    freqs = np.linspace(0.0, 11025.0, 400)
    B = adapt.gain_bases(freqs, n_bands=6, lowest=60.0)
    assert B.shape == (400, 6)
    assert np.all(B >= 0)
    np.testing.assert_allclose(B.sum(axis=1), 1.0)
    # below the lowest centre, rows take the first bump's; at the top, the last one's
    np.testing.assert_allclose(B[freqs < 60.0], np.eye(6)[[0]].repeat((freqs < 60.0).sum(), axis=0))
    np.testing.assert_allclose(B[-1], np.eye(6)[5])
    # on a log-frequency axis the curve B @ g is smooth (no jump between close rows) and
    # passes through each band's gain at the band's centre
    log_freqs = np.geomspace(60.0, 11025.0, 1000)
    g = np.array([1.0, 4.0, 0.25, 2.0, 1.0, 0.5])
    curve = adapt.gain_bases(log_freqs, n_bands=6, lowest=60.0) @ g
    assert np.max(np.abs(np.diff(curve))) < 0.1
    centres = np.round(np.linspace(0, 999, 6)).astype(int)
    np.testing.assert_allclose(curve[centres], g, rtol=0.02)
    assert adapt.gain_bases(freqs, n_bands=1).shape == (400, 1)


def _two_sources(rng, frames=1, n_rows=60, n_frames=80):
    W = rng.random((frames * n_rows, 8)) + 0.05
    W /= W.sum(axis=0)
    H = rng.random((8, n_frames)) * (rng.random((8, n_frames)) < 0.5) + 1e-3
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    freqs = np.geomspace(50.0, 8000.0, n_rows)
    return W, H, labels, adapt.gain_bases(freqs, n_bands=5)


@pytest.mark.parametrize("frames", [1, 3])
def test_equalize_finds_a_gain_curve_it_can_express(rng, frames):
    """A known answer: source 0 heard through a smooth curve of the bases' span. The
    gains fitted give that curve back, up to a level per source (which the
    activations, fitted too, can take), and the model fits the mixture."""
    W, H, labels, B = _two_sources(rng, frames)
    true = B @ np.array([0.5, 0.8, 1.5, 2.5, 1.2])
    curves = {0: np.tile(true, frames), 1: np.ones(W.shape[0])}
    V = sum(curves[s][:, None] * (W[:, labels == s] @ H[labels == s]) for s in (0, 1))
    gains, H_fit = adapt.equalize(V, W, H, labels, B, frames=frames, rounds=400)
    for s, curve in ((0, true), (1, np.ones_like(true))):
        ratio = gains[s] / curve
        np.testing.assert_allclose(ratio, np.mean(ratio), rtol=0.05)
    model = adapt.through(W, labels, gains, frames) @ H_fit
    assert beta_divergence(V, model, "kl") < 1e-3 * beta_divergence(V, W @ H, "kl")


@pytest.mark.parametrize("dtype, frames, max_gain", [(np.float64, 1, 1e6), (np.float32, 3, 1e6),
                                                     (np.float64, 3, 1.5)])
def test_equalize_never_raises_the_divergence(rng, dtype, frames, max_gain):
    W, H, labels, B = _two_sources(rng, frames)
    rows = W.shape[0] // frames
    tilt = np.tile(rng.random(rows) + 0.5, frames)
    V = (tilt[:, None] * (W @ H) + 0.01 * rng.random((W.shape[0], H.shape[1]))).astype(dtype)
    losses = []
    for rounds in range(0, 12, 2):  # (the same path, stopped later and later)
        gains, H_fit = adapt.equalize(V, W.astype(dtype), H.astype(dtype), labels, B, frames=frames,
                                      rounds=rounds, max_gain=max_gain)
        model = adapt.through(W, labels, gains, frames) @ H_fit.astype(np.float64)
        losses.append(beta_divergence(V.astype(np.float64), model, "kl"))
    assert all(b <= a * (1 + 1e-5) for a, b in zip(losses, losses[1:]))
    assert losses[-1] < 0.9 * losses[0]


def test_equalize_does_not_depend_on_the_order_of_the_columns(rng):
    W, H, labels, B = _two_sources(rng)
    V = (rng.random(W.shape[0])[:, None] + 0.5) * (W @ H)
    gains, H_fit = adapt.equalize(V, W, H, labels, B, rounds=8)
    shuffle = rng.permutation(labels.size)  # the sources' columns interleaved
    gains_s, H_s = adapt.equalize(V, W[:, shuffle], H[shuffle], labels[shuffle], B, rounds=8)
    for s in gains:
        np.testing.assert_allclose(gains_s[s], gains[s], rtol=1e-9)
    np.testing.assert_allclose(H_s, H_fit[shuffle], rtol=1e-9)


def test_no_round_is_no_change_and_the_penalty_reaches_the_activations(rng):
    W, H, labels, B = _two_sources(rng)
    V = W @ H * 2.0
    gains, H_same = adapt.equalize(V, W, H, labels, B, rounds=0)
    np.testing.assert_array_equal(H_same, H)
    for g in gains.values():
        np.testing.assert_allclose(g, 1.0)
    _, H_free = adapt.equalize(V, W, H, labels, B, rounds=10)
    _, H_sparse = adapt.equalize(V, W, H, labels, B, rounds=10, sparsity=1.0)
    assert H_sparse.sum() < 0.9 * H_free.sum()


def test_gains_stay_within_their_bound(rng):
    W, H, labels, B = _two_sources(rng)
    steep = B @ np.array([1.0, 1.0, 3.0, 30.0, 300.0])  # more than the bound's range of 16
    V = steep[:, None] * (W[:, labels == 0] @ H[labels == 0]) + W[:, labels == 1] @ H[labels == 1]
    gains, _ = adapt.equalize(V, W, H, labels, B, rounds=100, max_gain=4.0)
    for g in gains.values():
        assert np.all(g <= 4.0 + 1e-12) and np.all(g >= 0.25 - 1e-12)
    curve = np.linalg.lstsq(B, gains[0], rcond=None)[0]  # (the bands' gains)
    assert curve.max() == pytest.approx(4.0) or curve.min() == pytest.approx(0.25)


def test_through_scales_each_source_and_each_stacked_frame():
    W = np.ones((2 * 3, 4))  # 2 stacked frames of 3 rows
    labels = np.array([0, 1, 1, 0])
    out = adapt.through(W, labels, {0: np.array([1.0, 2.0, 3.0]), 1: np.array([5.0, 5.0, 5.0])}, frames=2)
    np.testing.assert_array_equal(out[:, 0], [1, 2, 3, 1, 2, 3])
    np.testing.assert_array_equal(out[:, 1], 5.0)
    # gains on bands, spread onto their bins by the pooling's transpose: each bin takes its band's
    pool = np.array([[1, 1, 0, 0], [0, 0, 1, 1]], dtype=np.float32)
    out = adapt.through(np.ones((4, 2)), np.array([0, 1]), {0: pool.T @ np.array([2.0, 3.0]), 1: np.ones(4)})
    np.testing.assert_array_equal(out[:, 0], [2, 2, 3, 3])
    assert np.all(W == 1)  # (the input is not changed)


def _tone_model(sr, freq, name, rng, brightness):
    """A model of a harmonic tone whose partials fall off as ``brightness ** n``."""
    t = np.arange(int(2.5 * sr)) / sr
    y = sum(brightness**n * np.sin(2 * np.pi * freq * n * t + rng.uniform(0, 6)) for n in range(1, 12))
    y *= 0.5 + 0.5 * (np.sin(2 * np.pi * 1.5 * t) > 0)
    return y, audionmf.SourceModel.learn([y], sr, name=name, n_components=8, max_iter=60, random_state=0)


def test_the_mode_gains_where_a_source_sounds_darker_than_its_examples(rng):
    """Examples of two tones; in the mixture one of them sounds darker than its
    examples (a different instrument or room). The gain curves follow it: the
    sources sum to the mixture, and each stem is nearer its truth than without them."""
    sr = 8000
    y_a, model_a = _tone_model(sr, 220.0, "a", rng, 0.8)
    y_b, model_b = _tone_model(sr, 330.0, "b", rng, 0.8)
    t = np.arange(y_a.size) / sr
    dark = sum(0.45**n * np.sin(2 * np.pi * 220.0 * n * t) for n in range(1, 12))
    dark *= 0.5 + 0.5 * (np.sin(2 * np.pi * 1.1 * t) > 0)
    mix = dark + np.roll(y_b, 3000)
    truth = {"a": dark, "b": np.roll(y_b, 3000)}

    def error(out):
        return np.mean([np.sum((out[s] - truth[s]) ** 2) / np.sum(truth[s] ** 2) for s in truth])

    adapted = audionmf.separate(mix, sr, models=[model_a, model_b], random_state=0)
    np.testing.assert_allclose(adapted["a"] + adapted["b"], mix, atol=1e-6)
    try:
        Supervised.adapt_gains = False
        plain = audionmf.separate(mix, sr, models=[model_a, model_b], random_state=0)
    finally:
        Supervised.adapt_gains = True
    assert error(adapted) < 0.9 * error(plain)


def test_only_kl_models_take_gain_curves(rng):
    """The curves are fitted with KL steps: models of another divergence keep their
    templates as learned (the same sources with the curves on or off)."""
    sr = 8000
    t = np.arange(2 * sr) / sr
    a = np.sin(2 * np.pi * 220 * t) + 0.3 * np.sin(2 * np.pi * 440 * t)
    b = np.sin(2 * np.pi * 330 * t) + 0.3 * np.sin(2 * np.pi * 990 * t)
    kw = dict(n_components=4, max_iter=30, random_state=0, beta="is")
    models = [audionmf.SourceModel.learn([a], sr, name="a", **kw),
              audionmf.SourceModel.learn([b], sr, name="b", **kw)]
    mix = 0.7 * a + b
    on = audionmf.separate(mix, sr, models=models, random_state=0)
    try:
        Supervised.adapt_gains = False
        off = audionmf.separate(mix, sr, models=models, random_state=0)
    finally:
        Supervised.adapt_gains = True
    for name in on:
        np.testing.assert_array_equal(on[name], off[name])


@pytest.mark.parametrize("max_iter", [3, adapt.FIRST_ITER])
def test_the_gains_take_only_the_iterations_left_after_the_first_ones(rng, max_iter):
    """The mode's first fit runs the user's iterations: FIRST_ITER of the plain
    templates, the rest as rounds. With no iteration left for rounds, the curves stay
    flat, and the result is the plain templates' to the bit."""
    sr = 8000
    y_a, model_a = _tone_model(sr, 220.0, "a", rng, 0.8)
    y_b, model_b = _tone_model(sr, 330.0, "b", rng, 0.6)
    mix = 0.6 * y_a + np.roll(y_b, 1234)
    on = audionmf.separate(mix, sr, models=[model_a, model_b], max_iter=max_iter, random_state=0)
    try:
        Supervised.adapt_gains = False
        off = audionmf.separate(mix, sr, models=[model_a, model_b], max_iter=max_iter, random_state=0)
    finally:
        Supervised.adapt_gains = True
    for name in on:
        np.testing.assert_array_equal(on[name], off[name])
    more = audionmf.separate(mix, sr, models=[model_a, model_b], max_iter=adapt.FIRST_ITER + 5,
                             random_state=0)
    assert any(not np.array_equal(more[name], on[name]) for name in on)

"""The vote (audionmf.vote): parts' shares, split activations, their masks; the blend of
sets of masks (audionmf.masks.blend_sources) and the frames' means it factorizes."""
import numpy as np
import pytest

from audionmf import vote
from audionmf.masks import blend_masks, blend_sources
from audionmf.spectrogram import frame_means


def test_shares_are_the_masks_averaged_over_each_part_sharpened():
    """Two parts on one row each: part 0 where source 0's mask is 0.8, part 1 where it is
    0.3; squared and normalized: 0.64 / (0.64 + 0.04) and 0.09 / (0.09 + 0.49)."""
    W = np.eye(2)
    H = np.ones((2, 6))
    lead = np.array([[0.8], [0.3]]) * np.ones((2, 6))
    shares = vote.shares(W, H, np.stack([lead, 1 - lead]), sharpness=2.0)
    np.testing.assert_allclose(shares[0], [0.64 / 0.68, 0.09 / 0.58])
    np.testing.assert_allclose(shares.sum(axis=0), 1.0)
    unsharpened = vote.shares(W, H, np.stack([lead, 1 - lead]), sharpness=1.0)
    np.testing.assert_allclose(unsharpened[0], [0.8, 0.3])


def test_shares_weigh_the_frames_by_the_part_s_energy():
    """A part loud in frames where the mask is 1 and quiet where it is 0: its share is
    the energy-weighted mean (3 / 4), not the plain mean (1 / 2)."""
    W = np.array([[1.0]])
    H = np.array([[3.0, 1.0]])
    mask = np.array([[1.0, 0.0]])
    shares = vote.shares(W, H, np.stack([mask, 1 - mask]), sharpness=1.0)
    np.testing.assert_allclose(shares[:, 0], [0.75, 0.25])


def test_a_silent_part_is_shared_equally():
    shares = vote.shares(np.ones((3, 2)), np.array([[1.0, 2.0], [0.0, 0.0]]),
                         np.full((3, 3, 2), 1 / 3))
    np.testing.assert_allclose(shares[:, 1], 1 / 3)


def test_split_activations_sum_back_to_the_parts():
    rng = np.random.default_rng(0)
    H = rng.random((5, 7))
    shares = rng.random((3, 5))
    shares /= shares.sum(axis=0)
    split = vote.split(H, shares)
    assert split.shape == (15, 7)
    np.testing.assert_allclose(split.reshape(3, 5, 7).sum(axis=0), H)
    np.testing.assert_allclose(split[5:10], shares[1][:, None] * H)


def test_the_parts_outvote_the_model_s_minority_of_frames():
    """Two parts, each one source's spectrum; the model's mask gives part 0 to the
    wrong source on 2 of its 10 frames. The vote's masks give both parts to their own
    source on every frame, and blended with the model they side with the majority."""
    W = np.array([[1.0, 0.02], [0.5, 0.1], [0.02, 1.0]])
    H = np.vstack([np.ones(10), np.r_[np.zeros(5), np.ones(5)]])
    right = np.stack([(W[:, :1] @ H[:1]), (W[:, 1:] @ H[1:])])
    model = 0.1 + 0.8 * right / right.sum(axis=0)  # a soft model, right ...
    model[:, :, [2, 3]] = model[::-1, :, [2, 3]]  # ... but on frames 2 and 3
    shares = vote.shares(W, H, model)
    assert shares[0, 0] > 0.8 and shares[1, 1] > 0.8  # (0.74 unsharpened)
    votes = vote.vote_masks(W, vote.split(H, shares))
    np.testing.assert_allclose(votes.sum(axis=0), 1.0)
    assert np.all(votes[0, 0, :] > 0.95)  # row 0 is mostly part 0: source 0 on every frame
    blended = blend_sources(votes, model)
    assert np.all(blended[0, 0, [2, 3]] > 0.5) and model[0, 0, 2] < 0.5


def test_blend_is_blend_masks_for_two_sources_and_keeps_agreement():
    rng = np.random.default_rng(1)
    a, b = rng.random((2, 4, 5))
    blended = blend_sources(np.stack([a, 1 - a]), np.stack([b, 1 - b]))
    np.testing.assert_allclose(blended[0], blend_masks(a, b))
    np.testing.assert_allclose(blended.sum(axis=0), 1.0)
    three = rng.random((3, 4, 5))
    three /= three.sum(axis=0)
    np.testing.assert_allclose(blend_sources(three, three), three)
    # mirror-image certainties leave equal shares
    sure = np.stack([np.ones((2, 2)), np.zeros((2, 2))])
    np.testing.assert_allclose(blend_sources(sure, sure[::-1]), 0.5)


def test_learn_parts_repeats_each_step_and_keeps_fixed_templates():
    rng = np.random.default_rng(2)
    S = rng.random((6, 9)) + 0.1
    W, H = vote.learn_parts(S, 3, power=1, random_state=0, step=2)
    assert W.shape == (6, 3) and H.shape == (3, 9)
    np.testing.assert_array_equal(H[:, 0], H[:, 1])  # frames 0 and 1: one step
    again, H2 = vote.learn_parts(S, W, power=1, random_state=0, step=2)
    np.testing.assert_array_equal(again, W)
    assert np.all(np.isfinite(H2)) and H2.shape == (3, 9)
    # a power spectrogram: the parts of the magnitudes of its means (S unchanged)
    before = S.copy()
    squared = vote.learn_parts(S**2, 3, power=2, random_state=0, step=1)
    of_magnitudes = vote.learn_parts(S, 3, power=1, random_state=0, step=1)
    np.testing.assert_array_equal(S, before)
    np.testing.assert_allclose(squared[0] @ squared[1], of_magnitudes[0] @ of_magnitudes[1],
                               rtol=1e-6)


@pytest.mark.parametrize("step", [1, 3])
def test_frame_means_of_steps(step):
    V = np.arange(14, dtype=float).reshape(2, 7)
    coarse = frame_means(V, step)
    assert coarse.shape == (2, -(-7 // step))
    if step == 3:
        np.testing.assert_allclose(coarse[0], [1.0, 4.0, 6.0])  # the last step: 6, 6, 6
    else:
        np.testing.assert_array_equal(coarse, V)


def test_blend_weighs_the_second_set():
    a = np.stack([np.full((2, 2), 0.9), np.full((2, 2), 0.1)])
    b = a[::-1]
    np.testing.assert_allclose(blend_sources(a, b, 0.0), a)
    np.testing.assert_allclose(blend_sources(a, b, 1.0), b)
    np.testing.assert_allclose(blend_sources(a, b, 0.5), 0.5)
    leaning = blend_sources(a, b, 0.7)[1, 0, 0]  # 0.9**0.7 0.1**0.3 against its mirror
    assert leaning == pytest.approx(0.9**0.7 * 0.1**0.3 / (0.9**0.7 * 0.1**0.3 + 0.1**0.7 * 0.9**0.3))


def _beat_and_syllables(seconds=10.0, rate=43.0, seed=0):
    """Two activation rows at ``rate`` frames per second: a note struck on every beat
    (2 Hz, decaying), and a voice's syllables: random levels smoothed over 0.1 s (no two
    alike, at no regular rate), with three pauses between phrases."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    beat = np.exp(-(t % 0.5) / 0.08)
    voice = np.convolve(rng.exponential(1.0, t.size), np.hanning(5), "same")
    for start in rng.uniform(0, seconds - 0.5, 3):
        voice[(t >= start) & (t < start + rng.uniform(0.2, 0.5))] = 0.0
    return np.vstack([beat, voice]), rate


def test_a_beat_s_part_is_less_voice_like_than_syllables():
    """The modulation spectrum of a note recurring with the beat is peaky (flatness near
    0), a voice's irregular syllables give a flat one: likeness below and above 1/2."""
    for seed in range(3):
        H, rate = _beat_and_syllables(seed=seed)
        flatness = vote.modulation_flatness(H, rate)
        assert flatness[0] < 0.1 < vote.VOICE_FLATNESS < flatness[1]
        like = vote.voice_likeness(H, rate)
        assert like[0] < 0.05 and like[1] > 0.5
        assert np.all((like >= 0) & (like <= 1))


def test_flatness_of_single_precision_activations_matches_double():
    H, rate = _beat_and_syllables()
    np.testing.assert_allclose(vote.modulation_flatness(H.astype(np.float32), rate),
                               vote.modulation_flatness(H, rate), rtol=1e-4)


def test_likeness_is_scale_free_and_neutral_where_undefined():
    """Scaling a part's activations changes nothing; a still part, a silent one and a
    signal too short for any rate within the band are 1/2."""
    H, rate = _beat_and_syllables()
    np.testing.assert_allclose(vote.voice_likeness(H * 1e3, rate), vote.voice_likeness(H, rate))
    still = np.vstack([np.full(400, 2.0), np.zeros(400)])
    np.testing.assert_array_equal(vote.voice_likeness(still, rate), 0.5)
    np.testing.assert_array_equal(vote.voice_likeness(H[:, :3], rate), 0.5)


def test_shares_lean_towards_the_prior_by_its_weight():
    """A part the masks give half and half, a prior of 0.9 for source 0 with weight 0.5:
    0.5 * sqrt(0.9) / (0.5 * sqrt(0.9) + 0.5 * sqrt(0.1)) = 0.75; weight 0 ignores it."""
    W, H = np.eye(1), np.ones((1, 4))
    mask = np.full((1, 4), 0.5)
    masks = np.stack([mask, 1 - mask])
    prior = np.array([[0.9], [0.1]])
    leaned = vote.shares(W, H, masks, sharpness=1.0, prior=prior, prior_weight=0.5)
    np.testing.assert_allclose(leaned[:, 0], [0.75, 0.25])
    np.testing.assert_allclose(vote.shares(W, H, masks, prior=prior, prior_weight=0.0),
                               vote.shares(W, H, masks))
    lead = np.array([[0.8], [0.3]]) * np.ones((2, 6))  # equal priors: the shares as they were
    np.testing.assert_allclose(vote.shares(np.eye(2), np.ones((2, 6)), np.stack([lead, 1 - lead]),
                                           prior=np.full((2, 2), 0.5), prior_weight=0.5),
                               vote.shares(np.eye(2), np.ones((2, 6)), np.stack([lead, 1 - lead])))

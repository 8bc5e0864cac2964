import os
import sys

import numpy as np
import pytest

import audionmf
from audionmf import ParameterError, _engine, beta_divergence, nmf
from audionmf.limits import Limits
from audionmf.nmf import mm_exponent

BETAS_DIVERGENCE = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0]
BETAS_MONOTONE = [0.0, 0.5, 1.0, 1.5, 2.0]


def naive_divergence(V, Y, beta):
    """Entry by entry, straight from the textbook formulas (float64)."""
    tiny = np.finfo(V.dtype).tiny
    V = V.astype(np.float64)
    Y = np.maximum(Y.astype(np.float64), tiny)
    total = 0.0
    for v, y in zip(V.ravel(), Y.ravel()):
        if beta == 2:
            total += 0.5 * (v - y) ** 2
        elif beta == 1:
            total += (v * np.log(v / y) if v > 0 else 0.0) - v + y
        elif beta == 0:
            v = max(v, tiny)
            total += v / y - np.log(v / y) - 1
        else:
            total += (v**beta + (beta - 1) * y**beta - beta * v * y ** (beta - 1)) / (beta * (beta - 1))
    return total


def random_problem(rng, shape=(30, 40), rank=4, zeros=0.2, dtype=np.float64):
    V = rng.random((shape[0], rank)) @ rng.random((rank, shape[1]))
    V *= rng.random(shape) > zeros  # sprinkle exact zeros
    V[3] = 0.0  # an all-zero row (a silent frequency bin)
    V[:, 5] = 0.0  # an all-zero column (a silent frame)
    return V.astype(dtype)


@pytest.mark.parametrize("beta", BETAS_DIVERGENCE)
def test_divergence_matches_naive_reference(rng, beta):
    V = random_problem(rng)
    Y = rng.random(V.shape) + 0.05
    assert beta_divergence(V, Y, beta) == pytest.approx(naive_divergence(V, Y, beta), rel=1e-10)


@pytest.mark.parametrize("beta", BETAS_DIVERGENCE)
def test_divergence_is_zero_only_at_equality(rng, beta):
    V = rng.random((10, 12)) + 0.1
    assert beta_divergence(V, V, beta) == pytest.approx(0.0, abs=1e-12)
    assert beta_divergence(V, V * 1.1, beta) > 0


def test_divergence_names_map_to_beta(rng):
    V, Y = rng.random((5, 6)) + 0.1, rng.random((5, 6)) + 0.1
    assert beta_divergence(V, Y, "kl") == beta_divergence(V, Y, 1)
    assert beta_divergence(V, Y, "is") == beta_divergence(V, Y, 0)
    assert beta_divergence(V, Y, "euclidean") == pytest.approx(0.5 * ((V - Y) ** 2).sum())


def test_divergence_rejects_bad_input(rng):
    V = rng.random((4, 5))
    with pytest.raises(ParameterError, match="shape"):
        beta_divergence(V, V[:, :4])
    with pytest.raises(ParameterError, match="negative"):
        beta_divergence(V - 1, V)
    with pytest.raises(ParameterError, match="beta='nope'"):
        beta_divergence(V, V, "nope")


@pytest.mark.parametrize("beta", BETAS_MONOTONE)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loss_never_increases(rng, beta, dtype):
    V = random_problem(rng, dtype=dtype)
    if beta <= 0:
        V = V ** 2  # power-like data for Itakura-Saito
    res = nmf(V, 5, beta=beta, max_iter=150, tol=0, check_every=1, random_state=1, init="random")
    assert len(res.losses) == 151
    steps = np.diff(res.losses)
    # Allow only float round-off of the loss evaluation itself.
    slack = 1e-5 if dtype == np.float32 else 1e-10
    assert np.all(steps <= slack * res.losses[:-1]), steps.max()
    assert res.losses[-1] < 0.9 * res.losses[0]


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0, 3.0, -0.5])
def test_factors_nonnegative_and_finite(rng, beta):
    V = random_problem(rng)
    res = nmf(V, 6, beta=beta, max_iter=50, random_state=0)
    for X in (res.W, res.H):
        assert np.all(np.isfinite(X))
        assert X.min() >= 0
    assert np.all(np.isfinite(res.losses))


def test_reported_loss_is_the_divergence_of_the_result(rng):
    V = random_problem(rng, zeros=0.0)
    for beta in (1.0, 2.0, 1.5):
        res = nmf(V, 4, beta=beta, max_iter=30, random_state=0)
        assert res.loss == pytest.approx(beta_divergence(V, res.W @ res.H, beta), rel=1e-8)


def planted(rng, n_rows=60, n_cols=80, rank=3):
    """Factors with pure rows and columns, so the factorization is unique up to scale."""
    W = rng.random((n_rows, rank)) * (rng.random((n_rows, rank)) > 0.5)
    H = rng.random((rank, n_cols)) * (rng.random((rank, n_cols)) > 0.5)
    for k in range(rank):
        W[k] = 0
        W[k, k] = 1.0
        H[:, k] = 0
        H[k, k] = 1.0
    return W, H


def _best_cosines(A, B):
    A = A / np.linalg.norm(A, axis=0)
    B = B / np.linalg.norm(B, axis=0)
    C = A.T @ B
    return C.max(axis=1)


@pytest.mark.parametrize("beta", ["kl", "euclidean"])
def test_planted_factors_are_recovered(rng, beta):
    W0, H0 = planted(rng)
    V = W0 @ H0
    res = nmf(V, 3, beta=beta, max_iter=3000, tol=0, random_state=0)
    assert np.linalg.norm(res.W @ res.H - V) < 1e-2 * np.linalg.norm(V)
    assert np.all(_best_cosines(W0, res.W) > 0.99)
    assert np.all(_best_cosines(H0.T, res.H.T) > 0.99)


@pytest.mark.parametrize("init", ["random", "nndsvda"])
def test_same_seed_same_result(rng, init):
    V = random_problem(rng)
    a = nmf(V, 5, init=init, max_iter=40, random_state=7)
    b = nmf(V, 5, init=init, max_iter=40, random_state=7)
    c = nmf(V, 5, init=init, max_iter=40, random_state=8)
    np.testing.assert_array_equal(a.W, b.W)
    np.testing.assert_array_equal(a.H, b.H)
    if init == "random":
        assert not np.allclose(a.W, c.W)


def test_input_is_not_modified(rng):
    V = random_problem(rng)
    W = rng.random((V.shape[0], 4))
    copies = V.copy(), W.copy()
    nmf(V, 4, W=W, max_iter=10)
    np.testing.assert_array_equal(V, copies[0])
    np.testing.assert_array_equal(W, copies[1])


@pytest.mark.parametrize("beta", ["kl", "is", "euclidean", 1.5])
def test_float32_is_kept_and_close_to_float64(rng, beta):
    V = rng.random((50, 4)) @ rng.random((4, 70)) + 0.01
    r64 = nmf(V, 4, beta=beta, max_iter=60, tol=0, random_state=3)
    r32 = nmf(V.astype(np.float32), 4, beta=beta, max_iter=60, tol=0, random_state=3)
    assert r32.W.dtype == np.float32 and r32.H.dtype == np.float32
    assert r64.W.dtype == np.float64
    np.testing.assert_allclose(r32.W @ r32.H, r64.W @ r64.H, rtol=2e-3, atol=1e-4)
    assert r32.loss == pytest.approx(r64.loss, rel=1e-3)


def test_scaling_the_input_scales_the_activations(rng):
    V = random_problem(rng)
    a = nmf(V, 4, init="random", max_iter=30, tol=0, random_state=0)
    b = nmf(1e-6 * V, 4, init="random", max_iter=30, tol=0, random_state=0)
    np.testing.assert_allclose(b.W, a.W, rtol=1e-6)
    np.testing.assert_allclose(b.H, 1e-6 * a.H, rtol=1e-6)
    assert b.loss == pytest.approx(1e-6 * a.loss, rel=1e-6)  # KL is 1-homogeneous


def test_fixed_templates_stay_fixed(rng):
    W0, H0 = planted(rng)
    V = W0 @ H0
    res = nmf(V, 3, W=W0, update_W=False, max_iter=500, tol=0)
    eps = np.finfo(np.float64).eps
    np.testing.assert_array_equal(res.W, np.maximum(W0, eps))
    # With the true templates, the activations come out right.
    np.testing.assert_allclose(res.H, H0, atol=2e-2)


def test_fixed_activations_stay_fixed(rng):
    W0, H0 = planted(rng)
    V = W0 @ H0
    H_fixed = H0 + 0.5
    res = nmf(V, 3, H=H_fixed, update_H=False, max_iter=20)
    np.testing.assert_array_equal(res.H, H_fixed)  # as given, to the last bit (as W held fixed)
    assert res.H is not H_fixed
    assert res.losses[-1] <= res.losses[0]
    V32, H32 = V.astype(np.float32) * 3.7, (H_fixed * 1.3).astype(np.float32)
    np.testing.assert_array_equal(nmf(V32, 3, H=H32, update_H=False, max_iter=3).H, H32)


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0])
def test_a_template_step_of_the_plain_update_is_the_plain_update(rng, beta):
    """``template_step`` gets the multiplicative update's numerator and denominator:
    a step that makes that update gives the fit of the plain updates."""
    W0, H0 = planted(rng)
    V = W0 @ H0 + 0.1
    start = dict(W=rng.random(W0.shape) + 0.1, H=rng.random(H0.shape) + 0.1, max_iter=30, tol=0,
                 over_relaxation=1.0, beta=beta)
    gamma = mm_exponent(beta)
    calls = []

    def step(W, num, den):
        calls.append(num.shape == W.shape and den.shape == ((1, 3) if beta == 1.0 else W.shape))
        return W * (num / den) ** gamma

    own = nmf(V, 3, template_step=step, **start)
    plain = nmf(V, 3, **start)
    assert len(calls) == 30 and all(calls)
    np.testing.assert_allclose(own.W, plain.W, rtol=1e-9)
    np.testing.assert_allclose(own.H, plain.H, rtol=1e-9)
    np.testing.assert_allclose(own.losses, plain.losses, rtol=1e-12)


def test_templates_under_a_constraint_keep_it_and_lower_the_divergence(rng):
    """Templates that are given ones times a gain per row, the gains fitted by their
    own multiplicative step: the templates stay of that form, and the divergence
    never increases."""
    W0, H0 = planted(rng)
    W0 = W0 + 0.01  # (no row of zeros: its gain would be 0 / 0)
    tilt = np.linspace(0.5, 2.0, W0.shape[0])
    V = (tilt[:, None] * W0) @ H0
    gains = [np.ones(W0.shape[0])]

    def step(W, num, den):
        gains[0] = gains[0] * np.sum(W0 * num, axis=1) / np.sum(W0 * den, axis=1)
        return gains[0][:, None] * W0

    res = nmf(V, 3, W=W0, H=H0 * 1.5, template_step=step, max_iter=200, tol=0, check_every=1)
    np.testing.assert_allclose(res.W, gains[0][:, None] * W0, rtol=1e-12)
    assert np.all(np.diff(res.losses) <= 1e-12 * res.losses[0])
    assert res.losses[-1] < 1e-3 * res.losses[0]


def test_converges_early_with_tolerance(rng):
    W0, H0 = planted(rng)
    res = nmf(W0 @ H0 + 0.1, 3, max_iter=5000, tol=1e-3, random_state=0)
    assert res.converged
    assert res.n_iter < 5000
    assert res.loss_iterations[-1] == res.n_iter


def test_callback_sees_every_iteration(rng):
    seen = []
    nmf(random_problem(rng), 3, max_iter=12, tol=0, callback=lambda i, loss: seen.append((i, loss)))
    assert [i for i, _ in seen] == list(range(1, 13))
    assert all(np.isfinite(loss) for _, loss in seen)


def test_all_zero_matrix_is_refused():
    with pytest.raises(ParameterError, match="all zeros"):
        nmf(np.zeros((5, 5)), 2)


def test_more_components_than_rows_work(rng):
    V = rng.random((6, 30))
    res = nmf(V, 10, max_iter=50)  # falls back to random init
    assert res.W.shape == (6, 10) and np.all(np.isfinite(res.H))
    with pytest.raises(ParameterError, match="nndsvda"):
        nmf(V, 10, init="nndsvda")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_components": 0}, "n_components=0"),
        ({"n_components": 2.5}, "n_components=2.5"),
        ({"beta": "hellinger"}, "beta='hellinger'"),
        ({"beta": 10.5}, r"beta=10.5: must lie in \[-10, 10\]"),
        ({"beta": -50}, r"beta=-50: must lie in \[-10, 10\]"),
        ({"init": "svd"}, "init='svd'"),
        ({"max_iter": -1}, "max_iter=-1"),
        ({"tol": -1.0}, "tol=-1.0"),
        ({"update_W": False}, "update_W=False"),
        ({"W": np.ones((3, 2))}, "W has shape"),
        ({"H": -np.ones((2, 8))}, "negative"),
        ({"over_relaxation": 2.5}, "over_relaxation=2.5"),
        ({"over_relaxation": 0.5}, "over_relaxation=0.5"),
        ({"over_relaxation": 1.5, "sparsity": 0.1}, "sparsity"),
        ({"limits": 2**22}, "limits must be an audionmf.limits.Limits, got int"),
        ({"template_step": 3}, "template_step=3: expected a function"),
        ({"template_step": lambda W, num, den: W, "update_W": np.array([True, False]),
          "W": np.ones((7, 2))}, "template_step updates all the templates"),
        ({"template_step": lambda W, num, den: W, "update_W": False, "W": np.ones((7, 2))},
         "template_step updates all the templates"),
        ({"template_step": lambda W, num, den: W[:, :1]}, r"template_step returned shape \(7, 1\), expected \(7, 2\)"),
        ({"template_step": lambda W, num, den: W * np.nan}, "template_step returned templates that are not finite"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    V = np.ones((7, 8))
    kwargs = {"n_components": 2, **kwargs}
    with pytest.raises(ParameterError, match=match):
        nmf(V, **kwargs)


@pytest.mark.filterwarnings("error")
def test_a_huge_sparsity_weight_overflows_nothing():
    """Weights beyond float32's range drive every activation to the floor, quietly."""
    V = np.random.default_rng(0).random((16, 40)).astype(np.float32)
    res = nmf(V, 3, sparsity=1e300, max_iter=5, random_state=0)
    assert res.H.dtype == np.float32 and np.all(np.isfinite(res.H)) and np.all(np.isfinite(res.W))
    fixed = nmf(V, 3, W=res.W, update_W=False, sparsity=1e300, max_iter=5)
    assert fixed.H.max() <= 1e-3 * V.mean()


def test_nan_input_is_refused():
    V = np.ones((4, 4))
    V[1, 1] = np.nan
    with pytest.raises(ParameterError, match="NaN"):
        nmf(V, 2)


def test_mm_exponent():
    assert mm_exponent(0) == 0.5
    assert mm_exponent(1) == mm_exponent(2) == 1.0
    assert mm_exponent(3) == 0.5
    assert mm_exponent(-1) == pytest.approx(1 / 3)


def test_public_api_is_exported():
    for name in audionmf.__all__:
        assert hasattr(audionmf, name), name


def hoyer_sparsity(X):
    """Hoyer's sparseness in [0, 1] of the whole matrix (1: one non-zero entry)."""
    x = X.ravel()
    n = x.size
    return (np.sqrt(n) - np.abs(x).sum() / np.linalg.norm(x)) / (np.sqrt(n) - 1)


def test_sparsity_penalty_is_monotone_with_fixed_templates(rng):
    V = random_problem(rng, zeros=0.0)
    W = rng.random((V.shape[0], 4))
    res = nmf(V, 4, W=W, update_W=False, beta=1.5, sparsity=0.5, max_iter=80, tol=0, check_every=1)
    assert np.all(np.diff(res.losses) <= 1e-10 * res.losses[:-1])
    plain = nmf(V, 4, W=W, update_W=False, beta=1.5, max_iter=80, tol=0)
    assert res.H.sum() < plain.H.sum()


def test_sparsity_makes_activations_sparser(rng):
    V = rng.random((40, 6)) @ rng.random((6, 60)) + 0.05
    dense = nmf(V, 6, max_iter=300, tol=0, random_state=0, init="random", sparsity=1e-9)
    sparse = nmf(V, 6, max_iter=300, tol=0, random_state=0, init="random", sparsity=0.5)
    # Both runs keep unit-norm templates, so the activations compare directly.
    np.testing.assert_allclose(np.linalg.norm(sparse.W, axis=0), 1.0, rtol=1e-6)
    assert hoyer_sparsity(sparse.H) > hoyer_sparsity(dense.H) + 0.05


def aux_term(s, r, beta):
    """One entry's term of the Févotte & Idier majorizer, as a function of the relative step s."""
    if beta == 1:
        return s - r * np.log(s)
    if beta < 1:
        return s + r * s ** (beta - 1) / (1 - beta)
    if beta <= 2:
        return s**beta / beta - r * s ** (beta - 1) / (beta - 1)
    return s**beta / beta - r * s


def reference_step(X, num, den, beta, omega):
    """X times the plain step, or its power omega where that keeps the entry's majorizer term down."""
    r = num / den
    step = r ** mm_exponent(beta)
    if omega != 1:
        longer = step**omega
        safe = aux_term(longer, r, beta) <= aux_term(1.0, r, beta)
        step = np.where(safe, longer, step)
    return X * step


def reference_iterations(V, W, H, beta, n_iter, free=None, omega=1.0):
    """Plain-numpy multiplicative updates (H, then W), straight from Févotte & Idier."""
    W, H = W.copy(), H.copy()
    free = np.arange(W.shape[1]) if free is None else free
    for _ in range(n_iter):
        Y = W @ H
        H = reference_step(H, W.T @ (V * Y ** (beta - 2)), W.T @ Y ** (beta - 1), beta, omega)
        Y = W @ H
        W[:, free] = reference_step(W[:, free], (V * Y ** (beta - 2)) @ H[free].T,
                                    Y ** (beta - 1) @ H[free].T, beta, omega)
    return W, H


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 2.0, 3.0])
@pytest.mark.parametrize("blocks", ["one block", "many blocks"])
@pytest.mark.parametrize("omega", [1.0, 1.875, 1.9])
def test_engine_matches_plain_numpy(rng, beta, blocks, omega):
    """The blocked, threaded sweep computes exactly the textbook updates, over-relaxed or not."""
    limits = Limits(nmf_block_bytes=1) if blocks == "many blocks" else None  # 16-column blocks, threads
    V = rng.random((30, 5)) @ rng.random((5, 90)) + 0.1
    V /= V.mean()  # so the internal rescaling is the identity
    W0, H0 = rng.random((30, 4)) + 0.1, rng.random((4, 90)) + 0.1
    res = nmf(V, 4, W=W0, H=H0, beta=beta, max_iter=5, tol=0, over_relaxation=omega, limits=limits)
    W, H = reference_iterations(V, W0, H0, beta, 5, omega=omega)
    np.testing.assert_allclose(res.H, H, rtol=1e-9)
    np.testing.assert_allclose(res.W, W, rtol=1e-9)
    free = np.array([False, True, False, True])
    res = nmf(V, 4, W=W0, H=H0, beta=beta, update_W=free, max_iter=5, tol=0, over_relaxation=omega,
              limits=limits)
    W, H = reference_iterations(V, W0, H0, beta, 5, free=np.flatnonzero(free), omega=omega)
    np.testing.assert_allclose(res.W, W, rtol=1e-9)
    np.testing.assert_allclose(res.H, H, rtol=1e-9)
    assert res.loss == pytest.approx(beta_divergence(V, res.W @ res.H, beta), rel=1e-9)


@pytest.mark.parametrize("beta", [-0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
@pytest.mark.parametrize("omega", [1.5, 1.875, 1.9])
def test_safe_interval_keeps_the_majorizer_down(beta, omega):
    low, high = sys.modules["audionmf.nmf"]._safe_steps(beta, omega)
    assert low < 1 < high
    steps = np.exp(np.linspace(np.log(low), np.log(high), 10001))
    r = steps ** (1 / mm_exponent(beta))
    assert np.all(aux_term(steps**omega, r, beta) <= aux_term(1.0, r, beta) + 1e-12 * np.abs(r))
    # Just outside a finite bound, the longer step would raise it: the interval is the whole safe set.
    for outside in (low * 0.99, high * 1.01):
        if 1e-12 < outside < 1e12:
            r = outside ** (1 / mm_exponent(beta))
            assert aux_term(outside**omega, r, beta) > aux_term(1.0, r, beta)


def test_over_relaxation_reaches_a_lower_loss(rng):
    V = rng.random((40, 6)) @ rng.random((6, 120)) + 0.01
    plain = nmf(V, 6, max_iter=40, tol=0, random_state=0, over_relaxation=1)
    longer = nmf(V, 6, max_iter=40, tol=0, random_state=0)
    assert longer.loss < plain.loss


def test_same_result_whatever_the_number_of_threads(rng, monkeypatch):
    small_blocks = Limits(nmf_block_bytes=1)  # 16-column blocks in groups of 2
    V = (rng.random((40, 5)) @ rng.random((5, 300))).astype(np.float32)
    results = []
    for cpus in ({0}, {0, 1}, {0, 1, 2}):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, cpus=cpus: cpus, raising=False)
        results.append(nmf(V, 4, max_iter=20, random_state=0, check_every=1, limits=small_blocks))
    for other in results[1:]:
        np.testing.assert_array_equal(other.W, results[0].W)
        np.testing.assert_array_equal(other.losses, results[0].losses)


@pytest.mark.parametrize("beta", [0.0, 1.0, 1.5, 2.0])
def test_activations_only_block_by_block_equals_the_sweep(rng, beta):
    """With W fixed, running each block to the end gives the same H as sweeping all blocks per iteration."""
    small_blocks = Limits(nmf_block_bytes=1)  # many blocks, threads
    V = rng.random((30, 4)) @ rng.random((4, 200)) + 0.05
    W = rng.random((30, 4)) + 0.1
    by_block = nmf(V, 4, W=W, update_W=False, beta=beta, max_iter=25, tol=0, check_every=5,
                   limits=small_blocks)
    swept = nmf(V, 4, W=W, update_W=False, beta=beta, max_iter=25, tol=0, check_every=5,
                callback=lambda n, loss: None,  # a callback needs the iteration-by-iteration sweep
                limits=small_blocks)
    np.testing.assert_array_equal(by_block.H, swept.H)
    np.testing.assert_array_equal(by_block.loss_iterations, swept.loss_iterations)
    np.testing.assert_allclose(by_block.losses, swept.losses, rtol=1e-12)
    assert by_block.n_iter == swept.n_iter == 25


def test_activations_only_blocks_stop_on_their_own(rng):
    small_blocks = Limits(nmf_block_bytes=1)
    W = rng.random((30, 4)) + 0.1
    H = rng.random((4, 300))
    H[:, :150] = H[:, :1]  # the first half repeats one frame: its blocks converge sooner
    V = W @ H + 0.05 * rng.random((30, 300))  # noise: the loss levels off above zero
    res = nmf(V, 4, W=W, update_W=False, max_iter=3000, tol=1e-4, check_every=5, limits=small_blocks)
    full = nmf(V, 4, W=W, update_W=False, max_iter=3000, tol=0, check_every=5, limits=small_blocks)
    assert res.converged and res.n_iter < 3000
    assert np.all(np.diff(res.losses) <= 1e-10 * res.losses[:-1])
    assert res.loss == pytest.approx(beta_divergence(V, W @ res.H, "kl"), rel=1e-9)
    assert res.loss <= full.loss + 1e-4 * full.losses[0]
    # Stopping is per block: the repeated frames stopped long before the rest.
    early = nmf(V[:, :150], 4, W=W, update_W=False, max_iter=3000, tol=1e-4, check_every=5,
                limits=small_blocks)
    assert early.n_iter < res.n_iter


def test_fits_in_several_threads_at_once(rng, monkeypatch):
    """A fit keeps its thread pool while others, wanting pools of other sizes, start and end."""
    import threading

    small_blocks = Limits(nmf_block_bytes=1)  # 16-frame blocks
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    long_one = rng.random((20, 64)) + 0.1  # 4 blocks: 2 threads
    others = [rng.random((20, n)) + 0.1 for n in (256, 128)]  # 8 and 4 threads
    expected = nmf(long_one, 3, max_iter=300, tol=0, random_state=0, limits=small_blocks)
    started, errors, result = threading.Event(), [], {}

    def long_fit():
        try:
            result["long"] = nmf(long_one, 3, max_iter=300, tol=0, random_state=0,
                                 callback=lambda n, loss: started.set(), limits=small_blocks)
        except Exception as error:  # the failure this test is for
            errors.append(error)
        finally:
            started.set()

    thread = threading.Thread(target=long_fit)
    thread.start()
    started.wait()
    for V in others:
        nmf(V, 3, max_iter=5, tol=0, random_state=0, limits=small_blocks)
    thread.join()
    assert not errors
    np.testing.assert_array_equal(result["long"].W, expected.W)


def test_overlapping_fits_give_blas_its_threads_back(rng):
    """Fits run BLAS single-threaded; fits that overlap in time share that limit, and
    the process gets its BLAS threads back when the last one ends, not before."""
    from threadpoolctl import threadpool_limits

    from audionmf._threads import blas_controller, serial_blas

    def blas_threads():  # of the BLAS numpy had loaded when the first fit ran
        return {info["num_threads"] for info in blas_controller().select(user_api="blas").info()}

    with threadpool_limits(limits=2, user_api="blas"):  # what the user had, even on 1 core
        before = blas_threads()
        assert before == {2}
        first, second = serial_blas(), serial_blas()
        first.__enter__()
        second.__enter__()
        assert blas_threads() == {1}
        first.__exit__(None, None, None)  # ends while the other still runs
        assert blas_threads() == {1}
        second.__exit__(None, None, None)
        assert blas_threads() == before
        nmf(rng.random((40, 300)) + 0.1, 3, max_iter=3, random_state=0)
        assert blas_threads() == before


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_process_forked_during_a_fit_gets_blas_threads_back():
    from threadpoolctl import threadpool_limits

    from audionmf._threads import blas_controller, serial_blas

    def blas_threads():
        return {info["num_threads"] for info in blas_controller().select(user_api="blas").info()}

    with threadpool_limits(limits=2, user_api="blas"), serial_blas():
        assert blas_threads() == {1}
        pid = os.fork()
        if pid == 0:  # the child
            os._exit(0 if blas_threads() == {2} else 1)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_failing_block_waits_for_the_others(rng):
    """When one block of a sweep fails, the others have all stopped before the error
    reaches the fit (which then gives BLAS its threads back), and the fit's BLAS
    limit is lifted even when setting up the engine fails."""
    import threading
    import time

    from threadpoolctl import threadpool_limits

    from audionmf._threads import _SHARED

    V = rng.random((40, 400)) + 0.1
    engine = _engine.Engine(V, 1.0, 1.0, 1e-9, 1e9, gamma=1.0, block_bytes=1 << 22, n_threads=2)
    finished = threading.Event()

    def work(index):
        if index == 0:
            raise ValueError("block 0 failed")
        time.sleep(0.3)
        finished.set()

    with engine, pytest.raises(ValueError, match="block 0"):
        engine._map(work, [0, 1])
    assert finished.is_set()
    assert _SHARED["serial"] == 0

    def no_pool(n_threads):
        raise RuntimeError("can't start new thread")

    with threadpool_limits(limits=2, user_api="blas"), pytest.MonkeyPatch.context() as patch:
        patch.setattr(_engine, "thread_pool", no_pool)
        with pytest.raises(RuntimeError, match="new thread"):
            _engine.Engine(V, 1.0, 1.0, 1e-9, 1e9, gamma=1.0, block_bytes=1 << 22, n_threads=2)
        assert _SHARED["serial"] == 0


def test_fixed_activations_stay_fixed_with_sparsity(rng):
    V = rng.random((20, 30)) + 0.1
    H = rng.random((3, 30)) + 0.1
    res = nmf(V, 3, H=H, update_H=False, sparsity=0.5, max_iter=5)
    np.testing.assert_allclose(res.H, H, rtol=1e-12)


@pytest.mark.parametrize("level", [1e-40, 1e-20, 1e20])
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_extreme_levels_in_float32(rng, level, beta):
    V = (rng.random((30, 3)) @ rng.random((3, 40)) + 0.01) * level
    res = nmf(V.astype(np.float32), 3, beta=beta, max_iter=30, random_state=0)
    assert np.all(np.isfinite(res.W)) and np.all(np.isfinite(res.H))
    assert np.all(np.isfinite(res.losses)) and res.losses[-1] < res.losses[0]


# ------------------------------------------------------------------ numpy twins of the KL kernels
def _step_operands(rng, dtype, shape=(7, 33)):
    """X, num and den with every case of the step: zero and infinite denominators,
    0 / 0, inf / inf, steps below, inside and above the over-relaxed interval."""
    X = (rng.random(shape) + 0.01).astype(dtype)
    num = (rng.random(shape) * np.exp(rng.uniform(-6, 6, shape))).astype(dtype)
    den = (rng.random(shape) + 0.01).astype(dtype)
    den[0, :3] = 0.0
    num[0, 0] = 0.0
    num[1, :2] = np.inf
    den[1, 0] = np.inf
    X[2, :4] = [1e-30, 1e30, 0.0, 1.0]
    return X, num, den


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("gamma, omega", [(1.0, 1.0), (1.0, 1.875), (0.5, 1.0), (0.5, 1.875),
                                          (1.0, 1.9), (0.8, 1.5)])
def test_numpy_step_is_the_kernel(rng, dtype, gamma, omega):
    from audionmf import _kernels, _kernels_numpy
    from audionmf.nmf import _safe_steps

    low, high = _safe_steps(1.0, omega) if gamma == 1.0 else (0.5, 1.8)
    X, num, den = _step_operands(rng, dtype)
    ours, theirs = X.copy(), X.copy()
    with np.errstate(all="ignore"):
        _kernels.multiplicative_step(theirs, num, den, gamma, 1e-20, 1e20, omega, low, high)
    _kernels_numpy.multiplicative_step(ours, num, den, gamma, 1e-20, 1e20, omega, low, high)
    assert np.all(np.isfinite(ours))
    if omega in (1.0, 1.875) and gamma in (1.0, 0.5):  # the fast paths: the same operations
        np.testing.assert_array_equal(ours, theirs)
    else:  # powers: numpy's and LLVM's may differ in the last place
        np.testing.assert_allclose(ours, theirs, rtol=4 * np.finfo(dtype).eps)
    if omega != 1.0:  # the interval's cases were all there
        r = num[2:] / den[2:]  # (the rows without the special cases)
        assert np.any((r >= low) & (r <= high)) and np.any((r < low) | (r > high))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_kl_terms_are_the_kernel(rng, dtype):
    from audionmf import _kernels, _kernels_numpy

    V = rng.random((9, 40)).astype(dtype)
    V[0, :5] = 0.0  # (a zero of V: its term is y)
    Y = (rng.random((9, 40)) + 0.05).astype(dtype)
    for with_loss in (False, True):
        ours, theirs = Y.copy(), Y.copy()
        loss = _kernels_numpy.kl_terms(V, ours, with_loss)
        expected = _kernels.kl_terms(V, theirs, with_loss)
        np.testing.assert_array_equal(ours, theirs)
        assert loss == pytest.approx(expected, rel=1e-9)
    assert loss == pytest.approx(beta_divergence(V.astype(np.float64), Y.astype(np.float64), "kl"), rel=1e-9)


def test_numpy_copies_are_the_kernels(rng):
    from audionmf import _kernels, _kernels_numpy

    src = rng.random((6, 20)).astype(np.float32) * 1e-3
    ours, theirs = np.empty_like(src), np.empty_like(src)
    _kernels_numpy.scaled_copy(src, ours, 3.0, 1e-3, 7.0)
    _kernels.scaled_copy(src, theirs, 3.0, 1e-3, 7.0)
    np.testing.assert_array_equal(ours, theirs)
    assert np.any(ours == 7.0) and np.any(ours != 7.0)
    ours, theirs = src.copy(), src.copy()
    _kernels_numpy.flush_small(ours, 5e-4, 0.0)
    _kernels.flush_small(theirs, 5e-4, 0.0)
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("update", ["both", "activations"])
def test_a_small_kl_fit_is_the_same_on_either_kernels(rng, monkeypatch, update):
    """The engine runs a small KL problem on the numpy twins and a large one on
    numba's kernels; the factors are the same to the bit either way."""
    V = (rng.random((50, 6)) @ rng.random((6, 300))).astype(np.float32)
    W = (rng.random((50, 6)) + 0.1).astype(np.float32)
    kwargs = dict(beta="kl", max_iter=40, tol=0, random_state=3, limits=Limits(nmf_block_bytes=2000))
    if update == "activations":
        kwargs.update(W=W, update_W=False, init="random")
    assert _engine.kernels_for(V, 1.0).__name__ == "audionmf._kernels_numpy"
    small = nmf(V, 6, **kwargs)
    monkeypatch.setattr(_engine, "SMALL_KL_ENTRIES", 0)
    assert _engine.kernels_for(V, 1.0).__name__ == "audionmf._kernels"
    large = nmf(V, 6, **kwargs)
    np.testing.assert_array_equal(small.W, large.W)
    np.testing.assert_array_equal(small.H, large.H)
    assert small.loss == pytest.approx(large.loss, rel=1e-9)


def test_only_large_or_non_kl_problems_take_numba():
    V = np.ones((10, 10), dtype=np.float32)
    assert _engine.kernels_for(V, 1.0).__name__ == "audionmf._kernels_numpy"
    assert _engine.kernels_for(V, 0.0).__name__ == "audionmf._kernels"
    assert _engine.kernels_for(V, 2.0).__name__ == "audionmf._kernels"
    big = np.broadcast_to(np.float32(1.0), (1000, _engine.SMALL_KL_ENTRIES // 1000 + 1))
    assert _engine.kernels_for(big, 1.0).__name__ == "audionmf._kernels"


def test_a_short_separation_does_not_start_numba(tmp_path):
    """What the numpy twins are for: a fresh process that separates a few seconds
    blindly never imports numba (whose start costs more than the fit)."""
    import subprocess

    code = ("import sys, numpy as np, audionmf\n"
            "y = np.random.default_rng(0).standard_normal(3 * 22050).astype(np.float32)\n"
            "audionmf.separate(y, 22050, n_sources=2, random_state=0)\n"
            "audionmf.nmf(np.random.default_rng(1).random((30, 40)), 3, beta='kl')\n"
            "print('numba' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(audionmf.__file__))})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"

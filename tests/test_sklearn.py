"""audionmf.NMF: scikit-learn's interface on the engine (audionmf/sklearn.py)."""
import importlib
import sys

import librosa
import numpy as np
import pytest
import sklearn.decomposition
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

import audionmf
from audionmf import ParameterError, beta_divergence
from audionmf.sklearn import NMF

from conftest import SAMPLE


# scikit-learn's own NMF declares no expected failures, and none are excluded here.
# Its checks run it with max_iter=500 and solver="cd"; with solver="mu" it fails
# check_transformer_general and check_transformer_data_not_an_array (fit_transform(X)
# against transform(X), atol 1e-2) at that setting, as multiplicative updates do until
# both fits have converged: the instance here runs the over-relaxed steps, which get
# there in 2000 iterations on the checks' data (plain updates need about 4000).
# tol=0: transform stops each block of samples on its own loss, so with tol > 0 a
# sample's result moves at the level of tol with the other samples of its block, which
# the invariance checks (atol 1e-9) see; with tol=0 every sample runs all iterations.
@parametrize_with_checks([NMF(max_iter=2000, tol=0, over_relaxation=None)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def planted(rng, n_samples=60, n_features=30, K=3, noise=0.05, dtype=np.float64):
    """X = W H (n_samples x n_features) with a little multiplicative noise, strictly positive."""
    X = (rng.random((n_samples, K)) + 0.05) @ (rng.random((K, n_features)) + 0.05)
    return (X * rng.uniform(1 - noise, 1 + noise, X.shape)).astype(dtype)


def start(rng, X, K):
    """Initial W (n_samples x K) and H (K x n_features) for init='custom', X's dtype."""
    level = np.sqrt(X.mean() / K)
    return ((level * rng.uniform(0.5, 1.5, (X.shape[0], K))).astype(X.dtype),
            (level * rng.uniform(0.5, 1.5, (K, X.shape[1]))).astype(X.dtype))


def naive_divergence(X, Y, beta):
    """The beta-divergence, summed, written out from its definition (X, Y > 0)."""
    X, Y = X.astype(np.float64), Y.astype(np.float64)
    if beta == 1:
        return float(np.sum(X * np.log(X / Y) - X + Y))
    if beta == 0:
        return float(np.sum(X / Y - np.log(X / Y) - 1))
    return float(np.sum(X**beta + (beta - 1) * Y**beta - beta * X * Y ** (beta - 1)) / (beta * (beta - 1)))


def spectrogram(seconds=3.0):
    """|STFT| of the start of the bundled sample, (n_freq, n_frames), strictly positive."""
    y, sr = librosa.load(SAMPLE, sr=22050, mono=True, duration=seconds)
    S = np.abs(librosa.stft(y, n_fft=1024, hop_length=512))
    return np.maximum(S, 1e-6 * S.max())


def with_start(cls, W0, H0, **params):
    """An estimator of class ``cls`` whose fit_transform(X) starts from W0, H0 (for librosa)."""

    class Started(cls):
        def fit_transform(self, X, y=None, W=None, H=None):
            return super().fit_transform(X, W=W0, H=H0)

    return Started(init="custom", **params)


@pytest.mark.parametrize("beta_loss", ["kullback-leibler", "itakura-saito"])
def test_librosa_decompose_transformer(beta_loss):
    S = spectrogram()
    K, iters = 8, 100
    W0, H0 = start(np.random.default_rng(1), S.T, K)  # scikit-learn's orientation: X = S.T
    results = {}
    for cls in (NMF, sklearn.decomposition.NMF):
        model = with_start(cls, W0, H0, n_components=K, solver="mu", beta_loss=beta_loss,
                           max_iter=iters, tol=0)
        comps, acts = librosa.decompose.decompose(S, transformer=model)
        results[cls] = (comps, acts, beta_divergence(S, comps @ acts, beta_loss))
    (c1, a1, d1), (c2, a2, d2) = results[NMF], results[sklearn.decomposition.NMF]
    assert c1.shape == c2.shape == (S.shape[0], K)
    assert a1.shape == a2.shape == (K, S.shape[1])
    assert c1.dtype == c2.dtype == S.dtype
    # Same start, same iterations: no worse than scikit-learn (over-relaxed steps: better).
    assert d1 <= d2 * (1 + 1e-6)
    # The default init works through librosa too.
    comps, acts = librosa.decompose.decompose(S, n_components=K, transformer=NMF(K, max_iter=20))
    assert comps.shape == (S.shape[0], K) and acts.shape == (K, S.shape[1])


@pytest.mark.parametrize("beta_loss", ["frobenius", "kullback-leibler", "itakura-saito"])
def test_plain_updates_follow_sklearn_mu(rng, beta_loss):
    # over_relaxation=1 runs the updates scikit-learn's "mu" solver runs, in the same
    # order (its W, then its H): from the same start, the same factors.
    X = planted(rng)
    W0, H0 = start(rng, X, 4)
    ours = NMF(4, init="custom", beta_loss=beta_loss, max_iter=30, tol=0, over_relaxation=1)
    theirs = sklearn.decomposition.NMF(4, init="custom", solver="mu", beta_loss=beta_loss,
                                       max_iter=30, tol=0)
    W1 = ours.fit_transform(X, W=W0, H=H0)
    W2 = theirs.fit_transform(X, W=W0, H=H0)
    np.testing.assert_allclose(W1, W2, rtol=1e-6)
    np.testing.assert_allclose(ours.components_, theirs.components_, rtol=1e-6)
    assert ours.n_iter_ == theirs.n_iter_ == 30


def test_in_a_pipeline(rng):
    # Two classes of spectra, each a mix of its own templates: NMF features, then a classifier.
    templates = rng.random((2, 3, 40)) ** 4
    y = np.repeat([0, 1], 60)
    X = np.einsum("nk,nkf->nf", rng.random((120, 3)) + 0.1, templates[y]) + 1e-3
    pipe = Pipeline([("scale", FunctionTransformer(np.sqrt, feature_names_out="one-to-one")), ("nmf", NMF(6, max_iter=100)),
                     ("clf", LogisticRegression(max_iter=1000))])
    pipe.fit(X[::2], y[::2])
    assert pipe.named_steps["nmf"].components_.shape == (6, 40)
    assert pipe.score(X[1::2], y[1::2]) >= 0.9
    assert list(pipe[:-1].get_feature_names_out()) == [f"nmf{i}" for i in range(6)]


def test_grid_search_over_n_components(rng):
    X = planted(rng, n_samples=90, n_features=20, K=3, noise=0.01)

    def fit_of(estimator, X, y=None):  # higher is better: minus the held-out divergence
        return -beta_divergence(X, estimator.inverse_transform(estimator.transform(X)), "kl")

    search = GridSearchCV(NMF(beta_loss="kullback-leibler", max_iter=150, tol=0, random_state=0),
                          {"n_components": [1, 3]}, scoring=fit_of, cv=3)
    search.fit(X)
    assert search.best_params_ == {"n_components": 3}
    scores = search.cv_results_["mean_test_score"]
    assert scores[1] > 10 * scores[0]  # both negative: rank 3 explains far more than rank 1
    assert search.best_estimator_.components_.shape == (3, 20)


def test_fit_transform_then_transform_consistent(rng):
    X = planted(rng, noise=0.02)
    model = NMF(3, beta_loss="kullback-leibler", max_iter=2000, tol=1e-8, random_state=0)
    W = model.fit_transform(X)
    W2 = model.transform(X)
    np.testing.assert_allclose(W2, W, rtol=0, atol=2e-3 * W.max())
    # transform solves for W with the components fixed, from a flat start: it gets
    # back to the fit's loss.
    d_fit = beta_divergence(X, W @ model.components_, "kl")
    assert beta_divergence(X, W2 @ model.components_, "kl") <= d_fit * (1 + 1e-3)
    assert np.allclose(model.fit(X).transform(X), W2)


def test_inverse_transform(rng):
    X = planted(rng)
    model = NMF(4, max_iter=50, random_state=0)
    W = model.fit_transform(X)
    back = model.inverse_transform(W)
    assert back.shape == X.shape
    np.testing.assert_allclose(back, W @ model.components_)


@pytest.mark.parametrize("beta_loss,beta", [("frobenius", 2), ("kullback-leibler", 1),
                                            ("itakura-saito", 0), (0.5, 0.5), (1.5, 1.5)])
def test_reconstruction_err_is_sklearns_definition(rng, beta_loss, beta):
    X = planted(rng)
    model = NMF(4, beta_loss=beta_loss, max_iter=40, random_state=0)
    W = model.fit_transform(X)
    expected = np.sqrt(2 * naive_divergence(X, W @ model.components_, beta))
    assert model.reconstruction_err_ == pytest.approx(expected, rel=1e-9)
    if beta == 2:
        assert model.reconstruction_err_ == pytest.approx(np.linalg.norm(X - W @ model.components_))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_kept(rng, dtype):
    X = planted(rng, dtype=dtype)
    model = NMF(3, beta_loss="itakura-saito", max_iter=30, random_state=0)
    assert model.fit_transform(X).dtype == dtype
    assert model.components_.dtype == dtype
    assert model.transform(X).dtype == dtype
    W0, H0 = start(rng, X, 3)
    assert NMF(3, init="custom", max_iter=5).fit_transform(X, W=W0, H=H0).dtype == dtype


def test_integers_become_float64(rng):
    X = rng.integers(1, 10, (20, 8))
    assert NMF(2, max_iter=10, random_state=0).fit_transform(X).dtype == np.float64


def test_callers_arrays_unchanged(rng):
    X = planted(rng)
    W0, H0 = start(rng, X, 3)
    copies = X.copy(), W0.copy(), H0.copy()
    model = NMF(3, init="custom", max_iter=20, alpha_W=0.01, alpha_H=0, l1_ratio=1)
    model.fit(X, W=W0, H=H0)
    model.transform(X)
    for before, after in zip(copies, (X, W0, H0)):
        np.testing.assert_array_equal(before, after)


def test_same_seed_same_result(rng):
    X = planted(rng)
    for seed in (0, np.random.RandomState(0)):
        a = NMF(3, init="random", max_iter=20, random_state=seed).fit(X).components_
        b = NMF(3, init="random", max_iter=20,
                random_state=np.random.RandomState(0) if not isinstance(seed, int) else seed).fit(X).components_
        np.testing.assert_array_equal(a, b)


def test_n_components_none_and_auto(rng):
    X = planted(rng, n_features=7)
    assert NMF(None, max_iter=5).fit(X).n_components_ == 7
    assert NMF(max_iter=5).fit(X).n_components_ == 7  # "auto", no custom start: n_features
    W0, H0 = start(rng, X, 2)
    assert NMF(init="custom", max_iter=5).fit(X, W=W0, H=H0).n_components_ == 2


@pytest.mark.parametrize("beta_loss", ["frobenius", 0.5])
def test_l1_penalty_on_transform_as_sklearn(rng, beta_loss):
    # With the components fixed the problem is convex: both solvers reach its one
    # minimum, which depends on the scaling of alpha_W (by n_features, as scikit-learn).
    X = planted(rng, n_samples=40, n_features=25) * 3.7
    model = NMF(3, beta_loss=beta_loss, max_iter=100, random_state=0).fit(X)
    model.set_params(alpha_W=0.05, alpha_H=0, l1_ratio=1.0, max_iter=3000, tol=0)
    theirs = sklearn.decomposition.NMF(3, solver="mu", beta_loss=beta_loss, alpha_W=0.05,
                                       alpha_H=0, l1_ratio=1.0, max_iter=3000, tol=0)
    theirs.components_, theirs.n_components_, theirs.n_features_in_ = model.components_, 3, 25
    W_pen = model.transform(X)
    np.testing.assert_allclose(W_pen, theirs.transform(X), rtol=1e-3, atol=1e-6 * W_pen.max())
    model.set_params(alpha_W=0.0)
    assert W_pen.sum() < 0.99 * model.transform(X).sum()  # the penalty did shrink W


def test_l1_penalty_under_fit_normalizes_components(rng):
    X = planted(rng)
    model = NMF(3, beta_loss="kullback-leibler", alpha_W=0.01, alpha_H=0, l1_ratio=1,
                max_iter=50, random_state=0).fit(X)
    np.testing.assert_allclose(np.linalg.norm(model.components_, axis=1), 1, rtol=1e-5)


@pytest.mark.parametrize("params,match", [
    (dict(solver="cd"), r"sklearn\.decomposition\.NMF\(solver='cd'\)"),
    (dict(alpha_W=0.1, l1_ratio=1), r"alpha_H='same'.*does not penalize components_"),
    (dict(alpha_H=0.1), r"alpha_H=0\.1.*sklearn\.decomposition\.NMF\(solver='mu'\)"),
    (dict(alpha_W=0.1, alpha_H=0, l1_ratio=0.5), r"no L2 penalty.*l1_ratio=1"),
    (dict(init="nndsvd"), r"init='nndsvd'.*'nndsvda'"),
    (dict(init="nndsvdar"), r"init='nndsvdar'.*'nndsvda'"),
    (dict(init="custom"), r"init='custom' needs both W and H"),
    (dict(shuffle=True), r"shuffle=True"),
    (dict(beta_loss="hellinger"), r"beta_loss='hellinger'"),
    (dict(max_iter=0), r"max_iter=0"),
    (dict(n_components=0), r"n_components=0"),
    (dict(tol=-1.0), r"tol=-1\.0"),
])
def test_refused_with_a_clear_error(rng, params, match):
    X = planted(rng)
    model = NMF(**{"n_components": 3, **params})  # nothing is checked before fit
    with pytest.raises(ParameterError, match=match):
        model.fit(X)
    assert issubclass(ParameterError, ValueError)


def test_zeros_refused_for_itakura_saito(rng):
    X = planted(rng)
    X[0, 0] = 0
    with pytest.raises(ValueError, match="X contains zeros"):
        NMF(2, beta_loss="itakura-saito").fit(X)
    NMF(2, beta_loss="kullback-leibler", max_iter=5).fit(X)  # KL takes zeros


def test_l2_penalty_refused_in_transform_too(rng):
    X = planted(rng)
    model = NMF(2, max_iter=10).fit(X).set_params(alpha_W=0.1, alpha_H=0, l1_ratio=0.0)
    with pytest.raises(ParameterError, match="no L2 penalty"):
        model.transform(X)


def test_verbose_prints_progress(rng, capsys):
    NMF(2, max_iter=20, tol=0, verbose=1, random_state=0).fit(planted(rng))
    assert "Epoch 10 reached" in capsys.readouterr().out


def test_missing_sklearn_one_line_error(monkeypatch):
    # Simulate an environment without scikit-learn: every sklearn module unimportable.
    for name in [n for n in sys.modules if n == "sklearn" or n.startswith("sklearn.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.delitem(sys.modules, "audionmf.sklearn")
    monkeypatch.delattr(audionmf, "sklearn", raising=False)
    with pytest.raises(ImportError, match=r"^audionmf\.NMF needs scikit-learn.*: "
                                          r"pip install 'audionmf\[sklearn\]'$") as info:
        audionmf.NMF
    assert "\n" not in str(info.value)
    with pytest.raises(ImportError, match=r"pip install 'audionmf\[sklearn\]'"):
        importlib.import_module("audionmf.sklearn")
    namespace = {}
    exec("from audionmf import *", namespace)  # NMF is not in __all__: works without it
    assert "nmf" in namespace and "NMF" not in namespace


def test_lazy_attribute():
    assert audionmf.NMF is NMF
    assert "NMF" in dir(audionmf)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        audionmf.nope

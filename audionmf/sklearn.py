"""scikit-learn's NMF interface on audionmf's engine.

:class:`NMF` takes the constructor, methods and attributes of
:class:`sklearn.decomposition.NMF` with ``solver="mu"``, so that code written
for scikit-learn (``librosa.decompose.decompose(S, transformer=...)``, a
``Pipeline``, ``GridSearchCV``) runs on :func:`audionmf.nmf` instead::

    from audionmf import NMF          # instead of: from sklearn.decomposition import NMF

Orientation: scikit-learn factors ``X`` (n_samples x n_features) ~= ``W_sk @ H_sk``
with ``W_sk`` (n_samples x n_components) the transformed data and ``H_sk``
(n_components x n_features) the ``components_``. This module factors
``V = X.T`` (n_features x n_samples) ~= ``W @ H`` with :func:`audionmf.nmf`, so
``W = components_.T`` are the templates and ``H = W_sk.T`` the activations;
``transform`` is the engine's fit of the activations with the templates fixed.

This module needs scikit-learn (``pip install 'audionmf[sklearn]'``); the rest
of audionmf does not.
"""
import numbers
import time
import warnings

import numpy as np

try:
    import scipy.sparse as sp
    from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.utils.validation import check_array, check_is_fitted, validate_data
except ImportError as exc:  # missing, or older than 1.6 (no validate_data, no tags)
    if (exc.name or "").split(".")[0] != "sklearn":
        raise
    raise ImportError(
        "audionmf.NMF needs scikit-learn >= 1.6 (not installed, or older): "
        "pip install 'audionmf[sklearn]'"
    ) from None

from ._validation import ParameterError, beta_to_float, check_nonnegative_real, check_positive_int
from .nmf import beta_divergence, nmf

__all__ = ["NMF"]

#: The engine checks ``tol`` every this many iterations, as scikit-learn's "mu" solver does.
CHECK_EVERY = 10


class NMF(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Non-negative matrix factorization with scikit-learn's interface, on audionmf's engine.

    A drop-in for ``sklearn.decomposition.NMF(solver="mu")``: same parameters,
    defaults and attributes, ``X`` (n_samples x n_features) ~=
    ``transform(X) @ components_``. It minimizes

    ``D_beta(X | W_sk H_sk) + alpha_W * l1_ratio * n_features * ||vec(W_sk)||_1``

    (``D_beta`` is half the squared Frobenius norm for ``beta_loss="frobenius"``)
    with the multiplicative updates of :func:`audionmf.nmf`, which never increase
    it, in a fraction of scikit-learn's time and memory (see the README). What the
    engine cannot do is refused with a message naming the alternative, never
    changed silently:

    * ``solver="cd"`` (use ``sklearn.decomposition.NMF(solver="cd")``);
    * an L2 penalty (``l1_ratio < 1`` with ``alpha_W > 0``) or any penalty on
      ``components_`` while fitting (``alpha_H > 0``, which ``alpha_H="same"``
      gives whenever ``alpha_W > 0``: pass ``alpha_H=0``);
    * ``init="nndsvd"`` and ``"nndsvdar"`` (use ``"nndsvda"``, ``"random"`` or
      ``"custom"``);
    * zeros in ``X`` with ``beta_loss <= 0``, as scikit-learn refuses them;
    * ``shuffle=True`` (a coordinate-descent option).

    The updates are those of scikit-learn's "mu" solver, in the same order, so the
    same start gives the same factors to round-off (``over_relaxation=None`` turns
    on the engine's over-relaxed steps instead). Differences that remain (the
    reasons are in ``docs/decisions.md``):

    * ``tol`` stops the fit when the loss decreased by less than ``tol``
      relative to the current loss over 10 iterations (scikit-learn divides by
      the initial loss instead, so it stops earlier for the same ``tol``);
      ``transform`` stops each block of samples on its own loss;
    * with an L1 penalty on ``W_sk`` while fitting, each row of ``components_``
      is rescaled to unit Euclidean norm after its update (scikit-learn's
      objective with a penalty on ``W_sk`` alone has no minimum: ``W_sk``
      shrinks and ``components_`` grows without end);
    * ``random_state=None`` draws fresh entropy rather than using NumPy's
      global generator; the same seed gives the same result, but not the same
      random start as scikit-learn's;
    * sparse ``X`` is accepted and converted to a dense array (the engine is dense).

    Parameters
    ----------
    n_components : int, "auto" or None
        Number of components. None: ``n_features``. "auto": from the shapes of
        ``W`` and ``H`` with ``init="custom"``, else ``n_features``.
    init : {None, "random", "nndsvda", "custom"}
        None: "nndsvda" if ``n_components <= min(n_samples, n_features)``, else
        "random". "custom": ``W`` and ``H`` given to ``fit`` / ``fit_transform``.
    solver : {"mu"}
        Multiplicative updates, the only solver here.
    beta_loss : float or {"frobenius", "kullback-leibler", "itakura-saito"}
        The beta-divergence: 2, 1, 0, or any real in [-10, 10].
    tol : float >= 0
        Stopping tolerance (see above); 0 runs all ``max_iter`` iterations.
    max_iter : int >= 1
        Maximum number of iterations (each updates ``W_sk``, then ``components_``).
    random_state : None, int, numpy.random.RandomState or numpy.random.Generator
        Seed of the initialization ("random", "nndsvda").
    alpha_W : float >= 0
        Weight of the penalty on ``W_sk`` (the transformed data), scaled by
        ``n_features`` as in scikit-learn. Only its L1 part is supported.
    alpha_H : float >= 0 or "same"
        Weight of the penalty on ``components_``: must be 0 (``"same"`` is
        ``alpha_W``), the engine does not penalize templates.
    l1_ratio : float in [0, 1]
        Share of L1 in the penalty; must be 1 when ``alpha_W > 0``.
    verbose : int
        Print the loss every 10 iterations when non-zero.
    shuffle : bool
        Accepted for compatibility; must be False.
    over_relaxation : float in [1, 2) or None
        Exponent of the over-relaxed steps of :func:`audionmf.nmf`. 1: the plain
        multiplicative updates, as scikit-learn. None: the engine's default
        (1.875, or 1 with a penalty), usually a lower loss in the same
        iterations, but not always and not the same factors (numbers in
        ``docs/decisions.md``). Not a scikit-learn parameter.

    Attributes
    ----------
    components_ : np.ndarray [shape=(n_components, n_features)]
        The factor ``H_sk`` (the templates, one per row).
    n_components_ : int
    reconstruction_err_ : float
        ``sqrt(2 * D_beta(X | W_sk H_sk))`` of the fit, as scikit-learn defines it
        (the Frobenius norm of ``X - W_sk H_sk`` for ``beta_loss="frobenius"``).
    n_iter_ : int
        Iterations run by the last fit.
    n_features_in_ : int
    feature_names_in_ : np.ndarray [shape=(n_features_in_,)]
        Only when ``X`` had string column names.

    See Also
    --------
    audionmf.nmf : the engine, in the NMF literature's orientation.
    sklearn.decomposition.NMF : the interface followed here.

    Examples
    --------
    >>> import numpy as np
    >>> from audionmf import NMF
    >>> rng = np.random.default_rng(0)
    >>> X = rng.random((100, 3)) @ rng.random((3, 40))   # n_samples x n_features
    >>> X *= rng.uniform(0.95, 1.05, X.shape)           # and a little noise
    >>> model = NMF(n_components=3, beta_loss="kullback-leibler", max_iter=100, tol=0,
    ...             random_state=0)   # tol=0: exactly max_iter iterations
    >>> W = model.fit_transform(X)
    >>> W.shape, model.components_.shape
    ((100, 3), (3, 40))
    >>> model.n_iter_, bool(model.reconstruction_err_ < 0.1 * np.sqrt(2 * X.sum()))
    (100, True)
    >>> model.transform(X[:5]).shape
    (5, 3)
    """

    def __init__(
        self,
        n_components="auto",
        *,
        init=None,
        solver="mu",
        beta_loss="frobenius",
        tol=1e-4,
        max_iter=200,
        random_state=None,
        alpha_W=0.0,
        alpha_H="same",
        l1_ratio=0.0,
        verbose=0,
        shuffle=False,
        over_relaxation=1.0,
    ):
        self.n_components = n_components
        self.init = init
        self.solver = solver
        self.beta_loss = beta_loss
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state
        self.alpha_W = alpha_W
        self.alpha_H = alpha_H
        self.l1_ratio = l1_ratio
        self.verbose = verbose
        self.shuffle = shuffle
        self.over_relaxation = over_relaxation

    def fit(self, X, y=None, W=None, H=None):
        """Learn the components of ``X``.

        Parameters
        ----------
        X : array-like or sparse matrix [shape=(n_samples, n_features)], non-negative
        y : ignored
        W : np.ndarray [shape=(n_samples, n_components)], optional
            Initial transformed data, with ``init="custom"``.
        H : np.ndarray [shape=(n_components, n_features)], optional
            Initial components, with ``init="custom"``.

        Returns
        -------
        self
        """
        self.fit_transform(X, W=W, H=H)
        return self

    def fit_transform(self, X, y=None, W=None, H=None):
        """Learn the components of ``X`` and return its transformed data.

        Parameters
        ----------
        X : array-like or sparse matrix [shape=(n_samples, n_features)], non-negative
        y : ignored
        W : np.ndarray [shape=(n_samples, n_components)], optional
            Initial transformed data, with ``init="custom"``.
        H : np.ndarray [shape=(n_components, n_features)], optional
            Initial components, with ``init="custom"``.

        Returns
        -------
        np.ndarray [shape=(n_samples, n_components)]
            ``W_sk``, of X's dtype (float32 or float64).
        """
        X = _dense(validate_data(self, X, accept_sparse=("csr", "csc"),
                                 dtype=[np.float64, np.float32], ensure_non_negative=True))
        options = self._options(X, fitting=True)
        n_samples, n_features = X.shape
        K, init, W0, H0 = self._start(X, W, H)
        # V = X.T: the engine's templates are components_.T, its activations W_sk.T.
        res = nmf(
            X.T, K, beta=options["beta"], init=init, max_iter=options["max_iter"],
            tol=options["tol"], random_state=options["rng"],
            W=None if H0 is None else H0.T, H=None if W0 is None else W0.T,
            sparsity=self._sparsity(X, options), over_relaxation=options["over_relaxation"],
            check_every=CHECK_EVERY, callback=self._progress(),
        )
        Wsk = np.ascontiguousarray(res.H.T)
        self.components_ = np.ascontiguousarray(res.W.T)
        self.n_components_ = K
        self.n_iter_ = res.n_iter
        self.reconstruction_err_ = _reconstruction_err(X, Wsk, self.components_, options["beta"])
        if not res.converged and options["tol"] > 0:
            warnings.warn(f"Maximum number of iterations {options['max_iter']} reached. "
                          "Increase it to improve convergence.", ConvergenceWarning)
        return Wsk

    def transform(self, X):
        """Transform ``X`` with the fitted components held fixed.

        Parameters
        ----------
        X : array-like or sparse matrix [shape=(n_samples, n_features)], non-negative

        Returns
        -------
        np.ndarray [shape=(n_samples, n_components)]
            Of X's dtype (float32 or float64).
        """
        check_is_fitted(self)
        X = _dense(validate_data(self, X, accept_sparse=("csr", "csc"),
                                 dtype=[np.float64, np.float32], reset=False,
                                 ensure_non_negative=True))
        options = self._options(X, fitting=False)
        res = nmf(
            X.T, self.components_.shape[0], beta=options["beta"],
            max_iter=options["max_iter"], tol=options["tol"],
            W=self.components_.T.astype(X.dtype, copy=False), update_W=False,
            sparsity=self._sparsity(X, options), over_relaxation=options["over_relaxation"],
            check_every=CHECK_EVERY, callback=self._progress(),
        )
        return np.ascontiguousarray(res.H.T)

    def inverse_transform(self, X):
        """Map transformed data back to the feature space: ``X @ components_``.

        Parameters
        ----------
        X : array-like or sparse matrix [shape=(n_samples, n_components)]

        Returns
        -------
        np.ndarray [shape=(n_samples, n_features)]
        """
        check_is_fitted(self)
        X = check_array(X, accept_sparse=("csr", "csc"), dtype=[np.float64, np.float32])
        return X @ self.components_

    @property
    def _n_features_out(self):
        """Number of transformed output features (for ``get_feature_names_out``)."""
        return self.components_.shape[0]

    def __sklearn_tags__(self):
        # The tags of sklearn.decomposition.NMF.
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    # -- validation at the door ------------------------------------------------------

    def _options(self, X, fitting):
        """The parameters, checked, as the engine takes them; refuses what it cannot do."""
        if self.solver != "mu":
            raise ParameterError(
                f"solver={self.solver!r}: audionmf.NMF runs multiplicative updates only "
                "(solver='mu'); for coordinate descent use sklearn.decomposition.NMF(solver='cd')"
            )
        if self.shuffle is not False and self.shuffle != 0:
            raise ParameterError(f"shuffle={self.shuffle!r}: shuffling is an option of "
                                 "coordinate descent; use sklearn.decomposition.NMF(solver='cd')")
        beta = _beta(self.beta_loss)
        max_iter = check_positive_int(self.max_iter, "max_iter")
        tol = check_nonnegative_real(self.tol, "tol")
        alpha_W = check_nonnegative_real(self.alpha_W, "alpha_W")
        alpha_H = alpha_W if _is_same(self.alpha_H) else check_nonnegative_real(self.alpha_H, "alpha_H")
        l1_ratio = check_nonnegative_real(self.l1_ratio, "l1_ratio")
        if l1_ratio > 1:
            raise ParameterError(f"l1_ratio={self.l1_ratio!r}: must lie in [0, 1]")
        if alpha_W > 0 and l1_ratio < 1:
            raise ParameterError(
                f"alpha_W={self.alpha_W!r} with l1_ratio={self.l1_ratio!r}: audionmf has no L2 "
                "penalty; use l1_ratio=1 (L1 only), or sklearn.decomposition.NMF(solver='mu')"
            )
        if fitting and alpha_H > 0:
            raise ParameterError(
                f"alpha_H={self.alpha_H!r}"
                + (f" (the value of alpha_W={self.alpha_W!r})" if _is_same(self.alpha_H) else "")
                + ": audionmf does not penalize components_; pass alpha_H=0 to penalize the "
                "transformed data only, or use sklearn.decomposition.NMF(solver='mu')"
            )
        if self.over_relaxation is not None:
            check_nonnegative_real(self.over_relaxation, "over_relaxation")
        if isinstance(self.verbose, bool) or not isinstance(self.verbose, numbers.Integral):
            raise ParameterError(f"verbose={self.verbose!r}: expected an integer or a bool")
        if beta <= 0 and X.min() == 0:
            raise ParameterError(
                f"beta_loss={self.beta_loss!r}: X contains zeros, which have no divergence when "
                "beta_loss <= 0 (as in scikit-learn); add a small positive value to X, or use "
                "a positive beta_loss"
            )
        return {
            "beta": beta, "max_iter": max_iter, "tol": tol, "alpha_W": alpha_W,
            "l1_ratio": l1_ratio, "over_relaxation": self.over_relaxation,
            "rng": _generator(self.random_state) if fitting else None,
        }

    def _start(self, X, W, H):
        """The number of components, and the engine's init or the given W_sk, H_sk."""
        n_samples, n_features = X.shape
        K = self.n_components
        if K is None:
            K = n_features
        elif not (isinstance(K, str) and K == "auto"):
            K = check_positive_int(K, "n_components")
        init = self.init
        if init == "custom":
            if W is None or H is None:
                raise ParameterError("init='custom' needs both W and H passed to fit or fit_transform")
            W = _factor(W, "W", X.dtype)
            H = _factor(H, "H", X.dtype)
            if K == "auto":
                K = H.shape[0]
            if W.shape != (n_samples, K) or H.shape != (K, n_features):
                raise ParameterError(
                    f"init='custom': W has shape {W.shape} and H {H.shape}, expected "
                    f"{(n_samples, K)} and {(K, n_features)}"
                )
            return K, None, W, H
        if init in ("nndsvd", "nndsvdar"):
            raise ParameterError(
                f"init={init!r}: multiplicative updates cannot move the zeros NNDSVD leaves "
                "(scikit-learn warns of it for solver='mu'); use init='nndsvda' (zeros "
                "filled with the mean), 'random', or 'custom' with your own W and H"
            )
        if init not in (None, "random", "nndsvda"):
            raise ParameterError(f"init={init!r}: expected None, 'random', 'nndsvda' or 'custom'")
        if W is not None or H is not None:
            warnings.warn("When init!='custom', provided W or H are ignored. Set "
                          "init='custom' to use them as initialization.", RuntimeWarning)
        if K == "auto":
            K = n_features
        return K, init, None, None

    def _sparsity(self, X, options):
        """scikit-learn's L1 weight on W_sk, in the engine's units.

        scikit-learn adds ``alpha_W * l1_ratio * n_features * sum(W_sk)``; the engine
        minimizes ``D(V/m | W H/m) + lambda * sum(H/m)`` with ``m = mean(V)``, that is
        ``m**-beta * (D(V | W H) + lambda * m**(beta-1) * sum(H))``, so
        ``lambda = alpha_W * l1_ratio * n_features * m**(1-beta)``.
        """
        weight = options["alpha_W"] * options["l1_ratio"] * X.shape[1]
        if weight == 0:
            return 0.0
        m = float(np.mean(X, dtype=np.float64))
        return weight * m ** (1.0 - options["beta"])

    def _progress(self):
        """A callback printing the loss every 10 iterations when verbose, else None."""
        if not self.verbose:
            return None
        start = time.perf_counter()

        def report(iteration, loss):
            if iteration % CHECK_EVERY == 0:
                print(f"Epoch {iteration:02d} reached after {time.perf_counter() - start:.3f} "
                      f"seconds, error: {np.sqrt(2 * max(loss, 0.0)):f}")

        return report


def _beta(beta_loss):
    """beta as a float; scikit-learn's loss names and audionmf's."""
    if isinstance(beta_loss, np.generic):
        beta_loss = beta_loss.item()
    try:
        return beta_to_float(beta_loss)
    except ParameterError:
        raise ParameterError(
            f"beta_loss={beta_loss!r}: expected 'frobenius', 'kullback-leibler', "
            "'itakura-saito' or a real number in [-10, 10]"
        ) from None


def _is_same(alpha_H):
    return isinstance(alpha_H, str) and alpha_H == "same"


def _generator(random_state):
    """A NumPy Generator from scikit-learn's kinds of random_state, never the global one."""
    if random_state is None or isinstance(random_state, np.random.Generator):
        return np.random.default_rng(random_state)
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(np.iinfo(np.int32).max))
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ParameterError(f"random_state={random_state!r}: must be non-negative")
        return np.random.default_rng(int(random_state))
    raise ParameterError(f"random_state={random_state!r}: expected None, an int, a "
                         "numpy.random.RandomState or a numpy.random.Generator")


def _factor(A, name, dtype):
    """A given initial factor as a 2-D array of X's dtype (the caller's array is not changed)."""
    A = check_array(A, dtype=None, ensure_non_negative=True, input_name=f"NMF (input {name})")
    return A.astype(dtype, copy=False)


def _dense(X):
    """The engine is dense: a sparse X becomes an array."""
    return X.toarray() if sp.issparse(X) else X


def _reconstruction_err(X, Wsk, Hsk, beta):
    """scikit-learn's reconstruction error: ``sqrt(2 * D_beta(X | Wsk Hsk))``."""
    loss = beta_divergence(X, Wsk @ Hsk, beta=beta)
    return float(np.sqrt(2.0 * max(loss, 0.0)))

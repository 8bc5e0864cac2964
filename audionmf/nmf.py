r"""Non-negative matrix factorization under the beta-divergence.

``V ~= W @ H`` with ``V`` of shape (n_freq, n_frames), templates ``W`` of shape
(n_freq, K) and activations ``H`` of shape (K, n_frames), as in
:func:`librosa.decompose.decompose` and the NMF literature (scikit-learn's
orientation is the transpose). This module knows nothing about audio: it
factorizes any non-negative matrix.

The updates are the multiplicative ones with the majorization-minimization
exponent of Févotte & Idier (2011), so the divergence never increases:

.. math::

    H \leftarrow H \odot \left(\frac{W^\top [(WH)^{\beta-2} \odot V]}
                                   {W^\top (WH)^{\beta-1}}\right)^{\gamma(\beta)},
    \quad \gamma(\beta) = \begin{cases} 1/(2-\beta) & \beta < 1 \\
                                        1 & 1 \le \beta \le 2 \\
                                        1/(\beta-1) & \beta > 2 \end{cases}

and the same for ``W`` through the transpose.

Over-relaxed steps
------------------
Each update above minimizes a majorizer of the divergence, a sum of one convex
term per entry. Where an entry's plain step factor ``s`` lies in an interval
computed once per beta, the entry moves by ``s ** 1.875`` instead: a longer step
that still does not raise its term above the term's value at the current point,
so the divergence still never increases (``over_relaxation=1`` turns it off).
The same loss takes fewer iterations, typically about half as many
(docs/decisions.md, "Over-relaxed steps").

With the templates fixed, the frames do not interact: each block of frames runs
all its iterations in turn and stops on its own loss.

The guarantees are those of exact arithmetic: in float32, a loss far below the
resolution of V (or a reported KL loss dominated by a few huge entries) can wobble
by the round-off of the terms.

Floors (why the fit never divides by zero)
------------------------------------------
The fit works on ``V / mean(V)`` (the divergence is homogeneous, so this only
changes units) and maps the result back. In those units, with ``eps`` the
machine epsilon of the dtype (float32: 1.2e-7, float64: 2.2e-16):

* every entry of ``W`` and ``H`` is kept in ``[eps, eps**-1]``, so ``W @ H``
  is strictly positive and never subnormal; clipping to a box keeps the
  monotone decrease;
* entries of ``V`` below ``eps**2`` are set to 0, or, for ``beta <= 0`` where a
  zero has no finite divergence, every entry below ``eps`` is raised to ``eps``
  (that is, to ``eps * mean(V)`` in the caller's units). The loss that is
  reported is the loss of that floored matrix.

References
----------
C. Févotte and J. Idier, "Algorithms for nonnegative matrix factorization with
the beta-divergence", Neural Computation 23(9), 2011. doi:10.1162/NECO_a_00168

C. Boutsidis and E. Gallopoulos, "SVD based initialization: A head start for
nonnegative matrix factorization", Pattern Recognition 41(4), 2008.
doi:10.1016/j.patcog.2007.09.010

N. Halko, P.-G. Martinsson and J. A. Tropp, "Finding structure with randomness:
Probabilistic algorithms for constructing approximate matrix decompositions",
SIAM Review 53(2), 2011. doi:10.1137/090771806
"""
import functools
from dataclasses import dataclass

import numpy as np

from . import _lazy
from ._engine import Engine, scaled
from ._threads import serial_blas
from ._validation import (
    ParameterError,
    beta_to_float,
    check_nonnegative_matrix,
    check_nonnegative_real,
    check_positive_int,
)
from .limits import check_limits

__all__ = ["nmf", "NMFResult", "beta_divergence", "mm_exponent"]

#: Default exponent of the over-relaxed steps (``nmf(over_relaxation=None)``): about half
#: the iterations to the same loss, and a fast path in the kernels (docs/decisions.md,
#: "Over-relaxed steps").
OVER_RELAXATION = 1.875


@dataclass
class NMFResult:
    """What :func:`nmf` found.

    Attributes
    ----------
    W : np.ndarray [shape=(n_freq, K)]
        Templates (columns).
    H : np.ndarray [shape=(K, n_frames)]
        Activations (rows).
    beta : float
        The divergence that was minimized.
    losses : np.ndarray [shape=(n_checks,)]
        Divergence ``D(V | W H)`` at the iterations in ``loss_iterations``
        (0 is the initialization; the last entry is the returned factors).
    loss_iterations : np.ndarray [shape=(n_checks,)]
    n_iter : int
        Iterations run (one iteration updates H, then W).
    converged : bool
        True if the relative decrease fell below ``tol`` before ``max_iter``.
    """

    W: np.ndarray
    H: np.ndarray
    beta: float
    losses: np.ndarray
    loss_iterations: np.ndarray
    n_iter: int
    converged: bool

    @property
    def loss(self):
        """Divergence of the returned factors."""
        return float(self.losses[-1])


def mm_exponent(beta):
    """Exponent gamma(beta) of the Févotte & Idier (2011) majorization-minimization update."""
    beta = beta_to_float(beta)
    if beta < 1:
        return 1.0 / (2.0 - beta)
    if beta > 2:
        return 1.0 / (beta - 1.0)
    return 1.0


@functools.lru_cache(maxsize=64)
def _safe_steps(beta, omega):
    """Interval [low, high] of majorization-minimization steps that may be over-relaxed.

    Per entry, the auxiliary function of Févotte & Idier (2011), divided by a
    positive constant, is ``g(s)`` of the relative step ``s = x_new / x``, with
    ``r`` the ratio of the update's numerator to its denominator:

    * beta < 1:      g(s) = s + r s**(beta-1) / (1-beta)
    * beta = 1:      g(s) = s - r log(s)
    * 1 < beta <= 2: g(s) = s**beta / beta - r s**(beta-1) / (beta-1)
    * beta > 2:      g(s) = s**beta / beta - r s

    whose minimizer is the plain step ``s1 = r**gamma(beta)``. The over-relaxed
    step ``s1**omega`` is safe where ``g(s1**omega) <= g(1)``: the entry's term
    of the majorizer does not rise above its value at the current point. This
    returns the largest interval around ``s1 = 1`` where that holds, scanned on
    a grid of log(s1) over [-30, 30] and pulled in by one grid step.
    """
    gamma = mm_exponent(beta)
    if omega == 1.0:
        return 1.0, 1.0
    t = np.linspace(-30.0, 30.0, 600_001)
    s1 = np.exp(t)
    r = s1 ** (1.0 / gamma)
    s = s1**omega

    def g(s):
        if beta == 1.0:
            return s - r * np.log(s)
        if beta < 1.0:
            return s + r * s ** (beta - 1.0) / (1.0 - beta)
        if beta <= 2.0:
            return s**beta / beta - r * s ** (beta - 1.0) / (beta - 1.0)
        return s**beta / beta - r * s

    with np.errstate(all="ignore"):
        ok = g(s) <= g(np.ones_like(s))
    ok &= np.isfinite(g(s))
    middle = len(t) // 2
    ok[middle] = True
    bad_below = np.flatnonzero(~ok[:middle])
    bad_above = np.flatnonzero(~ok[middle:])
    low = t[bad_below[-1] + 2] if len(bad_below) else t[1]
    high = t[middle + bad_above[0] - 2] if len(bad_above) else t[-2]
    return float(np.exp(min(low, 0.0))), float(np.exp(max(high, 0.0)))


def beta_divergence(V, Y, beta="kl"):
    r"""Beta-divergence :math:`D_\beta(V | Y)`, summed over all entries.

    .. math::

        d_\beta(v|y) = \frac{v^\beta + (\beta-1) y^\beta - \beta v y^{\beta-1}}
                            {\beta(\beta-1)}

    with the limits :math:`v \log(v/y) - v + y` (Kullback-Leibler, beta = 1)
    and :math:`v/y - \log(v/y) - 1` (Itakura-Saito, beta = 0); beta = 2 is half
    the squared Euclidean distance.

    Parameters
    ----------
    V : np.ndarray [shape=(m, n)], non-negative
    Y : np.ndarray [shape=(m, n)], non-negative
        The approximation, for example ``W @ H``.
    beta : float or {"euclidean", "kl", "is"}

    Returns
    -------
    float
        Computed in float64. Where the divergence is undefined, entries are
        floored at the smallest normal number of V's dtype: zeros of ``Y``
        always, zeros of ``V`` when beta <= 0.

    Examples
    --------
    >>> import numpy as np
    >>> beta_divergence(np.array([[1.0, 2.0]]), np.array([[1.0, 1.0]]), beta=2)
    0.5
    """
    beta = beta_to_float(beta)
    V = check_nonnegative_matrix(V, "V")
    Y = check_nonnegative_matrix(Y, "Y", dtype=V.dtype)
    if V.shape != Y.shape:
        raise ParameterError(f"V has shape {V.shape} but Y has shape {Y.shape}")
    floor = float(np.finfo(V.dtype).tiny)
    return float(_lazy.kernels().divergence(np.ascontiguousarray(V), np.ascontiguousarray(Y), beta, floor))


def nmf(
    V,
    n_components,
    *,
    beta="kl",
    init=None,
    max_iter=200,
    tol=1e-4,
    random_state=None,
    W=None,
    H=None,
    update_W=True,
    update_H=True,
    sparsity=0.0,
    over_relaxation=None,
    check_every=10,
    callback=None,
    limits=None,
    template_step=None,
):
    """Factorize a non-negative matrix, ``V ~= W @ H``, under a beta-divergence.

    Parameters
    ----------
    V : np.ndarray [shape=(n_freq, n_frames)], non-negative
        float32 and float64 are kept; other types are converted to float64.
    n_components : int
        K, the number of templates.
    beta : float or {"euclidean", "kl", "is"}
        2 (Euclidean), 1 (Kullback-Leibler), 0 (Itakura-Saito), or any real in [-10, 10].
    init : {None, "random", "nndsvda"}
        Starting point for the factors not given. ``None``: "nndsvda" when
        K <= min(V.shape), else "random".
    max_iter : int
        Maximum number of iterations (each updates H, then W).
    tol : float
        Stop when the loss decreased by less than ``tol`` (relative) over the
        last ``check_every`` iterations. 0 runs all ``max_iter`` iterations.
        With the templates fixed (``update_W=False``) and no ``callback``, the
        frames are fitted block by block and each block stops on its own loss,
        which implies the rule for the whole matrix; ``n_iter`` is then the
        most iterations a block ran.
    random_state : None, int or np.random.Generator
        Seed for the initialization. Same seed, same result.
    W : np.ndarray [shape=(n_freq, K)], optional
        Initial (or, with ``update_W=False``, fixed) templates.
    H : np.ndarray [shape=(K, n_frames)], optional
        Initial (or, with ``update_H=False``, fixed) activations.
    update_W : bool or array of bool [shape=(K,)]
        Whether to update the templates; an array updates only the columns
        marked True (semi-supervised NMF: learned templates held fixed beside
        free ones). Templates held fixed, even partly, must be given.
    update_H : bool
        Whether to update the activations. Fixed activations must be given.
    sparsity : float
        Weight lambda of an L1 penalty on the activations. The fit minimizes
        ``D(V/m | W H/m) + lambda * sum(H/m)`` with ``m = mean(V)`` (so lambda
        does not depend on the level of V), and ``losses`` report it in V's
        units, ``D(V | W H) + lambda * m**(beta-1) * sum(H)``. When templates
        are learned too, each updated template is rescaled to unit Euclidean
        norm after its update (the penalty would otherwise shrink H and grow W
        without end; a unit-sum norm would make it a mere rescaling of H under
        KL). That rescaling is the usual heuristic, and with it the loss is no
        longer guaranteed to decrease at every iteration; with templates fixed,
        or without sparsity, it is.
    over_relaxation : float >= 1, optional
        Lengthen each multiplicative step: an entry whose step factor ``s``
        lies in a safe interval moves by ``s ** over_relaxation`` instead.
        The interval depends on beta and is the one where the longer step
        still does not raise that entry's term of the majorizing function, so
        the divergence still never increases. 1 gives the plain
        majorization-minimization updates. ``None``: :data:`OVER_RELAXATION`
        (1.875, about half the iterations to the same loss), or 1 with
        ``sparsity`` (where the guarantee does not hold).
    check_every : int
        Evaluate the loss every this many iterations (a pass over V with a log).
        1 records the loss after every iteration.
    callback : callable, optional
        ``callback(iteration, loss)`` after each iteration, with the most
        recent loss evaluated. With the templates fixed, a callback makes the
        fit sweep all frames at every iteration and stop on the whole matrix
        (the block-by-block fit has no iteration of the whole to report).
    limits : audionmf.limits.Limits, optional
        How much memory the fit holds at once: besides its copy of V, W and H,
        it works on column blocks of V with about ``limits.nmf_block_bytes`` of
        scratch per thread (blocks of at least 16 frames). Smaller blocks use
        less memory and change the result by round-off only. None: the
        defaults, :data:`audionmf.limits.DEFAULT_LIMITS`.
    template_step : callable, optional
        Templates under a constraint (for example, given templates through
        gains to be fitted): at each iteration, after the update of H (if
        any), ``template_step(W, num, den)`` returns all the templates' next
        values in place of their multiplicative update, from that update's
        numerator and denominator (the negative and positive parts of the
        divergence's gradient in W, in the units of ``V / mean(V)``: the
        multiplicative step would be ``W * (num / den) ** gamma``). ``num`` has
        W's shape; ``den`` too, but for KL (beta = 1) it is one row, the sums of
        H's rows. The result must be finite and of W's shape, and is kept within
        the same bounds as W. The divergence still never increases if the step
        does not raise it (a multiplicative step of parameters that W is linear
        in does not). Needs ``update_W=True``; no renormalization follows with
        ``sparsity``.

    Returns
    -------
    NMFResult

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> V = rng.random((64, 3)) @ rng.random((3, 100))
    >>> res = nmf(V, 3, beta="kl", max_iter=500, tol=0, random_state=0)
    >>> bool(res.loss < 1e-3 * res.losses[0])
    True
    """
    beta = beta_to_float(beta)
    V = check_nonnegative_matrix(V, "V")
    dtype = V.dtype
    n_freq, n_frames = V.shape
    K = check_positive_int(n_components, "n_components")
    max_iter = check_positive_int(max_iter, "max_iter", minimum=0)
    tol = check_nonnegative_real(tol, "tol")
    check_every = check_positive_int(check_every, "check_every")
    limits = check_limits(limits)
    if init not in (None, "random", "nndsvda"):
        raise ParameterError(f"init={init!r}: expected None, 'random' or 'nndsvda'")
    sparsity = check_nonnegative_real(sparsity, "sparsity")
    if over_relaxation is None:
        over_relaxation = 1.0 if sparsity else OVER_RELAXATION
    else:
        over_relaxation = check_nonnegative_real(over_relaxation, "over_relaxation")
        if not 1.0 <= over_relaxation < 2.0:
            raise ParameterError(f"over_relaxation={over_relaxation!r}: expected a number in [1, 2)")
        if over_relaxation > 1 and sparsity:
            raise ParameterError("over_relaxation > 1 cannot keep the loss decreasing with sparsity; use 1")
    free = _free_columns(update_W, K)
    if W is not None:
        W = check_nonnegative_matrix(W, "W", dtype=dtype)
        if W.shape != (n_freq, K):
            raise ParameterError(f"W has shape {W.shape}, expected {(n_freq, K)}")
    elif free is None or len(free) < K:
        raise ParameterError("update_W=False needs the fixed templates W")
    if H is not None:
        H = check_nonnegative_matrix(H, "H", dtype=dtype)
        if H.shape != (K, n_frames):
            raise ParameterError(f"H has shape {H.shape}, expected {(K, n_frames)}")
    elif not update_H:
        raise ParameterError("update_H=False needs the fixed activations H")
    if template_step is not None:
        if not callable(template_step):
            raise ParameterError(f"template_step={template_step!r}: expected a function (W, num, den) -> W")
        if free is None or len(free) < K:
            raise ParameterError("template_step updates all the templates: it needs update_W=True")

    # The mean, unless it underflows to 0 (subnormal entries) or overflows: then the
    # largest entry. Summed in V's own dtype, pairwise: accurate enough for a unit, and
    # quicker than a float64 sum (docs/decisions.md, "The scale of V").
    with np.errstate(over="ignore"):
        total = float(np.sum(V))
    if total == 0:
        raise ParameterError("V is all zeros: there is nothing to factorize")
    scale = total / V.size
    if not 0 < scale < np.inf:
        scale = float(V.max())
    eps = float(np.finfo(dtype).eps)
    floor, ceiling = eps, 1.0 / eps

    H_given = H
    rng = np.random.default_rng(random_state)
    with serial_blas():  # the start must not depend on the core count
        W, H = _initialize(V, K, init, rng, W, H, scale, floor, ceiling)

    # With H held fixed, templates are not renormalized (that would rescale H).
    steps = (over_relaxation, *_safe_steps(beta, over_relaxation))
    with Engine(V, scale, beta, floor, ceiling, gamma=mm_exponent(beta), steps=steps, sparsity=sparsity,
                normalize=update_H, block_bytes=limits.nmf_block_bytes) as engine:
        if free is None and update_H and callback is None and max_iter > 0:
            # Activations only: block by block, each to its own convergence.
            losses, loss_iters, n_iter, converged = engine.fit_activations(W, H, max_iter, tol, check_every)
        else:
            losses, loss_iters, n_iter, converged = engine.fit_alternating(
                W, H, update_H, free, max_iter, tol, check_every,
                callback and (lambda n, loss: callback(n, _in_units(loss, scale, beta))),
                template_step,
            )
    # Activations held fixed come back as given, not divided and multiplied by the scale.
    H = H_given.copy() if not update_H else H * dtype.type(scale)
    return NMFResult(
        W=W,
        H=H,
        beta=beta,
        losses=np.array([_in_units(loss, scale, beta) for loss in losses]),
        loss_iterations=np.asarray(loss_iters),
        n_iter=n_iter,
        converged=converged,
    )


def _in_units(loss, scale, beta):
    """A loss of V / scale in the units of V: the beta-divergence is beta-homogeneous."""
    with np.errstate(over="ignore", under="ignore"):
        return float(np.float64(loss) * np.power(np.float64(scale), beta))


def _free_columns(update_W, K):
    """Indices of the template columns to update, or None for none."""
    if isinstance(update_W, (bool, np.bool_)):
        return np.arange(K) if update_W else None
    mask = np.asarray(update_W)
    if mask.dtype != bool or mask.shape != (K,):
        raise ParameterError(f"update_W must be a bool or a bool array of shape ({K},)")
    return np.flatnonzero(mask) if mask.any() else None


def _initialize(V, K, init, rng, W, H, scale, floor, ceiling):
    """Starting factors in the units of V / scale, with scale = mean(V); given factors are copied."""
    dtype = V.dtype
    n_freq, n_frames = V.shape
    if H is not None:
        H = H / dtype.type(scale)
    if W is None or H is None:
        if init is None:
            init = "nndsvda" if K <= min(n_freq, n_frames) else "random"
        if W is not None:
            # Templates given: start activations flat, at the level that matches V.
            H0 = np.full((K, n_frames), 1.0 / (K * max(float(W.mean()), floor)))
            W0 = None
        elif init == "random":
            level = np.sqrt(1.0 / K)  # V / scale has mean 1
            W0 = level * np.abs(rng.standard_normal((n_freq, K)))
            H0 = level * np.abs(rng.standard_normal((K, n_frames)))
        else:
            if K > min(n_freq, n_frames):
                raise ParameterError(
                    f"init='nndsvda' needs n_components <= min(V.shape) = "
                    f"{min(n_freq, n_frames)}, got {K}; use init='random'"
                )
            W0, H0 = _nndsvda(scaled(V, scale), K, rng)
        if W is None:
            W = W0
        if H is None:
            H = H0
    W = np.clip(np.asarray(W, dtype=dtype), floor, ceiling)
    H = np.clip(np.asarray(H, dtype=dtype), floor, ceiling)
    return np.ascontiguousarray(W), np.ascontiguousarray(H)


def _nndsvda(V, K, rng):
    """NNDSVD of V, zeros replaced by its mean (Boutsidis & Gallopoulos 2008)."""
    U, S, Vt = _randomized_svd(V, K, rng)
    W = np.zeros((V.shape[0], K))
    H = np.zeros((K, V.shape[1]))
    W[:, 0] = np.sqrt(S[0]) * np.abs(U[:, 0])
    H[0] = np.sqrt(S[0]) * np.abs(Vt[0])
    for j in range(1, K):
        x, y = U[:, j], Vt[j]
        xp, xn = np.maximum(x, 0), np.maximum(-x, 0)
        yp, yn = np.maximum(y, 0), np.maximum(-y, 0)
        xpn, ypn = np.linalg.norm(xp), np.linalg.norm(yp)
        xnn, ynn = np.linalg.norm(xn), np.linalg.norm(yn)
        if xpn * ypn >= xnn * ynn:
            u, v, sigma = xp / max(xpn, 1e-300), yp / max(ypn, 1e-300), xpn * ypn
        else:
            u, v, sigma = xn / max(xnn, 1e-300), yn / max(ynn, 1e-300), xnn * ynn
        lam = np.sqrt(S[j] * sigma)
        W[:, j] = lam * u
        H[j] = lam * v
    mean = float(np.mean(V, dtype=np.float64))
    W[W == 0] = mean
    H[H == 0] = mean
    return W, H


def _randomized_svd(A, K, rng, oversample=10, n_power=4):
    """Leading K singular triplets by the randomized range finder (Halko et al. 2011)."""
    m, n = A.shape
    size = min(K + oversample, m, n)
    if size >= min(m, n) // 2:
        U, S, Vt = np.linalg.svd(A, full_matrices=False)
        return U[:, :K], S[:K], Vt[:K]
    Q = A @ rng.standard_normal((n, size)).astype(A.dtype)  # no float64 copy of a float32 A
    for _ in range(n_power):
        Q, _ = np.linalg.qr(Q)
        Q, _ = np.linalg.qr(A.T @ Q)
        Q = A @ Q
    Q, _ = np.linalg.qr(Q)
    Ub, S, Vt = np.linalg.svd(Q.T @ A, full_matrices=False)
    return (Q @ Ub)[:, :K], S[:K], Vt[:K]

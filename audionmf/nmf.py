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

Over-relaxed steps (why it needs about half the iterations)
------------------------------------------------------------
Each update above minimizes a majorizer of the divergence, a sum of one convex
term per entry. Where an entry's plain step factor ``s`` lies in an interval
computed once per beta, the entry moves by ``s ** 1.875`` instead: a longer step
that still does not raise its term above the term's value at the current point,
so the divergence still never increases (``over_relaxation=1`` turns it off).
On a minute of a real song (K=32, five random starts), the loss that plain
updates reach in 200 iterations was reached in 50 to 150 iterations (median 75)
under KL, and in 65 to 345 (median 105) under Itakura-Saito.

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
"""
import functools
import threading
from dataclasses import dataclass

import numpy as np

from ._threads import available_cores, serial_blas, thread_pool
from ._validation import (
    ParameterError,
    beta_to_float,
    check_nonnegative_matrix,
    check_nonnegative_real,
    check_positive_int,
)

__all__ = ["nmf", "NMFResult", "beta_divergence", "mm_exponent"]

#: Default exponent of the over-relaxed steps (``nmf(over_relaxation=None)``).
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
    from . import _kernels  # numba loads on first use, not at import

    floor = float(np.finfo(V.dtype).tiny)
    return float(_kernels.divergence(np.ascontiguousarray(V), np.ascontiguousarray(Y), beta, floor))


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
        majorization-minimization updates. ``None``: 1.875 (measured in
        ``benchmarks/nmf_speed.py``: about half the iterations to the same
        loss), or 1 with ``sparsity`` (where the guarantee does not hold).
    check_every : int
        Evaluate the loss every this many iterations (a pass over V with a log).
        1 records the loss after every iteration.
    callback : callable, optional
        ``callback(iteration, loss)`` after each iteration, with the most
        recent loss evaluated. With the templates fixed, a callback makes the
        fit sweep all frames at every iteration and stop on the whole matrix
        (the block-by-block fit has no iteration of the whole to report).

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

    # The mean, unless it underflows to 0 (subnormal entries) or overflows: then the
    # largest entry. Summed in V's own dtype (pairwise, so accurate enough for a unit):
    # a float64 sum of float32 costs twice as long.
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
    with _Engine(V, scale, beta, floor, ceiling, sparsity, normalize=update_H,
                 over_relaxation=over_relaxation) as engine:
        if free is None and update_H and callback is None and max_iter > 0:
            # Activations only: block by block, each to its own convergence.
            losses, loss_iters, n_iter, converged = engine.fit_activations(W, H, max_iter, tol, check_every)
        else:
            losses, loss_iters, n_iter, converged = _alternate(
                engine, W, H, update_H, free, max_iter, tol, check_every,
                callback and (lambda n, loss: callback(n, _in_units(loss, scale, beta))),
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


def _alternate(engine, W, H, update_H, free, max_iter, tol, check_every, callback):
    """Iterations over all the frames at once (H, then W), with the stopping rule of :func:`nmf`."""
    losses, loss_iters = [], []
    converged = False
    n_iter = 0
    last_loss = None
    for n_iter in range(1, max_iter + 1):
        check = (n_iter - 1) % check_every == 0
        # The loss of the factors entering an iteration comes with its first pass.
        loss = engine.iterate(W, H, update_H, free, with_loss=check)
        if check:
            losses.append(loss)
            loss_iters.append(n_iter - 1)
            last_loss = loss
        if callback is not None:
            callback(n_iter, last_loss)
        if check and tol > 0 and len(losses) > 1 and _stalled(losses[-2], loss, tol):
            converged = True
            break
    if not loss_iters or loss_iters[-1] != n_iter:
        losses.append(engine.iterate(W, H, False, None, with_loss=True))
        loss_iters.append(n_iter)
    return losses, loss_iters, n_iter, converged


def _stalled(previous, loss, tol):
    """The stopping rule of :func:`nmf`: a relative decrease of at most ``tol``."""
    return abs(previous - loss) <= tol * max(abs(loss), np.finfo(np.float64).tiny)


def _in_units(loss, scale, beta):
    """A loss of V / scale in the units of V: the beta-divergence is beta-homogeneous."""
    with np.errstate(over="ignore", under="ignore"):
        return float(np.float64(loss) * np.power(np.float64(scale), beta))


def _scaled(X, scale):
    """X / scale as a new C-contiguous array of X's dtype, without overflow.

    In X's own dtype when 1 / scale is a finite normal number there; otherwise
    the division happens in float64 (a subnormal or tiny mean of V).
    """
    info = np.finfo(X.dtype)
    if float(info.tiny) <= scale and 1.0 / scale <= float(info.max):
        return np.multiply(X, X.dtype.type(1.0 / scale), dtype=X.dtype, order="C")
    return np.ascontiguousarray(np.divide(X, scale, dtype=np.float64).astype(X.dtype))


def _free_columns(update_W, K):
    """Indices of the template columns to update, or None for none."""
    if isinstance(update_W, (bool, np.bool_)):
        return np.arange(K) if update_W else None
    mask = np.asarray(update_W)
    if mask.dtype != bool or mask.shape != (K,):
        raise ParameterError(f"update_W must be a bool or a bool array of shape ({K},)")
    return np.flatnonzero(mask) if mask.any() else None


class _Engine:
    """One multiplicative iteration (H, then the free columns of W), swept over column blocks.

    The frames (columns of V) are cut into blocks of a few megabytes. For each
    block, the model ``W @ H_b``, the element-wise terms, the update of ``H_b``
    and its contribution to the numerator and denominator of the W update are
    computed one after the other, so no full-size temporary exists.
    Blocks are shared among threads, each running single-threaded BLAS and
    GIL-free numba kernels (one BLAS thread pool beside another thread pool
    only makes them fight over the cores). The update of W is written once, for
    H and W alike: ``X <- X * (num / den) ** gamma``, with H's numerator and
    denominator ``W.T @ terms`` and W's ``terms @ H.T``.
    """

    BLOCK_BYTES = 1 << 22
    MIN_BLOCKS = 4
    GROUP = 2

    def __init__(self, V, scale, beta, floor, ceiling, sparsity=0.0, normalize=True, n_threads=None,
                 over_relaxation=1.0):
        from . import _kernels

        self.kernels = _kernels
        self.beta = beta
        self.gamma = mm_exponent(beta)
        self.relax = (over_relaxation, *_safe_steps(beta, over_relaxation))
        self.floor, self.ceiling = floor, ceiling
        self.sparsity = sparsity
        # What the update adds to H's denominator: a weight beyond the dtype's range would
        # overflow there (so large a one drives every activation to the floor either way).
        self._penalty_step = min(sparsity, float(np.finfo(V.dtype).max) / 4)
        self.normalize = normalize
        self.cap = float(np.finfo(V.dtype).max) / (4.0 * max(V.shape))
        n_freq, n_frames = V.shape
        # About BLOCK_BYTES of scratch per thread (one block-sized array, two where the
        # denominator needs its own), but at least MIN_BLOCKS blocks when there are
        # frames enough, so that short signals keep both cores busy too. Fewer, larger
        # blocks mean fewer Python calls per iteration: on 2 cores, 4 MB blocks were
        # 9% (60 s) to 24% (10 s) faster than 1 MB ones. The count is then
        # rounded up to a multiple of 2 * GROUP and the widths evened out, so that
        # two or four threads get the same amount of work (unless the 16-frame
        # minimum width leaves a short last block).
        two_buffers = beta not in (1.0, 2.0)
        per_frame = n_freq * V.itemsize * (2 if two_buffers else 1)
        width = max(16, min(n_frames, self.BLOCK_BYTES // per_frame, -(-n_frames // self.MIN_BLOCKS)))
        n_blocks = -(-n_frames // width)
        if n_blocks > 1:
            n_blocks = -(-n_blocks // (2 * self.GROUP)) * 2 * self.GROUP
            width = max(16, -(-n_frames // n_blocks))
        starts = list(range(0, n_frames, width))
        self.blocks = [(c, min(c + width, n_frames)) for c in starts]
        if n_threads is None:
            n_threads = available_cores()
        # Runs of GROUP consecutive blocks: each run's partial sums, then their total,
        # add up in one fixed order whatever the number of threads (same seed, same result).
        self.groups = [list(range(g, min(g + self.GROUP, len(self.blocks))))
                       for g in range(0, len(self.blocks), self.GROUP)]
        n_threads = max(1, min(n_threads or 1, len(self.groups)))
        self._buffers = threading.local()
        self._shape = (n_freq, width, two_buffers)
        self._pool = self._serial = None
        if n_threads > 1:
            serial = serial_blas()
            serial.__enter__()
            self._serial = serial  # from here on, any failure must call __exit__
        try:
            self._prepare(V, scale, n_threads)
        except BaseException:  # no __exit__ will run: give BLAS its threads back
            self.__exit__()
            raise

    def _prepare(self, V, scale, n_threads):
        """The thread pool, and our copy of V / scale."""
        _kernels = self.kernels
        n_freq = V.shape[0]
        if n_threads > 1:
            self._pool = thread_pool(n_threads)
        # Our copy of V / scale, laid out as C-contiguous column blocks (one pass, one copy).
        # Entries below eps**2 become 0, or for beta <= 0 (no divergence at 0) eps.
        eps = self.floor
        threshold, value = (eps, eps) if self.beta <= 0 else (eps * eps, 0.0)
        info = np.finfo(V.dtype)

        def prepared(block):
            c0, c1 = block
            if float(info.tiny) <= scale and 1.0 / scale <= float(info.max):
                out = np.empty((n_freq, c1 - c0), V.dtype)
                _kernels.scaled_copy(V[:, c0:c1], out, 1.0 / scale, threshold, value)
            else:  # 1 / scale is not a normal number of V's dtype: divide in float64
                out = _scaled(V[:, c0:c1], scale)
                _kernels.flush_small(out, threshold, value)
            return out

        self.V_blocks = self._map(prepared, self.blocks)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._serial is not None:
            serial, self._serial = self._serial, None
            serial.__exit__(None, None, None)

    def iterate(self, W, H, update_H, free, with_loss):
        """Update H (if ``update_H``) then ``W[:, free]`` (if ``free`` is not None), in place.

        Returns the objective at the factors as they came in if ``with_loss``.
        """
        penalty = self._penalty(H) if with_loss else 0.0
        shared = self._shared(W)

        def sweep(group):
            return self._sweep(W, H, update_H, free, with_loss, shared, group)

        parts = self._map(sweep, self.groups)
        if free is not None:
            self._update_W(W, H, free, parts)
        return sum(p["loss"] for p in parts) + penalty if with_loss else None

    def fit_activations(self, W, H, max_iter, tol, check_every):
        """Fit H with W fixed, one block of frames at a time, each to its own convergence.

        With the templates fixed, the columns of H do not interact: a block can run
        all its iterations while it is in cache, with no wait for the other blocks
        at each iteration, and stop when its own loss stops decreasing (relative
        change below ``tol`` over ``check_every`` iterations), so quiet or simple
        stretches stop early. Returns ``(losses, loss_iterations, n_iter,
        converged)`` for the whole matrix: the loss at each check is the sum over
        blocks, a block that has stopped counting with its final loss; the last
        entry is the loss of the returned H at ``n_iter``, the most iterations any
        block ran.
        """
        shared = self._shared(W)

        def run(group):
            buffers = self._thread_buffers()
            out = []
            for index in group:
                c0, c1 = self.blocks[index]
                Hb = H[:, c0:c1]
                checks, n, converged = [], 0, False
                for n in range(1, max_iter + 1):
                    check = (n - 1) % check_every == 0
                    part = {"loss": self._penalty(Hb) if check else 0.0}
                    self._block(W, H, True, None, check, shared, buffers, index, part)
                    if check:
                        checks.append(part["loss"])
                        if tol > 0 and len(checks) > 1 and _stalled(checks[-2], checks[-1], tol):
                            converged = True
                            break
                part = {"loss": self._penalty(Hb)}
                self._block(W, H, False, None, True, shared, buffers, index, part)
                out.append((checks, n, part["loss"], converged))
            return out

        results = [r for rs in self._map(run, self.groups) for r in rs]
        n_iter = max(r[1] for r in results)
        n_checks = max(len(r[0]) for r in results)
        losses = [sum(r[0][j] if j < len(r[0]) else r[2] for r in results) for j in range(n_checks)]
        iterations = [j * check_every for j in range(n_checks)]
        if iterations[-1] != n_iter:
            losses.append(sum(r[2] for r in results))
            iterations.append(n_iter)
        return losses, iterations, n_iter, all(r[3] for r in results)

    def _penalty(self, H):
        """The sparsity term of the objective for activations H (or a block of them)."""
        return self.sparsity * float(H.sum(dtype=np.float64)) if self.sparsity else 0.0

    def _map(self, function, items):
        """``function`` over ``items``, on the thread pool when there is one, results in order.

        If one call fails (or this thread is interrupted), the calls not yet started
        are cancelled and those running are waited for before the error is raised:
        none may still run once the caller gives BLAS its threads back.
        """
        if self._pool is None:
            return [function(item) for item in items]
        from concurrent.futures import wait

        futures = []
        try:
            for item in items:
                futures.append(self._pool.submit(function, item))
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            while True:  # a block takes milliseconds: a second Ctrl-C waits for it too
                try:
                    wait(futures)
                    break
                except KeyboardInterrupt:
                    pass
            raise

    def _shared(self, W):
        """What every block needs from W: W^T W (Euclidean) or its column sums (KL)."""
        return {
            "WtW": W.T @ W if self.beta == 2.0 else None,
            "colsum": W.sum(axis=0)[:, None] if self.beta == 1.0 else None,
        }

    def _thread_buffers(self):
        """Scratch blocks of this thread: the model, then the second term array if any."""
        buffers = getattr(self._buffers, "arrays", None)
        if buffers is None:
            n_freq, width, two = self._shape
            dtype = self.V_blocks[0].dtype
            buffers = (np.empty((n_freq, width), dtype), np.empty((n_freq, width), dtype) if two else None)
            self._buffers.arrays = buffers
        return buffers

    def _sweep(self, W, H, update_H, free, with_loss, shared, group):
        buffers = self._thread_buffers()
        part = {"loss": 0.0, "num": 0.0, "den": 0.0}
        for index in group:
            self._block(W, H, update_H, free, with_loss, shared, buffers, index, part)
        return part

    def _block(self, W, H, update_H, free, with_loss, shared, buffers, index, part):
        """One block's share of an iteration, added into ``part`` (loss, and W's numerator and denominator)."""
        beta, k = self.beta, self.kernels
        c0, c1 = self.blocks[index]
        Vb, Hb = self.V_blocks[index], H[:, c0:c1]
        Y, B = (None if buf is None else buf.ravel()[: Vb.size].reshape(Vb.shape) for buf in buffers)
        if beta == 2.0:
            if with_loss:
                np.matmul(W, Hb, out=Y)
                part["loss"] += k.divergence(Vb, Y, 2.0, 0.0)
            if update_H:
                den = shared["WtW"] @ Hb
                self._step(Hb, W.T @ Vb, den + self._penalty_step if self.sparsity else den)
            if free is not None:
                Hf = Hb if len(free) == len(Hb) else Hb[free]
                part["num"] = part["num"] + Vb @ Hf.T
                part["den"] = part["den"] + Hb @ Hf.T  # (H H^T)[:, free]
            return
        if update_H or with_loss:
            np.matmul(W, Hb, out=Y)
            part["loss"] += self._terms(Vb, Y, B, with_loss)
        if update_H:
            num = W.T @ Y
            den = shared["colsum"] if B is None else W.T @ B
            self._step(Hb, num, den + self._penalty_step if self.sparsity else den)
        if free is not None:
            if update_H or not with_loss:  # the terms must follow the current H
                np.matmul(W, Hb, out=Y)
                self._terms(Vb, Y, B, False)
            Hf = Hb if len(free) == len(Hb) else Hb[free]
            part["num"] = part["num"] + Y @ Hf.T
            if B is not None:
                part["den"] = part["den"] + B @ Hf.T

    def _terms(self, Vb, Y, B, with_loss):
        k, beta = self.kernels, self.beta
        if beta == 1.0:
            return k.kl_terms(Vb, Y, with_loss)
        if beta == 0.0:
            return k.is_terms(Vb, Y, B, self.cap, with_loss)
        return k.beta_terms(Vb, Y, B, beta, self.cap, with_loss)

    def _update_W(self, W, H, free, parts):
        num = sum(p["num"] for p in parts)
        if self.beta == 1.0:
            den = (H if len(free) == len(H) else H[free]).sum(axis=1)[None, :]
        elif self.beta == 2.0:
            den = W @ sum(p["den"] for p in parts)
        else:
            den = sum(p["den"] for p in parts)
        if len(free) == W.shape[1]:
            self._step(W, num, den)
        else:
            Wf = np.ascontiguousarray(W[:, free])
            self._step(Wf, num, den)
            W[:, free] = Wf
        if self.sparsity and self.normalize:
            # Move the scale of updated templates into H (unit L2 norm).
            norms = np.sqrt((W[:, free].astype(np.float64) ** 2).sum(axis=0)).astype(W.dtype)
            W[:, free] /= norms
            H[free] *= norms[:, None]
            np.clip(W, self.floor, self.ceiling, out=W)
            np.clip(H, self.floor, self.ceiling, out=H)

    def _step(self, X, num, den):
        # Contiguous operands let the kernel's loop vectorize (a broadcast or a
        # column slice would not); the copies are of the size of H's block or W.
        den = np.ascontiguousarray(np.broadcast_to(den, X.shape))
        if X.flags.c_contiguous:
            self.kernels.multiplicative_step(X, num, den, self.gamma, self.floor, self.ceiling, *self.relax)
        else:
            Xc = np.ascontiguousarray(X)
            self.kernels.multiplicative_step(Xc, num, den, self.gamma, self.floor, self.ceiling, *self.relax)
            X[...] = Xc


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
            W0, H0 = _nndsvda(_scaled(V, scale), K, rng)
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

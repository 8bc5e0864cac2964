"""The blocked, threaded engine behind :func:`audionmf.nmf`: private.

One multiplicative iteration (H, then the free columns of W) is swept over
column blocks of ``V / scale`` (V of shape (n_freq, n_frames), W (n_freq, K),
H (K, n_frames)). For each block, the model ``W @ H_b``, the element-wise terms,
the update of ``H_b`` and its share of the numerator and denominator of the W
update are computed one after the other, so no full-size temporary exists.
Blocks are shared among threads (:mod:`audionmf._threads`), each running
single-threaded BLAS (a BLAS thread pool beside ours would only fight it for
the cores: docs/decisions.md, "Threads of our own, BLAS single-threaded") and
the GIL-free numba kernels of :mod:`audionmf._kernels` (for a small KL problem their
numpy twins, :mod:`audionmf._kernels_numpy`, which spare a fresh process numba's
start). Partial sums add up in
one fixed order, so the result does not depend on the number of threads.

:class:`Engine` applies the update rule it is given (the exponent gamma, the
over-relaxed steps and their safe interval) and trusts its input:
:func:`audionmf.nmf` validates, scales and initializes.
"""
import threading

import numpy as np

from . import _lazy
from ._threads import available_cores, serial_blas, thread_pool
from ._validation import ParameterError

__all__ = ["Engine", "scaled"]

#: A Kullback-Leibler problem of at most this many entries of V runs on the numpy
#: twins of the kernels (:mod:`audionmf._kernels_numpy`): numba's start in a fresh
#: process would cost more than its kernels save (docs/decisions.md, "numba's
#: start-up, and numpy twins for small KL fits").
SMALL_KL_ENTRIES = 4_000_000


class Engine:
    """The multiplicative updates of :func:`audionmf.nmf`, swept over column blocks of V.

    Used as a context manager: with more than one thread, BLAS is held
    single-threaded from construction to exit. The update is written once, for
    H and W alike: ``X <- X * (num / den) ** gamma``, clipped to ``[floor,
    ceiling]``, with H's numerator and denominator ``W.T @ terms`` and W's
    ``terms @ H.T``.

    Parameters
    ----------
    V : np.ndarray [shape=(n_freq, n_frames)]
        The matrix to factorize; the engine keeps its own copy of ``V / scale``.
    scale : float
        What V is divided by (its mean); the losses are those of ``V / scale``.
    beta : float
        The divergence.
    floor, ceiling : float
        The box every entry of W and H is kept in.
    gamma : float
        The exponent of the multiplicative step (``mm_exponent(beta)``).
    steps : (omega, low, high)
        Over-relaxation: an entry whose plain step lies in ``[low, high]``
        moves by ``step ** omega``; ``(1, 1, 1)`` for the plain steps.
    sparsity : float
        Weight of the L1 penalty on H, in the units of ``V / scale``.
    normalize : bool
        Rescale updated templates to unit norm when there is sparsity.
    block_bytes : int
        Scratch bytes per thread that a block of frames may take
        (``Limits.nmf_block_bytes``); blocks are at least 16 frames wide.
    n_threads : int, optional
        Threads to sweep the blocks on; None: :func:`audionmf._threads.available_cores`.
    """

    MIN_BLOCKS = 4
    GROUP = 2

    def __init__(self, V, scale, beta, floor, ceiling, *, gamma, steps=(1.0, 1.0, 1.0), sparsity=0.0,
                 normalize=True, block_bytes, n_threads=None):
        self.kernels = kernels_for(V, beta)
        self.beta = beta
        self.gamma = gamma
        self.relax = tuple(steps)
        self.floor, self.ceiling = floor, ceiling
        self.sparsity = sparsity
        # What the update adds to H's denominator: a weight beyond the dtype's range would
        # overflow there (so large a one drives every activation to the floor either way).
        self._penalty_step = min(sparsity, float(np.finfo(V.dtype).max) / 4)
        self.normalize = normalize
        self.cap = float(np.finfo(V.dtype).max) / (4.0 * max(V.shape))
        n_freq, n_frames = V.shape
        # About block_bytes of scratch per thread (one block-sized array, two where the
        # denominator needs its own), but at least MIN_BLOCKS blocks when there are
        # frames enough, so that short signals keep both cores busy too; larger blocks
        # mean fewer Python calls per iteration (docs/decisions.md, "Engine column
        # blocks"). The count is then rounded up to a multiple of 2 * GROUP and the
        # widths evened out, so that two or four threads get the same amount of work
        # (unless the 16-frame minimum width leaves a short last block).
        two_buffers = beta not in (1.0, 2.0)
        per_frame = n_freq * V.itemsize * (2 if two_buffers else 1)
        width = max(16, min(n_frames, block_bytes // per_frame, -(-n_frames // self.MIN_BLOCKS)))
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
                out = scaled(V[:, c0:c1], scale)
                _kernels.flush_small(out, threshold, value)
            return out

        self.V_blocks = self._map(prepared, self.blocks)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._serial is not None:
            serial, self._serial = self._serial, None
            serial.__exit__(None, None, None)

    def iterate(self, W, H, update_H, free, with_loss, template_step=None):
        """Update H (if ``update_H``) then ``W[:, free]`` (if ``free`` is not None), in place:
        by the multiplicative step, or by ``template_step(W, num, den)`` (all of W).

        Returns the objective at the factors as they came in if ``with_loss``.
        """
        penalty = self._penalty(H) if with_loss else 0.0
        shared = self._shared(W)

        def sweep(group):
            return self._sweep(W, H, update_H, free, with_loss, shared, group)

        parts = self._map(sweep, self.groups)
        if free is not None:
            self._update_W(W, H, free, parts, template_step)
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
                        if tol > 0 and len(checks) > 1 and stalled(checks[-2], checks[-1], tol):
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

    def fit_alternating(self, W, H, update_H, free, max_iter, tol, check_every, callback,
                        template_step=None):
        """Iterations over all the frames at once (H, then W), with the stopping rule of :func:`audionmf.nmf`.

        ``callback(iteration, loss)`` after each iteration, with the most recent loss
        evaluated. Returns ``(losses, loss_iterations, n_iter, converged)``, as
        :meth:`fit_activations` does.
        """
        losses, loss_iters = [], []
        converged = False
        n_iter = 0
        last_loss = None
        for n_iter in range(1, max_iter + 1):
            check = (n_iter - 1) % check_every == 0
            # The loss of the factors entering an iteration comes with its first pass.
            loss = self.iterate(W, H, update_H, free, with_loss=check, template_step=template_step)
            if check:
                losses.append(loss)
                loss_iters.append(n_iter - 1)
                last_loss = loss
            if callback is not None:
                callback(n_iter, last_loss)
            if check and tol > 0 and len(losses) > 1 and stalled(losses[-2], loss, tol):
                converged = True
                break
        if not loss_iters or loss_iters[-1] != n_iter:
            losses.append(self.iterate(W, H, False, None, with_loss=True))
            loss_iters.append(n_iter)
        return losses, loss_iters, n_iter, converged

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

    def _update_W(self, W, H, free, parts, template_step=None):
        num = sum(p["num"] for p in parts)
        if self.beta == 1.0:
            den = (H if len(free) == len(H) else H[free]).sum(axis=1)[None, :]
        elif self.beta == 2.0:
            den = W @ sum(p["den"] for p in parts)
        else:
            den = sum(p["den"] for p in parts)
        if template_step is not None:  # templates under a constraint: all of them, its own step
            new = np.asarray(template_step(W, num, den))
            if new.shape != W.shape:
                raise ParameterError(f"template_step returned shape {new.shape}, expected {W.shape}")
            if not np.all(np.isfinite(new)):
                raise ParameterError("template_step returned templates that are not finite")
            np.clip(new, self.floor, self.ceiling, out=W)
            return
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


def kernels_for(V, beta):
    """The kernels' module for V and beta: the numpy twins for a small KL problem
    (:data:`SMALL_KL_ENTRIES`), numba's otherwise (loaded on first use, not at import)."""
    if beta == 1.0 and V.size <= SMALL_KL_ENTRIES:
        from . import _kernels_numpy as kernels
    else:
        kernels = _lazy.kernels()
    return kernels


def stalled(previous, loss, tol):
    """The stopping rule of :func:`audionmf.nmf`: a relative decrease of at most ``tol``."""
    return abs(previous - loss) <= tol * max(abs(loss), np.finfo(np.float64).tiny)


def scaled(X, scale):
    """X / scale as a new C-contiguous array of X's dtype, without overflow.

    In X's own dtype when 1 / scale is a finite normal number there; otherwise
    the division happens in float64 (a subnormal or tiny mean of V).
    """
    info = np.finfo(X.dtype)
    if float(info.tiny) <= scale and 1.0 / scale <= float(info.max):
        return np.multiply(X, X.dtype.type(1.0 / scale), dtype=X.dtype, order="C")
    return np.ascontiguousarray(np.divide(X, scale, dtype=np.float64).astype(X.dtype))

"""The Kullback-Leibler kernels of :mod:`audionmf._kernels` in plain numpy: private.

numba costs a fresh process about 0.6 s before its first kernel runs (its
import, then its code generator's start, cached kernels or not), which is a
third of what separating a 10 s mixture with two source models takes from the
command line. On small matrices the matrix products dominate an iteration and
these twins are nearly as fast, so :mod:`audionmf._engine` uses them for a
small Kullback-Leibler problem (:data:`audionmf._engine.SMALL_KL_ENTRIES`).

Each function takes the same arguments and writes the same arrays as its twin.
The plain and over-relaxed KL updates are bit for bit the same (IEEE division,
square roots and products in the same order and dtype), so are the quotients;
with other exponents numpy's and LLVM's powers may differ by a few units in the
last place in float64 (a whole fit then differs as little), and the losses in their
last digits (numpy's logarithm and summation order against ``fast_log`` and a
vectorized sum), which moves a convergence test only at a tie.
docs/decisions.md, "numba's start-up, and numpy twins for small KL fits".
"""
import numpy as np

__all__ = ["scaled_copy", "flush_small", "kl_terms", "multiplicative_step"]

#: The over-relaxation exponent that has a fast path: s**(15/8) = s * s / s**(1/8), three
#: square roots (both kernel modules take it from here: this one must not import numba).
FAST_OMEGA = 1.875


def scaled_copy(src, dst, factor, threshold, value):
    """dst <- src * factor, with entries below ``threshold`` set to ``value``."""
    dtype = dst.dtype.type
    np.multiply(src, dtype(factor), out=dst)
    dst[~(dst >= dtype(threshold))] = dtype(value)


def flush_small(V, threshold, value):
    """V[V < threshold] <- value, in place."""
    V[V < V.dtype.type(threshold)] = V.dtype.type(value)


def kl_terms(V, Y, with_loss):
    """Y <- V / Y. Returns the KL divergence D(V | Y_before) if ``with_loss``, else 0."""
    if not with_loss:
        np.divide(V, Y, out=Y)
        return 0.0
    # v log(v / y) - v + y summed: the sums of y and v, and v log q with q = v / y in
    # float64 (0 where v = 0, and so its log)
    total = float(np.sum(Y, dtype=np.float64)) - float(np.sum(V, dtype=np.float64))
    q = V.astype(np.float64)
    np.divide(q, Y, out=q)
    Y[...] = q  # (the float64 quotient rounded to V's dtype: the quotient in that dtype)
    np.log(q, out=q, where=q > 0)
    total += float(np.einsum("ij,ij->", V, q, dtype=np.float64))
    return total


def multiplicative_step(X, num, den, gamma, floor, ceiling, omega, low, high):
    """X <- clip(X * s, floor, ceiling), in place, with s = (num / den)**gamma, and
    s**omega where s lies in [low, high]: see :func:`audionmf._kernels.multiplicative_step`."""
    dtype = X.dtype.type
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if (omega == FAST_OMEGA or omega == 1.0) and (gamma == 1.0 or gamma == 0.5):
            r = np.divide(num, den)
            no_step = ~(den > 0)  # a denominator that is not positive, or inf / inf: no step
            if no_step.any() or not np.isfinite(r).all():
                r[no_step | (r != r)] = dtype(1.0)
            if gamma == 0.5:
                np.sqrt(r, out=r)
            if omega == FAST_OMEGA:  # s**(15/8) = s * s / s**(1/8)
                root = np.sqrt(r)
                np.sqrt(root, out=root)
                np.sqrt(root, out=root)
                longer = np.multiply(r, r)
                np.divide(longer, root, out=longer)
                np.copyto(r, longer, where=(dtype(low) <= r) & (r <= dtype(high)))
            np.multiply(X, r, out=X)
            np.maximum(X, dtype(floor), out=X)
            np.minimum(X, dtype(ceiling), out=X)
            return
        # (the quotient in the arrays' dtype, then float64, as the kernel's typing has it)
        r = np.divide(num, den).astype(np.float64)
        r[~((den > 0) & (r == r))] = 1.0
        if gamma != 1.0:
            r **= gamma
        if omega != 1.0:
            relax = (low <= r) & (r <= high)
            r[relax] **= omega
        X[...] = np.minimum(np.maximum(X * r, floor), ceiling)

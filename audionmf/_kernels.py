"""Private numba kernels for the NMF core.

They work in place on preallocated 2-D arrays (column blocks of the data, so
rows may be strided), trust their input (validation happens in
:mod:`audionmf.nmf`) and release the GIL, so that several threads can sweep
different column blocks at once. Each kernel fuses the element-wise work of one
multiplicative half-step into one pass over a block, optionally accumulating
the beta-divergence of the current model on the way (in float64, whatever the
array dtype). Matrix products stay in BLAS.
"""
import math

from numba import njit

# error_model="numpy": IEEE division (no ZeroDivisionError check), which lets loops vectorize.
_OPTIONS = dict(cache=True, nogil=True, error_model="numpy")


@njit(**_OPTIONS)
def kl_terms(V, Y, with_loss):
    """Y <- V / Y. Returns the KL divergence D(V | Y_before) if ``with_loss``, else 0."""
    n_rows, n_cols = V.shape
    total = 0.0
    if not with_loss:
        for i in range(n_rows):
            for j in range(n_cols):
                Y[i, j] = V[i, j] / Y[i, j]
        return total
    for i in range(n_rows):
        row = 0.0
        for j in range(n_cols):
            v = V[i, j]
            y = Y[i, j]
            Y[i, j] = v / y
            if v > 0:
                row += v * math.log(v / y) - v + y
            else:
                row += y
        total += row
    return total


@njit(**_OPTIONS)
def is_terms(V, Y, B, cap, with_loss):
    """Y <- V / Y**2, B <- 1 / Y (capped at ``cap``). Returns D_IS(V | Y_before).

    V must be strictly positive (the caller floors it).
    """
    n_rows, n_cols = V.shape
    total = 0.0
    for i in range(n_rows):
        row = 0.0
        for j in range(n_cols):
            v = V[i, j]
            inv = 1.0 / Y[i, j]
            q = v * inv
            Y[i, j] = min(q * inv, cap)
            B[i, j] = min(inv, cap)
            if with_loss:
                row += q - math.log(q) - 1.0
        total += row
    return total


@njit(**_OPTIONS)
def beta_terms(V, Y, B, beta, cap, with_loss):
    """Y <- V * Y**(beta-2), B <- Y**(beta-1) (capped). Returns D_beta(V | Y_before)."""
    n_rows, n_cols = V.shape
    total = 0.0
    scale = 1.0 / (beta * (beta - 1.0))
    for i in range(n_rows):
        row = 0.0
        for j in range(n_cols):
            v = V[i, j]
            y = Y[i, j]
            p = y ** (beta - 1.0)  # float64 power
            Y[i, j] = min(v * p / y, cap)
            B[i, j] = min(p, cap)
            if with_loss:
                row += (v**beta + (beta - 1.0) * p * y - beta * v * p) * scale
        total += row
    return total


@njit(**_OPTIONS)
def divergence(V, Y, beta, floor):
    """Sum of the beta-divergence d(V | Y) over all entries, in float64.

    Entries of Y below ``floor`` are raised to it, and so are entries of V when
    beta <= 0 (where a zero has no finite divergence).
    """
    n_rows, n_cols = V.shape
    total = 0.0
    for i in range(n_rows):
        row = 0.0
        for j in range(n_cols):
            v = float(V[i, j])
            y = max(float(Y[i, j]), floor)
            if beta == 2.0:
                row += 0.5 * (v - y) ** 2
            elif beta == 1.0:
                if v > 0:
                    row += v * math.log(v / y) - v + y
                else:
                    row += y
            elif beta == 0.0:
                q = max(v, floor) / y
                row += q - math.log(q) - 1.0
            else:
                if beta < 0:
                    v = max(v, floor)
                row += (v**beta + (beta - 1.0) * y**beta - beta * v * y ** (beta - 1.0)) / (
                    beta * (beta - 1.0)
                )
        total += row
    return total


@njit(**_OPTIONS)
def multiplicative_step(X, num, den, gamma, floor, ceiling):
    """X <- clip(X * (num / den)**gamma, floor, ceiling), in place.

    Clipping to a box keeps the majorization-minimization guarantee, because
    the auxiliary function is a sum of convex functions of single entries.
    """
    n_rows, n_cols = X.shape
    for i in range(n_rows):
        for j in range(n_cols):
            d = den[i, j]
            r = num[i, j] / d if d > 0 else 1.0
            if r != r:  # NaN from inf / inf: leave the entry as it is
                r = 1.0
            if gamma != 1.0:
                r = r**gamma
            X[i, j] = min(max(X[i, j] * r, floor), ceiling)


@njit(**_OPTIONS)
def flush_small(V, threshold, value):
    """V[V < threshold] <- value, in place."""
    n_rows, n_cols = V.shape
    for i in range(n_rows):
        for j in range(n_cols):
            if V[i, j] < threshold:
                V[i, j] = value

"""Private numba kernels for the NMF core.

They work in place on preallocated 2-D arrays (column blocks of the data, so
rows may be strided), trust their input (validation happens in
:mod:`audionmf.nmf`; :mod:`audionmf._engine` calls them) and release the GIL,
so that several threads can sweep different column blocks at once. Each
kernel fuses the element-wise work of one multiplicative half-step into one
pass over a block, optionally accumulating the beta-divergence of the current
model on the way (KL and Itakura-Saito terms in float64, whatever the array
dtype). Matrix products stay in BLAS.

The logarithms of the divergence come from :func:`fast_log`, written so that
the loops vectorize (numba's own log does not without Intel's SVML:
docs/decisions.md, "A logarithm that vectorizes").
"""
import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from ._kernels_numpy import FAST_OMEGA  # (the over-relaxation exponent with a fast path)

# error_model="numpy": IEEE division (no ZeroDivisionError check), which lets loops vectorize.
_OPTIONS = dict(cache=True, nogil=True, error_model="numpy")
# The loss sums may be reassociated (so that they vectorize); nothing else is relaxed.
_SUM_OPTIONS = dict(_OPTIONS, fastmath={"reassoc", "contract"})


@intrinsic
def _to_bits(typingctx, x):
    """The bits of a float as an integer of the same width."""
    width = x.bitwidth
    sig = getattr(types, f"int{width}")(x)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(width))

    return sig, codegen


@intrinsic
def _from_bits(typingctx, n):
    """The float whose bits are the integer n."""
    width = n.bitwidth
    sig = getattr(types, f"float{width}")(n)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType() if width == 64 else ir.FloatType())

    return sig, codegen


def fast_log(x):
    """Natural logarithm of a positive normal float, in its own precision."""
    return math.log(x)


@overload(fast_log, jit_options=_OPTIONS)
def _fast_log(x):
    # x = 2**e * m with m folded into [sqrt(1/2), sqrt(2)); then
    # log(m) = 2 atanh(s) = 2 (s + s**3/3 + s**5/5 + ...), s = (m - 1) / (m + 1), |s| <= 0.172.
    # The exponent comes out as a float by the magic-number trick (no int-to-float conversion,
    # which does not vectorize everywhere). Relative error: float64 4e-16 (11 terms), float32
    # about 1e-7 (5 terms). Zero, subnormals, infinities and NaN give wrong finite values:
    # callers pass positive normal numbers only.
    if x == types.float64:
        def impl(x):
            bits = _to_bits(x)
            e = _from_bits((bits >> 52) | 0x4330000000000000) - 4503599627371519.0
            m = _from_bits((bits & 0xFFFFFFFFFFFFF) | 0x3FF0000000000000)
            if m > 1.4142135623730951:
                m *= 0.5
                e += 1.0
            s = (m - 1.0) / (m + 1.0)
            z = s * s
            p = 1.0 / 21.0
            for c in (19.0, 17.0, 15.0, 13.0, 11.0, 9.0, 7.0, 5.0, 3.0, 1.0):
                p = p * z + 1.0 / c
            return e * 0.6931471805599453 + 2.0 * s * p

        return impl
    if x == types.float32:
        def impl(x):
            bits = _to_bits(x)
            # (numba widens int32 arithmetic to int64: cast back before the bitcast)
            e = _from_bits(np.int32((bits >> 23) | 0x4B000000)) - np.float32(8388735.0)
            m = _from_bits(np.int32((bits & 0x7FFFFF) | 0x3F800000))
            if m > np.float32(1.4142135):
                m *= np.float32(0.5)
                e += np.float32(1.0)
            s = (m - np.float32(1.0)) / (m + np.float32(1.0))
            z = s * s
            p = np.float32(1.0 / 9.0)
            p = p * z + np.float32(1.0 / 7.0)
            p = p * z + np.float32(1.0 / 5.0)
            p = p * z + np.float32(1.0 / 3.0)
            p = p * z + np.float32(1.0)
            return e * np.float32(0.6931472) + np.float32(2.0) * s * p

        return impl


@njit(**_OPTIONS)
def kl_terms(V, Y, with_loss):
    """Y <- V / Y. Returns the KL divergence D(V | Y_before) if ``with_loss``, else 0."""
    if with_loss:
        return _kl_terms_and_loss(V, Y)
    n_rows, n_cols = V.shape
    for i in range(n_rows):
        for j in range(n_cols):
            Y[i, j] = V[i, j] / Y[i, j]
    return 0.0


@njit(**_SUM_OPTIONS)
def _kl_terms_and_loss(V, Y):
    # v log(v/y) - v + y, which is y where v = 0: q = 0 makes fast_log finite and v * it zero.
    # The terms are computed in float64 (they cancel near a good fit); the float64 quotient
    # rounded to V's dtype is the quotient in that dtype, so Y is what kl_terms would write.
    n_rows, n_cols = V.shape
    total = 0.0
    for i in range(n_rows):
        row = 0.0
        for j in range(n_cols):
            v = np.float64(V[i, j])
            y = np.float64(Y[i, j])
            q = v / y
            Y[i, j] = q
            row += v * fast_log(q) - v + y
        total += row
    return total


@njit(**_OPTIONS)
def is_terms(V, Y, B, cap, with_loss):
    """Y <- V / Y**2, B <- 1 / Y (capped at ``cap``). Returns D_IS(V | Y_before) if ``with_loss``.

    V must be strictly positive (the caller floors it).
    """
    if with_loss:
        return _is_terms_and_loss(V, Y, B, cap)
    one, top = V.dtype.type(1.0), V.dtype.type(cap)
    n_rows, n_cols = V.shape
    for i in range(n_rows):
        for j in range(n_cols):
            inv = one / Y[i, j]
            Y[i, j] = min(V[i, j] * inv * inv, top)
            B[i, j] = min(inv, top)
    return 0.0


@njit(**_SUM_OPTIONS)
def _is_terms_and_loss(V, Y, B, cap):
    # Y and B exactly as is_terms writes them; the loss in float64, as the KL terms
    # (q - log(q) - 1 cancels near a good fit).
    one, top = V.dtype.type(1.0), V.dtype.type(cap)
    n_rows, n_cols = V.shape
    total = 0.0
    for i in range(n_rows):
        row = 0.0
        for j in range(n_cols):
            v, y = V[i, j], Y[i, j]
            inv = one / y
            Y[i, j] = min(v * inv * inv, top)
            B[i, j] = min(inv, top)
            q = np.float64(v) / np.float64(y)
            row += q - fast_log(q) - 1.0
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
def multiplicative_step(X, num, den, gamma, floor, ceiling, omega, low, high):
    """X <- clip(X * s, floor, ceiling), in place, with s = (num / den)**gamma.

    Entries whose step s lies in [low, high] take s**omega instead (over-relaxation;
    omega = 1 turns it off). The caller picks [low, high] so that the longer step
    does not raise that entry's term of the auxiliary function above its value at
    the current point, so the divergence still never increases. Clipping to a box
    keeps that guarantee too: each term is convex in its entry, and the clipped
    value lies between the current one and the step's.

    A zero denominator, or inf / inf, leaves the entry as it is.
    """
    # One loop per case: LLVM computes both sides of a select inside a vectorized
    # loop, so a power that is only sometimes needed would be paid for everywhere.
    if omega == FAST_OMEGA and (gamma == 1.0 or gamma == 0.5):
        _fast_relaxed_step(X, num, den, gamma == 0.5, floor, ceiling, low, high)
    elif omega == 1.0 and (gamma == 1.0 or gamma == 0.5):
        _plain_step(X, num, den, gamma == 0.5, floor, ceiling)
    else:
        _general_step(X, num, den, gamma, floor, ceiling, omega, low, high)


@njit(**_OPTIONS)
def _ratio(n, d, one):
    r = n / d
    return r if (d > 0) & (r == r) else one


@njit(**_OPTIONS)
def _plain_step(X, num, den, half, floor, ceiling):
    one, lo, hi = X.dtype.type(1.0), X.dtype.type(floor), X.dtype.type(ceiling)
    n_rows, n_cols = X.shape
    for i in range(n_rows):
        if half:
            for j in range(n_cols):
                r = math.sqrt(_ratio(num[i, j], den[i, j], one))
                X[i, j] = min(max(X[i, j] * r, lo), hi)
        else:
            for j in range(n_cols):
                r = _ratio(num[i, j], den[i, j], one)
                X[i, j] = min(max(X[i, j] * r, lo), hi)


@njit(**_OPTIONS)
def _fast_relaxed_step(X, num, den, half, floor, ceiling, low, high):
    # s**(15/8) = s * s / s**(1/8): three square roots instead of a power.
    one, lo, hi = X.dtype.type(1.0), X.dtype.type(floor), X.dtype.type(ceiling)
    s_low, s_high = X.dtype.type(low), X.dtype.type(high)
    n_rows, n_cols = X.shape
    for i in range(n_rows):
        for j in range(n_cols):
            r = _ratio(num[i, j], den[i, j], one)
            if half:
                r = math.sqrt(r)
            longer = r * r / math.sqrt(math.sqrt(math.sqrt(r)))
            r = longer if (s_low <= r) & (r <= s_high) else r
            X[i, j] = min(max(X[i, j] * r, lo), hi)


@njit(**_OPTIONS)
def _general_step(X, num, den, gamma, floor, ceiling, omega, low, high):
    n_rows, n_cols = X.shape
    for i in range(n_rows):
        for j in range(n_cols):
            r = _ratio(num[i, j], den[i, j], 1.0)
            if gamma != 1.0:
                r = r**gamma
            if omega != 1.0 and low <= r <= high:
                r = r**omega
            X[i, j] = min(max(X[i, j] * r, floor), ceiling)


@njit(**_OPTIONS)
def scaled_copy(src, dst, factor, threshold, value):
    """dst <- src * factor, with entries below ``threshold`` set to ``value`` (one pass)."""
    n_rows, n_cols = src.shape
    f, low, v = dst.dtype.type(factor), dst.dtype.type(threshold), dst.dtype.type(value)
    for i in range(n_rows):
        for j in range(n_cols):
            x = src[i, j] * f
            dst[i, j] = x if x >= low else v


@njit(**_OPTIONS)
def flush_small(V, threshold, value):
    """V[V < threshold] <- value, in place."""
    n_rows, n_cols = V.shape
    for i in range(n_rows):
        for j in range(n_cols):
            if V[i, j] < threshold:
                V[i, j] = value

"""Speed and memory of audionmf.nmf against scikit-learn's multiplicative updates.

    python benchmarks/nmf_speed.py [AUDIO] [--quick]

AUDIO defaults to ../shared/real_music/hr3-desert.ogg (a real produced track),
read as mono at 22050 Hz; |STFT| with n_fft=2048, hop=512 gives F=1025 rows and
431 / 2584 / 12920 frames for 10 s / 60 s / 5 min (the 5 minutes tile the track).

For K in {8, 32, 128}, float32 and float64, KL and IS, in this one process:
  - ms per iteration of audionmf.nmf and of sklearn.decomposition.non_negative_factorization
    (solver="mu") from the same initialization, and their ratio. A fit of n iterations costs
    a + b n: b is the iteration, a what a fit costs once (checking and copying the input,
    the loss at the start, and for audionmf the loss at the end, which scikit-learn's fit
    does not compute with tol=0; for audionmf at 60 s and K=32 a few iterations' worth,
    more after the pause below). Each side's b is measured as the slope between fits
    of n/4 and n iterations. The ratio of the whole n-iteration fits, where a weighs in,
    is printed too ("fit ratio"). a itself, the intercept, is left out: the difference of
    two noisy times, it came out negative for scikit-learn in some cases. A slope that is
    not positive (noise larger than the iterations' time) is printed as "noise";
  - the GEMM lower bound: the matrix products one alternating KL iteration needs
    (W@H, W.T@R, W@H, R@H.T), timed with numpy at the same shapes, and audionmf's
    ratio to it; Itakura-Saito needs two more (W.T@B, B@H.T for the denominators),
    so its own bound (6 products) and the ratio to it are printed too;
  - peak extra memory during the fit (tracemalloc), in copies of V.
Then, for K=32, float32, 60 s, KL: the time each needs to reach the KL divergence
scikit-learn reaches in 200 iterations (both measured by audionmf.beta_divergence),
from the start of seed 0 and then from 5 starts (seeds 0-4, median ratio), since
where a fit settles depends on its start.
Ratios in one run are what count: absolute times drift with the machine's load. So that
drift hits both sides alike, each case is timed in rounds (audionmf then scikit-learn at
n/4 iterations, then both at n) and the slopes come from each side's medians over the
rounds.
Before every timed fit the script waits SETTLE seconds: after a multi-threaded product,
OpenBLAS's idle worker threads keep spinning for about 0.1 s (2**28 cycles,
OPENBLAS_THREAD_TIMEOUT), and a fit that runs its own threads beside them then loses up
to a third of its speed for that time.
scikit-learn's fit, which runs on those same workers, is not slowed by them.
"""
import argparse
import os
import sys
import time
import tracemalloc
import warnings

import numpy as np

import audionmf

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_AUDIO = os.path.join(HERE, "..", "..", "shared", "real_music", "hr3-desert.ogg")
SR, N_FFT, HOP = 22050, 2048, 512
#: Seconds to wait before a timed fit, so that the workers of the last BLAS call are asleep.
SETTLE = 0.5


def spectrograms(path, durations):
    y, _ = audionmf.load(path, sr=SR, mono=True, dtype=np.float64)
    out = {}
    for seconds in durations:
        n = int(seconds * SR)
        tiled = np.tile(y, int(np.ceil(n / len(y))))[:n]
        out[seconds] = np.abs(audionmf.stft(tiled, n_fft=N_FFT, hop_length=HOP))
    return out


def initial_factors(V, K, seed=0):
    rng = np.random.default_rng(seed)
    level = np.sqrt(V.mean() / K)
    W = level * (0.5 + rng.random((V.shape[0], K)))
    H = level * (0.5 + rng.random((K, V.shape[1])))
    return W.astype(V.dtype), H.astype(V.dtype)


def time_audionmf(V, W, H, beta, n_iter):
    """Seconds for a whole fit of ``n_iter`` iterations (loss checked at the start and the end only)."""
    audionmf.nmf(V, W.shape[1], W=W, H=H, beta=beta, max_iter=2, tol=0)  # compile and warm up
    time.sleep(SETTLE)
    t0 = time.perf_counter()
    audionmf.nmf(V, W.shape[1], W=W, H=H, beta=beta, max_iter=n_iter, tol=0, check_every=n_iter + 1)
    return time.perf_counter() - t0


def sklearn_fit(V, W, H, beta, n_iter):
    from sklearn.decomposition import non_negative_factorization

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        acts, templates, _ = non_negative_factorization(
            V.T, W=H.T.copy(), H=W.T.copy(), n_components=W.shape[1], init="custom", solver="mu",
            beta_loss={1: "kullback-leibler", 0: "itakura-saito"}[beta], max_iter=n_iter, tol=0,
        )
    return templates.T, acts.T


def time_sklearn(V, W, H, beta, n_iter):
    """Seconds for a whole fit of ``n_iter`` iterations."""
    sklearn_fit(V, W, H, beta, 2)
    time.sleep(SETTLE)
    t0 = time.perf_counter()
    sklearn_fit(V, W, H, beta, n_iter)
    return time.perf_counter() - t0


def per_iteration(time_fit, n_short, n_long, rounds):
    """``time_fit(n)`` for the fits of both sizes in alternating rounds: ``(b, whole)``, the
    seconds per iteration (slope of the medians) and of the ``n_long``-iteration fit, each
    per side (arrays over the sides ``time_fit`` returns)."""
    short, long = [], []
    for _ in range(rounds):
        short.append(time_fit(n_short))
        long.append(time_fit(n_long))
    short, long = np.median(short, axis=0), np.median(long, axis=0)
    return (long - short) / (n_long - n_short), long


def time_gemm(V, W, H, repeats, n_products=4):
    """Seconds for the products of one iteration: 4 (KL), or 6 with the IS denominators."""
    Y = np.empty_like(V)
    np.matmul(W, H, out=Y)
    time.sleep(SETTLE)
    t0 = time.perf_counter()
    for _ in range(repeats):
        np.matmul(W, H, out=Y)
        W.T @ Y
        if n_products == 6:
            W.T @ Y
        np.matmul(W, H, out=Y)
        Y @ H.T
        if n_products == 6:
            Y @ H.T
    return (time.perf_counter() - t0) / repeats


def peak_copies(fit):
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    fit()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak


def time_to_loss(V, W, H, target, max_iter=2000):
    """Seconds audionmf needs until its KL divergence is at or below ``target``."""
    state = {"t": None}
    time.sleep(SETTLE)
    t0 = time.perf_counter()

    def callback(iteration, loss):
        if state["t"] is None and loss <= target:
            state["t"] = time.perf_counter() - t0
            raise StopIteration

    try:
        audionmf.nmf(V, W.shape[1], W=W, H=H, beta=1, max_iter=max_iter, tol=0, check_every=5,
                     callback=callback)
    except StopIteration:
        pass
    return state["t"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("audio", nargs="?", default=DEFAULT_AUDIO)
    parser.add_argument("--quick", action="store_true", help="60 s and K=32 only")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating timings per case and length; each side's medians are used")
    parser.add_argument("--iterations", type=int, default=40,
                        help="n: each case is timed at n/4 and n iterations (at least 4)")
    args = parser.parse_args(argv)
    durations = [60] if args.quick else [10, 60, 300]
    ranks = [32] if args.quick else [8, 32, 128]
    specs = spectrograms(args.audio, durations)
    n_long = max(4, args.iterations)
    n_short = n_long // 4
    print(f"ms per iteration: slope between fits of {n_short} and {n_long} iterations; "
          f"fit ratio: of the whole {n_long}-iteration fits")
    header = (f"{'T':>6} {'K':>4} {'dtype':>7} {'loss':>4} | {'audionmf':>9} {'sklearn':>9} {'ratio':>6} | "
              f"{'GEMM':>7} {'ratio':>6} | {'own':>7} {'ratio':>6} | {'fit ratio':>9} | {'mem a/V':>7} {'mem s/V':>7}")
    print(header)
    print("-" * len(header))
    for seconds in durations:
        for K in ranks:
            for dtype in (np.float32, np.float64):
                V = specs[seconds].astype(dtype)
                W, H = initial_factors(V, K)
                gemm = time_gemm(V, W, H, n_long)
                gemm6 = time_gemm(V, W, H, n_long, n_products=6)
                for beta, name in ((1, "KL"), (0, "IS")):
                    own = gemm if beta else gemm6
                    Vb = V if beta else V**2  # Itakura-Saito on the power spectrogram
                    (ours, theirs), (whole_ours, whole_theirs) = per_iteration(
                        lambda n: (time_audionmf(Vb, W, H, beta, n), time_sklearn(Vb, W, H, beta, n)),
                        n_short, n_long, args.rounds)
                    mem_ours = peak_copies(lambda: audionmf.nmf(Vb, K, W=W, H=H, beta=beta, max_iter=3, tol=0))
                    mem_theirs = peak_copies(lambda: sklearn_fit(Vb, W, H, beta, 3))
                    if min(ours, theirs) <= 0:
                        print(f"{V.shape[1]:6d} {K:4d} {np.dtype(dtype).name:>7} {name:>4} | noise: "
                              f"{ours * 1e3:.2f} and {theirs * 1e3:.2f} ms per iteration; try more --rounds")
                        continue
                    print(f"{V.shape[1]:6d} {K:4d} {np.dtype(dtype).name:>7} {name:>4} | "
                          f"{ours * 1e3:7.1f}ms {theirs * 1e3:7.1f}ms {theirs / ours:5.2f}x | "
                          f"{gemm * 1e3:5.1f}ms {ours / gemm:5.2f}x | "
                          f"{own * 1e3:5.1f}ms {ours / own:5.2f}x | "
                          f"{whole_theirs / whole_ours:8.2f}x | "
                          f"{mem_ours / V.nbytes:7.2f} {mem_theirs / V.nbytes:7.2f}", flush=True)
    # Time to a common loss: scikit-learn's 200-iteration KL divergence, same start.
    V = specs[60].astype(np.float32)
    ratios = []
    for seed in range(5):
        W, H = initial_factors(V, 32, seed)
        time.sleep(SETTLE)
        t0 = time.perf_counter()
        Ws, Hs = sklearn_fit(V, W, H, 1, 200)
        sk_seconds = time.perf_counter() - t0
        target = audionmf.beta_divergence(V, Ws @ Hs, 1)
        ours = time_to_loss(V, W, H, target)
        ratios.append(ours / sk_seconds if ours else np.inf)
        if seed == 0:
            print(f"\ntime to scikit-learn's 200-iteration KL loss ({target:.6g}), K=32, float32, 60 s:")
            print(f"  scikit-learn {sk_seconds:.2f} s, audionmf "
                  + (f"{ours:.2f} s, ratio {ours / sk_seconds:.3f}" if ours else "not reached in 2000 iterations"))
        if args.quick:
            break
    if len(ratios) > 1:
        print(f"  from 5 starts (seeds 0-4): ratios {' '.join(f'{r:.3f}' for r in ratios)}, "
              f"median {np.median(ratios):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""audionmf.NMF against sklearn.decomposition.NMF(solver="mu"): the same call, timed.

    python benchmarks/sklearn_dropin.py AUDIO [--seconds 60] [--iterations 200] [--repeats 5]

for example

    python benchmarks/sklearn_dropin.py ../shared/real_music/hr3-desert.ogg

The first SECONDS of AUDIO, mono at 22050 Hz, |STFT| with n_fft=2048 and hop=512
(F=1025 bins, 2584 frames for 60 s), given in scikit-learn's orientation,
X = S.T (n_frames x n_freq, C-contiguous). For float64 and float32, Kullback-Leibler
and Itakura-Saito, with K=32: both estimators' fit_transform from the same start
(init="custom", the same W and H, drawn once with seed 0), the same number of
iterations (tol=0, max_iter=ITERATIONS), in this one process:

  - wall time: the two are interleaved (which goes first alternates), REPEATS times,
    each after a SETTLE-second pause (OpenBLAS's idle workers keep spinning for about
    0.1 s after a multi-threaded product and would slow the next fit); medians;
  - peak memory during fit_transform, traced by tracemalloc (numpy's allocations),
    in one untimed run each, in MB and in copies of X;
  - the divergence each reaches, computed for both by audionmf.beta_divergence
    (scikit-learn's own reconstruction_err_ skips small entries for Itakura-Saito).

Itakura-Saito has no divergence at zeros of X, which both estimators refuse: if the
spectrogram holds any, the script adds 1e-10 * max(X) to every entry (and says so).
Ratios in one run are what count; absolute times drift with the machine's load.
"""
import argparse
import gc
import os
import platform
import subprocess
import time
import tracemalloc
import warnings

import numpy as np
import sklearn
import sklearn.decomposition

import audionmf
from audionmf import NMF

SR, N_FFT, HOP, K = 22050, 2048, 512, 32
#: Seconds to wait before a timed fit, so that the workers of the last BLAS call are asleep.
SETTLE = 0.5


def spectrogram(path, seconds):
    y, _ = audionmf.load(path, sr=SR, mono=True, dtype=np.float64)
    y = y[: int(seconds * SR)]
    return np.abs(audionmf.stft(y, n_fft=N_FFT, hop_length=HOP))


def estimators(beta_loss, iterations):
    common = dict(n_components=K, init="custom", beta_loss=beta_loss, max_iter=iterations, tol=0)
    return {"audionmf": NMF(**common),
            "sklearn": sklearn.decomposition.NMF(solver="mu", **common)}


def fit(estimator, X, W0, H0):
    W = estimator.fit_transform(X, W=W0, H=H0)
    return W, estimator.components_


def timed(estimator, X, W0, H0):
    gc.collect()
    time.sleep(SETTLE)
    start = time.perf_counter()
    fit(estimator, X, W0, H0)
    return time.perf_counter() - start


def peak_memory(estimator, X, W0, H0):
    gc.collect()
    tracemalloc.start()
    try:
        W, H = fit(estimator, X, W0, H0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak, W, H


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio", help="e.g. ../shared/real_music/hr3-desert.ogg")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    S = spectrogram(args.audio, args.seconds)
    print(f"{os.path.basename(args.audio)}: first {args.seconds:g} s, |STFT| {S.shape[0]} x "
          f"{S.shape[1]}, K={K}, {args.iterations} iterations, {args.repeats} interleaved repeats")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; numpy {np.__version__}, "
          f"scikit-learn {sklearn.__version__}, audionmf {audionmf.__version__}")
    if S.min() == 0:
        S = S + 1e-10 * S.max()
        print("the spectrogram holds zeros: 1e-10 * max added to every entry (Itakura-Saito)")
    rng = np.random.default_rng(0)
    X64 = np.ascontiguousarray(S.T)
    level = np.sqrt(X64.mean() / K)
    W64 = level * rng.uniform(0.5, 1.5, (X64.shape[0], K))
    H64 = level * rng.uniform(0.5, 1.5, (K, X64.shape[1]))

    rows = []
    for dtype in (np.float64, np.float32):
        X, W0, H0 = (A.astype(dtype) for A in (X64, W64, H64))
        for beta_loss, short in (("kullback-leibler", "KL"), ("itakura-saito", "IS")):
            models = estimators(beta_loss, args.iterations)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # numba's first compile, scikit-learn's notes
                fit(models["audionmf"], X, W0, H0)  # compile the kernels before timing
                times = {name: [] for name in models}
                for repeat in range(args.repeats):
                    order = list(models) if repeat % 2 == 0 else list(models)[::-1]
                    for name in order:
                        times[name].append(timed(models[name], X, W0, H0))
                result = {}
                for name, model in models.items():
                    peak, W, H = peak_memory(model, X, W0, H0)
                    if model.n_iter_ != args.iterations:
                        raise RuntimeError(f"{name} ran {model.n_iter_} iterations")
                    loss = audionmf.beta_divergence(X, W @ H, beta_loss)
                    result[name] = (float(np.median(times[name])), peak, loss, times[name])
            rows.append((f"{short} {np.dtype(dtype).name}", X.nbytes, result))
            a, s = result["audionmf"], result["sklearn"]
            print(f"  {short} {np.dtype(dtype).name}: audionmf {' '.join(f'{t:.2f}' for t in a[3])} s, "
                  f"scikit-learn {' '.join(f'{t:.2f}' for t in s[3])} s", flush=True)

    print()
    print("| | audionmf s | scikit-learn s | time ratio | audionmf peak MB | scikit-learn peak MB "
          "| memory ratio | D audionmf | D scikit-learn | D ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, nbytes, result in rows:
        a, s = result["audionmf"], result["sklearn"]
        print(f"| {label} | {a[0]:.2f} | {s[0]:.2f} | {a[0] / s[0]:.2f} "
              f"| {a[1] / 1e6:.0f} ({a[1] / nbytes:.1f} X) | {s[1] / 1e6:.0f} ({s[1] / nbytes:.1f} X) "
              f"| {a[1] / s[1]:.2f} | {a[2]:.6g} | {s[2]:.6g} | {a[2] / s[2]:.6f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

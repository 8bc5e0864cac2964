"""Blind two-source separation on mixtures the defaults were not tuned on.

The blind defaults of ``audionmf separate --sources 2`` (which grouping features,
when rhythm counts) were chosen on the test mixtures of the development corpus.
This script checks them on other mixtures: the corpus's training clips (10 s
each, other pieces, patterns and sentences than the test mixtures), summed two
at a time at 0 dB, in six pairings, three mixtures each:

  sustained notes   flute + piano, flute + organ/piano and bass, flute + music
  struck or spoken  speech + music, drums + organ/piano and bass, speech + piano

For each mixture it prints the percussive share that decides whether rhythm
counts (:func:`audionmf.grouping.percussive_share`), and the mean SDR
(BSS Eval, best permutation) of ``audionmf.separate(n_sources=2)`` with its
default, with ``rhythm_weight=0`` (timbre only) and with ``rhythm_weight`` 2.5,
each averaged over ``--seeds`` random starts, and of the scikit-learn NMF + MFCC
k-means baseline of ``quality.py``.

    python benchmarks/blind_heldout.py ../shared/bench-dev
"""
import argparse
import os
import sys
import time
import warnings

import numpy as np

import audionmf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quality  # noqa: E402  (the corpus reader and the scikit-learn baseline)

PAIRS = {
    "flute+piano": (("two_instruments", "flute"), ("two_instruments", "piano")),
    "flute+harmonic": (("two_instruments", "flute"), ("drums_harmonic", "harmonic")),
    "flute+music": (("two_instruments", "flute"), ("speech_music", "music")),
    "speech+music": (("speech_music", "speech"), ("speech_music", "music")),
    "drums+harmonic": (("drums_harmonic", "drums"), ("drums_harmonic", "harmonic")),
    "speech+piano": (("speech_music", "speech"), ("two_instruments", "piano")),
}

SETTINGS = {"default": None, "timbre": 0.0, "rhythm": 2.5}


def mixtures(corpus):
    """(pairing, index, mix, sr, stems) for every pairing of training clips."""
    for name, ((task_a, a), (task_b, b)) in PAIRS.items():
        clips_a, clips_b = corpus[task_a]["train"][a], corpus[task_b]["train"][b]
        for i in range(min(len(clips_a), len(clips_b))):
            x, sr = audionmf.load(clips_a[i], dtype=np.float64)
            # the next clip of the second source, so that no two pairings share a pair
            y, sr_b = audionmf.load(clips_b[(i + 1) % len(clips_b)], dtype=np.float64)
            if sr_b != sr:
                raise SystemExit(f"{clips_b[i]}: {sr_b} Hz, {clips_a[i]}: {sr} Hz")
            n = min(x.shape[-1], y.shape[-1])
            yield name, i + 1, x[..., :n] + y[..., :n], sr, {a: x[..., :n], b: y[..., :n]}


def mean_sdr(stems, estimates, sr):
    scores = audionmf.evaluate(stems, estimates, sr, permutation=True)
    return float(np.mean([scores["sources"][s]["sdr"] for s in stems]))


def main(argv=None):
    warnings.filterwarnings("ignore", message="Maximum number of iterations")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", help="folder laid out like bench-dev")
    parser.add_argument("--seeds", type=int, default=3, help="random starts per mixture (default: %(default)s)")
    args = parser.parse_args(argv)
    corpus = quality.read_corpus(args.corpus, sorted({t for pair in PAIRS.values() for t, _ in pair}))
    baseline = quality.SklearnMFCC()
    t0 = time.perf_counter()
    rows = []
    print(f"{'pairing':15s} {'#':>2s} {'share':>6s} " + " ".join(f"{s:>8s}" for s in SETTINGS) + f" {'sklearn':>8s}")
    for name, index, mix, sr, stems in mixtures(corpus):
        from audionmf.grouping import percussive_share

        V = np.abs(audionmf.stft(mix, n_fft=quality.N_FFT, hop_length=quality.HOP))
        share = percussive_share(V, sr=sr, n_fft=quality.N_FFT, hop_length=quality.HOP)
        sdrs = [np.mean([mean_sdr(stems, audionmf.separate(mix, sr, n_sources=2, rhythm_weight=weight,
                                                             random_state=seed), sr)
                         for seed in range(args.seeds)])
                for weight in SETTINGS.values()]
        sdrs.append(mean_sdr(stems, baseline.run(None, mix, sr, stems), sr))
        rows.append((name, sdrs))
        print(f"{name:15s} {index:2d} {share:6.3f} " + " ".join(f"{v:8.2f}" for v in sdrs), flush=True)
    print("\nmean SDR (dB) | " + " | ".join([*SETTINGS, "sklearn"]))
    for name in PAIRS:
        values = np.mean([sdrs for pairing, sdrs in rows if pairing == name], axis=0)
        print(f"{name} | " + " | ".join(f"{v:.2f}" for v in values))
    print("all | " + " | ".join(f"{v:.2f}" for v in np.mean([sdrs for _, sdrs in rows], axis=0)))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; audionmf {audionmf.__version__}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

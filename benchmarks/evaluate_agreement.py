"""Check that `audionmf evaluate` reports what mir_eval computes, on a real corpus.

    python benchmarks/evaluate_agreement.py CORPUS_DIR [WORK_DIR]

For every test mixture of a corpus laid out like bench-dev, separates it blindly
with the `audionmf` command, scores the result with `audionmf evaluate --json
--permutation`, scores the same files with mir_eval.separation.bss_eval_sources
directly, and prints the largest difference in SDR / SIR / SAR (dB).
"""
import glob
import json
import os
import subprocess
import sys
import tempfile
import warnings

import mir_eval
import numpy as np
import soundfile as sf


def main(corpus, work=None):
    work = work or tempfile.mkdtemp(prefix="audionmf-agreement-")
    worst = 0.0
    for mix_dir in sorted(glob.glob(os.path.join(corpus, "*", "test", "*", ""))):
        task = mix_dir.rstrip(os.sep).split(os.sep)[-3]
        out = os.path.join(work, task, os.path.basename(mix_dir.rstrip(os.sep)))
        # The task's sources are the folders of its training clips (a test folder may hold
        # other files, such as speech_noise's noise_sample.flac): linked into a folder of
        # references with the mixture, and as many sources separated.
        sources = sorted(os.listdir(os.path.join(mix_dir, "..", "..", "train")))
        truth = os.path.join(out, "truth")
        os.makedirs(truth)
        for name in sources + ["mix"]:
            os.symlink(os.path.abspath(os.path.join(mix_dir, f"{name}.flac")), os.path.join(truth, f"{name}.flac"))
        subprocess.run(["audionmf", "separate", os.path.join(mix_dir, "mix.flac"), "-o", out, "-q",
                        "--sources", str(len(sources))], check=True)
        estimates = os.path.join(out, "mix")
        report = subprocess.run(["audionmf", "evaluate", truth, estimates, "--json", "--permutation"],
                                capture_output=True, text=True, check=True)
        result = json.loads(report.stdout)["sources"]
        names = sorted(result)
        refs = np.stack([sf.read(os.path.join(truth, f"{n}.flac"))[0] for n in names])
        est_names = sorted(os.listdir(estimates))
        ests = np.stack([sf.read(os.path.join(estimates, n))[0] for n in est_names])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            sdr, sir, sar, perm = mir_eval.separation.bss_eval_sources(refs, ests)
        for i, name in enumerate(names):
            for key, value in (("sdr", sdr[i]), ("sir", sir[i]), ("sar", sar[i])):
                worst = max(worst, abs(result[name][key] - value))
            if result[name]["estimate"] != os.path.splitext(est_names[perm[i]])[0]:
                raise SystemExit(f"{mix_dir}: pairing differs from mir_eval's for {name}")
        print(f"{task} {os.path.basename(mix_dir.rstrip(os.sep))}: largest difference so far {worst:.2e} dB")
    print(f"largest difference from mir_eval: {worst:.2e} dB")
    return 0 if worst < 0.01 else 1


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    sys.exit(main(*sys.argv[1:3]))

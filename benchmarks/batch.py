"""Batch speed-up: `audionmf separate FOLDER --jobs N` against `--jobs 1`.

    python benchmarks/batch.py [--files 100] [--seconds 3] [--jobs 2] [--source FILE]

Cuts ``--files`` clips of ``--seconds`` from a real recording (default:
../shared/real_music/hr3-desert.ogg, stereo 44.1 kHz; clips start at different
places and wrap around), writes them as FLAC into a temporary folder, and times
the whole command (start-up included) with --jobs 1 and with --jobs N, each in
a fresh process. It checks that both runs wrote the same files with the same
samples, bit for bit, and prints the ratio. The issue's target: 100 short files with --jobs 2 in at
most 0.6x the time of --jobs 1.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SOURCE = os.path.join(HERE, "..", "..", "shared", "real_music", "hr3-desert.ogg")


def make_clips(source, folder, count, seconds):
    y, sr = sf.read(source, dtype="float32", always_2d=True)
    length = int(seconds * sr)
    starts = np.linspace(0, len(y), count, endpoint=False).astype(int)
    for index, start in enumerate(starts):
        clip = np.take(y, np.arange(start, start + length), axis=0, mode="wrap")
        sf.write(os.path.join(folder, f"clip{index:03d}.flac"), clip, sr, subtype="PCM_16")


def timed(command):
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"failed: {' '.join(command)}")
    return time.perf_counter() - started


def same_outputs(a, b):
    """Whether two output folders hold the same files with the same samples, bit for bit.

    Samples, not bytes: libsndfile stamps float WAV files with the time they were written.
    """
    def listing(root):
        return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files)

    if listing(a) != listing(b):
        return False
    return all(np.array_equal(sf.read(os.path.join(a, name))[0], sf.read(os.path.join(b, name))[0])
               for name in listing(a))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--source", default=DEFAULT_SOURCE)
    args = parser.parse_args(argv)

    work = tempfile.mkdtemp(prefix="audionmf-batch-")
    try:
        clips = os.path.join(work, "clips")
        os.makedirs(clips)
        make_clips(args.source, clips, args.files, args.seconds)
        base = [sys.executable, "-m", "audionmf", "separate", clips, "-q"]
        timed(base[:-1] + ["--help"])  # numba's cache and the file system warm
        one = timed(base + ["-o", os.path.join(work, "one"), "--jobs", "1"])
        many = timed(base + ["-o", os.path.join(work, "many"), "--jobs", str(args.jobs)])
        identical = same_outputs(os.path.join(work, "one"), os.path.join(work, "many"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.files} files of {args.seconds:g} s (stereo 44.1 kHz FLAC), {os.cpu_count()} cores")
    print(f"| --jobs 1 | --jobs {args.jobs} | ratio | outputs identical |")
    print("|---|---|---|---|")
    print(f"| {one:.1f} s | {many:.1f} s | {many / one:.2f} | {'yes' if identical else 'NO'} |")
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())

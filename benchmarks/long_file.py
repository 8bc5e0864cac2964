"""Memory and time of `audionmf separate` on long files: flat memory, linear time.

    python benchmarks/long_file.py [--minutes 5 15 30 60] [--source FILE] [--keep DIR]

For each duration, a stereo 44.1 kHz FLAC file of that length is made by tiling
a real recording (default: ../shared/real_music/hr3-desert.ogg, 72 s), written a
block at a time so that making it needs no memory. Then

    audionmf separate FILE --sources 2 -o OUT -q

runs as a child process; its peak resident memory (the kernel's maxrss for
that one child, from os.wait4) and wall time are printed with the ratio of
time to the audio's duration. Beside it, for scale: the bytes of one float64
copy of the file's samples and of its magnitude spectrogram, which is what an
in-memory pipeline (librosa + scikit-learn) holds several times over.

The issue's targets: 60 minutes under 1 GB peak RSS and under 0.1x its duration.
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


def tile(source, path, minutes, sr=44100):
    """Write ``minutes`` of ``source`` repeated, stereo at ``sr``, as 16-bit FLAC."""
    y, file_sr = sf.read(source, dtype="float32", always_2d=True)
    if file_sr != sr:
        import soxr

        y = soxr.resample(y, file_sr, sr).astype(np.float32)
    if y.shape[1] == 1:
        y = np.repeat(y, 2, axis=1)
    return write_repeated(path, y[:, :2], sr, minutes)


def write_repeated(path, y, sr, minutes):
    """Write ``y`` (samples first) repeated to ``minutes`` at ``sr`` as 16-bit FLAC, a
    repetition at a time; returns the seconds written."""
    total = int(minutes * 60 * sr)
    channels = 1 if y.ndim == 1 else y.shape[1]
    with sf.SoundFile(path, "w", samplerate=sr, channels=channels, subtype="PCM_16", format="FLAC") as f:
        written = 0
        while written < total:
            piece = y[: total - written]
            f.write(piece)
            written += len(piece)
    return total / sr


def run_child(command):
    """(exit status, wall seconds, peak RSS in bytes) of one child process."""
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    stderr = child.stderr.read().decode(errors="replace")
    child.stderr.close()
    if child.returncode:
        sys.stderr.write(stderr)
    return child.returncode, wall, usage.ru_maxrss * 1024


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[5, 15, 30, 60])
    parser.add_argument("--source", default=DEFAULT_SOURCE)
    parser.add_argument("--keep", default=None, help="folder for the made files (default: a temporary one)")
    args = parser.parse_args(argv)

    work = args.keep or tempfile.mkdtemp(prefix="audionmf-long-")
    os.makedirs(work, exist_ok=True)
    rows = []
    try:
        for minutes in args.minutes:
            path = os.path.join(work, f"tiled_{minutes:g}min.flac")
            if not os.path.exists(path):
                print(f"making {path} ...", file=sys.stderr)
                tile(args.source, path, minutes)
            seconds = sf.info(path).frames / sf.info(path).samplerate
            out = os.path.join(work, "out")
            shutil.rmtree(out, ignore_errors=True)
            command = [sys.executable, "-m", "audionmf", "separate", path, "--sources", "2", "-o", out, "-q"]
            status, wall, rss = run_child(command)
            samples = int(seconds * 44100) * 2
            rows.append((minutes, status, wall, wall / seconds, rss, samples * 8, samples // 2 // 512 * 1025 * 8))
            print(f"{minutes:g} min: exit {status}, {wall:.1f} s ({wall / seconds:.3f}x), "
                  f"peak RSS {rss / 2**20:.0f} MB", file=sys.stderr)
            shutil.rmtree(out, ignore_errors=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)

    print("| minutes | exit | wall (s) | time / duration | peak RSS (MB) | one float64 copy of the "
          "samples (MB) | one float64 magnitude spectrogram (MB) |")
    print("|---|---|---|---|---|---|---|")
    for minutes, status, wall, ratio, rss, samples, spectrogram in rows:
        print(f"| {minutes:g} | {status} | {wall:.1f} | {ratio:.3f} | {rss / 2**20:.0f} | "
              f"{samples / 2**20:.0f} | {spectrogram / 2**20:.0f} |")
    return 0 if all(row[1] == 0 for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())

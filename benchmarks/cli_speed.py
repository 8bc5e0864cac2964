"""Wall time of the command line for the vocals mode and for source models, with a yardstick.

    python benchmarks/cli_speed.py [--song ../shared/real_music/hr3-desert.ogg] [--minutes 3]
                                   [--corpus ../shared/bench-dev] [--repeat 3] [--only vocals|models]

Every command runs as a child process (Python's start-up included, as a user sees it),
the commands of a part taking turns ``--repeat`` times; medians are reported, and each
part's ratio to a yardstick measured in the same turns (on a shared machine the load
moves between runs: the ratio is what carries to another machine).

* **vocals**: the song tiled to ``--minutes`` (stereo 44.1 kHz, 16-bit FLAC), through
  ``separate --two-stems vocals`` and, as the yardstick, ``separate --two-stems drums``.
  Target (issue "Vocals"): 3 minutes in at most 15 s on 2 cores.
* **models**: ``learn`` on the 30 s of training clips of one source of speech_music
  (target: at most 30 s; the model file under 20 MB), then ``separate --model`` of a
  10 s test mixture with the two speech_music models (target: at most 2 s) and of a
  band4 mixture with its four models (target: at most 4 s); ``--two-stems drums`` on the
  same 10 s mixture as the yardstick.
"""
import argparse
import glob
import os
import shutil
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from long_file import run_child, tile  # noqa: E402

DEFAULT_SONG = os.path.join(HERE, "..", "..", "shared", "real_music", "hr3-desert.ogg")
DEFAULT_CORPUS = os.path.join(HERE, "..", "..", "shared", "bench-dev")
AUDIONMF = [sys.executable, "-m", "audionmf"]


def take_turns(runs, repeat, out):
    """{name: [wall seconds]} of ``runs`` ((name, command) pairs) taking turns; exits on a failure."""
    times = {name: [] for name, _ in runs}
    for _ in range(repeat):
        for name, command in runs:
            shutil.rmtree(out, ignore_errors=True)
            status, wall, rss = run_child(command)
            if status:
                raise SystemExit(f"{name}: exit {status}")
            times[name].append(wall)
            print(f"{name}: {wall:.2f} s, peak RSS {rss / 2**20:.0f} MB", file=sys.stderr)
    return times


def table(times, yardstick):
    base = float(np.median(times[yardstick]))
    lines = ["| command | wall (s), median | runs (s) | median / yardstick's |", "|---|---|---|---|"]
    for name, walls in times.items():
        median = float(np.median(walls))
        lines.append(f"| {name} | {median:.2f} | {', '.join(f'{t:.2f}' for t in walls)} | {median / base:.2f} |")
    return "\n".join(lines)


def vocals(args, work):
    path = os.path.join(work, f"song_{args.minutes:g}min.flac")
    tile(args.song, path, args.minutes)
    out = os.path.join(work, "out")
    runs = [(f"separate --two-stems {mode}", AUDIONMF + ["separate", path, "--two-stems", mode, "-o", out, "-q"])
            for mode in ("vocals", "drums")]
    print(f"\n{args.minutes:g} minutes of {os.path.basename(args.song)}, stereo; medians of {args.repeat}")
    print(table(take_turns(runs, args.repeat, out), "separate --two-stems drums"))


def models(args, work):
    def train(task, source):
        return sorted(glob.glob(os.path.join(args.corpus, task, "train", source, "*.flac")))

    def test_mix(task):
        return os.path.join(args.corpus, task, "test", "mix01", "mix.flac")

    out = os.path.join(work, "out")
    learned = {}
    learn_runs = []
    for task, sources in (("speech_music", ("speech", "music")), ("band4", ("drums", "bass", "keys", "lead"))):
        for source in sources:
            learned[task, source] = os.path.join(work, f"{task}_{source}.npz")
            learn_runs.append((f"learn {task}/{source} (30 s)",
                               AUDIONMF + ["learn", source, *train(task, source), "-o",
                                           learned[task, source], "-q"]))
    learn_times = {}
    for name, command in learn_runs:  # each once: the same work every time
        status, wall, _ = run_child(command)
        if status:
            raise SystemExit(f"{name}: exit {status}")
        learn_times[name] = wall
        print(f"{name}: {wall:.2f} s", file=sys.stderr)
    runs = [
        ("separate 10 s, 2 models", AUDIONMF + ["separate", test_mix("speech_music"), "-o", out, "-q",
                                                *[w for s in ("speech", "music")
                                                  for w in ("--model", learned["speech_music", s])]]),
        ("separate 10 s, 4 models", AUDIONMF + ["separate", test_mix("band4"), "-o", out, "-q",
                                                *[w for s in ("drums", "bass", "keys", "lead")
                                                  for w in ("--model", learned["band4", s])]]),
        ("separate 10 s --two-stems drums", AUDIONMF + ["separate", test_mix("speech_music"), "-o", out,
                                                        "-q", "--two-stems", "drums"]),
    ]
    times = take_turns(runs, args.repeat, out)
    print("\n| learn (each once) | wall (s) | model file (MB) |\n|---|---|---|")
    for (name, _), key in zip(learn_runs, learned):
        print(f"| {name} | {learn_times[name]:.2f} | {os.path.getsize(learned[key]) / 2**20:.2f} |")
    print(f"\nseparate, 10 s mixtures (22.05 kHz mono); medians of {args.repeat}")
    print(table(times, "separate 10 s --two-stems drums"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--song", default=DEFAULT_SONG)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--corpus", default=DEFAULT_CORPUS)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=("vocals", "models"))
    args = parser.parse_args(argv)
    work = tempfile.mkdtemp(prefix="audionmf-cli-speed-")
    try:
        if args.only in (None, "vocals"):
            vocals(args, work)
        if args.only in (None, "models"):
            models(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The ``audionmf`` command line.

Exit status: 0 success; 1 an input or output file could not be used (each
failure is one line on stderr naming the file); 2 bad usage (unknown option,
bad value); 130 interrupted.
"""
import argparse
import os
import sys
import traceback

from ._version import __version__

EXIT_OK, EXIT_BAD_FILE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

DESCRIPTION = """\
Separate audio into sources with non-negative matrix factorization (NMF).

The spectrogram of each input is factorized as V ~= W H (spectral templates W,
activations H); the components are grouped into sources by the timbre of their
templates; soft masks split the mixture, so the sources sum back to the input.
"""

SEPARATE_EPILOG = """\
output:
  OUTDIR/<input file stem>/source1.wav ... sourceN.wav, at the input's sample
  rate and channel count, loudest source first. WAV files are 32-bit float, so
  the sources add up to the input exactly.

examples:
  audionmf separate song.flac                     two sources into separated/song/
  audionmf separate a.wav b.ogg -o stems --sources 3 --components 30
  audionmf separate speech.wav --beta is --n-fft 1024 --hop 256
  audionmf evaluate truth/song separated/song --permutation   (score it)

exit status: 0 all inputs done, 1 some input or output failed (named on
stderr; the others are still processed), 2 bad usage.
"""


EVALUATE_EPILOG = """\
examples:
  audionmf evaluate truth/song separated/song --permutation
  audionmf evaluate truth/song separated/song --json > scores.json

exit status: 0 scored, 1 a folder or file cannot be used (missing, unreadable,
silent, no names in common, different sample rates), 2 bad usage.
"""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr, exit 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seed(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be non-negative, got {value}")
    return value


def _beta(text):
    from ._validation import ParameterError, beta_to_float

    try:
        return beta_to_float(text)
    except ParameterError:
        raise argparse.ArgumentTypeError(
            f"expected kl, is, euclidean or a number, got {text!r}"
        ) from None


def get_parser():
    """The argument parser of the ``audionmf`` command."""
    parser = _Parser(
        prog="audionmf",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"audionmf {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    sep = commands.add_parser(
        "separate",
        help="split audio files into sources",
        description="Split each INPUT into sources, blindly (no training data).",
        epilog=SEPARATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sep.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files (wav, flac, ogg, ...)")
    sep.add_argument("-o", "--out", default="separated", metavar="OUTDIR",
                     help="folder for the results (default: %(default)s)")
    sep.add_argument("--sources", type=_positive_int, default=2, metavar="N",
                     help="number of sources (default: %(default)s)")
    sep.add_argument("--components", type=_positive_int, default=None, metavar="K",
                     help="NMF components in all, at least N (default: 8 per source)")
    sep.add_argument("--beta", type=_beta, default="kl", metavar="BETA",
                     help="divergence: kl, is, euclidean or a number (default: kl)")
    sep.add_argument("--iterations", type=_positive_int, default=200, metavar="N",
                     help="maximum NMF iterations (default: %(default)s)")
    sep.add_argument("--n-fft", type=_positive_int, default=2048, metavar="N",
                     help="STFT frame length in samples (default: %(default)s)")
    sep.add_argument("--hop", type=_positive_int, default=None, metavar="N",
                     help="STFT hop in samples (default: n-fft / 4)")
    sep.add_argument("--seed", type=_seed, default=0, metavar="N",
                     help="random seed; same seed, same result (default: %(default)s)")
    sep.add_argument("--format", choices=("wav", "flac"), default="wav",
                     help="output file format (default: %(default)s)")
    sep.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    sep.add_argument("--debug", action="store_true", help="show the traceback of errors")
    sep.set_defaults(run=_run_separate, check=_check_separate, command_parser=sep)

    ev = commands.add_parser(
        "evaluate",
        help="score separated sources against the true ones (SDR, SIR, SAR, SI-SDR)",
        description=(
            "Score the audio files of ESTIMATE_DIR against those of REFERENCE_DIR, paired by "
            "file name without extension (drums.wav with drums.flac). SDR, SIR and SAR are "
            "BSS Eval v3 exactly as mir_eval.separation.bss_eval_sources computes them; SI-SDR "
            "is scale-invariant SDR. A 'mix' file among the references adds each source's "
            "SDR improvement over the mixture (SDRi). All in dB, higher is better."
        ),
        epilog=EVALUATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ev.add_argument("reference_dir", metavar="REFERENCE_DIR", help="folder of true sources")
    ev.add_argument("estimate_dir", metavar="ESTIMATE_DIR", help="folder of separated sources")
    ev.add_argument("--json", action="store_true", help="print the scores as JSON")
    ev.add_argument("--permutation", action="store_true",
                    help="ignore the estimates' names and find the best assignment "
                         "(for blind outputs such as source1, source2)")
    ev.add_argument("--debug", action="store_true", help="show the traceback of errors")
    ev.set_defaults(run=_run_evaluate, check=lambda sub, args: None, command_parser=ev)
    return parser


def main(argv=None):
    """Run the command line; returns the exit status."""
    parser = get_parser()
    try:
        args = parser.parse_args(argv)
        args.check(args.command_parser, args)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("audionmf: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: say so in one line unless asked for more
        if getattr(args, "debug", False):
            raise
        print(f"audionmf: internal error: {type(exc).__name__}: {exc} "
              "(run with --debug for the traceback)", file=sys.stderr)
        return EXIT_BAD_FILE


def _check_separate(sub, args):
    """Usage errors that involve several options; exits 2 through ``sub.error``."""
    if args.components is not None and args.components < args.sources:
        sub.error(f"--components {args.components} is fewer than --sources {args.sources}")
    hop = args.n_fft // 4 if args.hop is None else args.hop
    if hop > args.n_fft:
        sub.error(f"--hop {hop} is larger than --n-fft {args.n_fft}")
    stems = {}
    for path in args.inputs:
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in stems and os.path.abspath(stems[stem]) != os.path.abspath(path):
            sub.error(f"{stems[stem]} and {path} would both write to {os.path.join(args.out, stem)}")
        stems.setdefault(stem, path)


def _run_separate(args):
    problem = _unusable_output_folder(args.out)
    if problem:
        _report(f"{args.out}: {problem}")
        return EXIT_BAD_FILE

    from ._validation import AudioError, ParameterError

    inputs = list(dict.fromkeys(args.inputs))
    failed = 0
    for path in inputs:
        try:
            written = _separate_one(path, args, protected=inputs)
        except (AudioError, ParameterError) as exc:
            if args.debug:
                traceback.print_exc()
            message = str(exc)
            _report(message if message.startswith(path) else f"{path}: {message}")
            failed += 1
            continue
        if not args.quiet:
            print(f"{path} -> {written}", file=sys.stderr)
    if failed and len(inputs) > 1:
        _report(f"{failed} of {len(inputs)} inputs failed")
    return EXIT_BAD_FILE if failed else EXIT_OK


def _run_evaluate(args):
    import json

    from ._validation import AudioError, ParameterError
    from .evaluate import evaluate_folders

    try:
        result = evaluate_folders(args.reference_dir, args.estimate_dir, permutation=args.permutation)
    except (AudioError, ParameterError) as exc:
        if args.debug:
            traceback.print_exc()
        message = str(exc)
        if args.reference_dir not in message and args.estimate_dir not in message:
            message = f"{args.reference_dir} vs {args.estimate_dir}: {message}"
        _report(message)
        return EXIT_BAD_FILE
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(_score_table(result))
    return EXIT_OK


def _score_table(result):
    """The scores as a plain-text table, then the files that were left out."""
    columns = [("sdr", "SDR"), ("sir", "SIR"), ("sar", "SAR"), ("si_sdr", "SI-SDR")]
    if "sdri" in result["mean"]:
        columns.append(("sdri", "SDRi"))
    rows = [(name, scores) for name, scores in result["sources"].items()]
    show_pairing = any(name != scores["estimate"] for name, scores in rows)
    labels = [f"{name} <- {s['estimate']}" if show_pairing else name for name, s in rows]
    width = max(len(label) for label in labels + ["source", "mean"])
    lines = ["source".ljust(width) + "".join(f"{title:>9}" for _, title in columns)]
    for label, (_, scores) in zip(labels, rows):
        lines.append(label.ljust(width) + "".join(f"{scores[k]:9.2f}" for k, _ in columns))
    lines.append("mean".ljust(width) + "".join(f"{result['mean'][k]:9.2f}" for k, _ in columns))
    lines.append("(dB, BSS Eval v3; higher is better)")
    ignored = result["ignored"]
    if ignored["references"]:
        lines.append("no estimate for: " + ", ".join(ignored["references"]))
    if ignored["estimates"]:
        lines.append("no reference for: " + ", ".join(ignored["estimates"]))
    if result.get("mixture"):
        lines.append(f"mixture: {result['mixture']}")
    return "\n".join(lines)


def _separate_one(path, args, protected):
    """Separate one file; returns the folder written. Nothing is left on failure."""
    from . import io
    from ._validation import AudioError
    from .separate import separate

    stem = os.path.splitext(os.path.basename(path))[0]
    folder = os.path.join(args.out, stem)
    y, sr = io.load(path)
    sources = separate(
        y,
        sr,
        n_sources=args.sources,
        n_components=args.components,
        beta=args.beta,
        n_fft=args.n_fft,
        hop_length=args.hop,
        max_iter=args.iterations,
        random_state=args.seed,
        callback=_progress(stem, args.iterations, args.quiet),
    )
    targets = [(os.path.join(folder, f"{name}.{args.format}"), s) for name, s in sources.items()]
    for target, _ in targets:
        for source in protected:
            if os.path.exists(target) and os.path.samefile(target, source):
                raise AudioError(f"{path}: output {target} is an input file; choose another -o")
    created = not os.path.isdir(folder)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise AudioError(f"{folder}: cannot create folder ({exc.strerror or exc})") from None
    try:
        io.save_together(targets, sr)
    except BaseException:
        if created:
            _remove_empty(folder)
        raise
    return folder + os.sep


def _progress(label, total, quiet):
    """A callback(iteration, loss) drawing a progress bar on stderr when it is a terminal."""
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = tqdm(total=total, desc=label, unit="it", leave=False, file=sys.stderr)

    def callback(iteration, loss):
        bar.update(iteration - bar.n)
        if iteration >= total:
            bar.close()

    return callback


def _unusable_output_folder(folder):
    """Why ``folder`` cannot hold results, or None. Checked before any work."""
    path = os.path.abspath(folder)
    if os.path.exists(path):
        if not os.path.isdir(path):
            return "exists and is not a folder"
        if not os.access(path, os.W_OK | os.X_OK):
            return "folder is not writable"
        return None
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"cannot create folder: {parent} is a file"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot create folder: {parent} is not writable"
    return None


def _remove_empty(folder):
    try:
        os.rmdir(folder)
    except OSError:
        pass


def _report(message):
    print(f"audionmf: error: {message}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())

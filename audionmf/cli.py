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

exit status: 0 all inputs done, 1 some input or output failed (named on
stderr; the others are still processed), 2 bad usage.
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

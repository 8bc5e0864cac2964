"""The ``audionmf`` command line.

Exit status: 0 success; 1 an input or output file could not be used (each
failure is one line on stderr naming the file); 2 bad usage (unknown option,
bad value); 130 interrupted (Ctrl-C); 143 terminated (SIGTERM, as ``kill`` and
``timeout`` send), which stops the work and cleans up as Ctrl-C does.
"""
import argparse
import math
import os
import signal
import sys
import time
import traceback

from ._version import __version__

EXIT_OK, EXIT_BAD_FILE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_TERMINATED = 128 + signal.SIGTERM

DESCRIPTION = """\
Separate audio into sources with non-negative matrix factorization (NMF).

The spectrogram of each input is factorized as V ~= W H (spectral templates W,
activations H); the components are grouped into sources, blindly by the timbre
of their templates or by source models learned from examples ('audionmf learn');
soft masks split the mixture, so the sources sum back to the input.
"""

SEPARATE_EPILOG = """\
output:
  OUTDIR/<input file stem>/<source>.wav, at the input's sample rate and channel
  count. Blind: source1 ... sourceN, the source whose model spectrogram holds
  the most energy first. With --model: the models' names (plus 'residual' with
  --free). With --two-stems drums: drums and
  no_drums. WAV files are 32-bit float, so the sources add up to the input
  exactly.

examples:
  audionmf separate song.flac                     two sources into separated/song/
  audionmf separate a.wav b.ogg -o stems --sources 3 --components 30
  audionmf separate speech.wav --beta is --n-fft 1024 --hop 256
  audionmf separate mix.wav --model speech.npz --model music.npz
  audionmf separate noisy.wav --model speech.npz --free 16   (speech + residual)
  audionmf separate song.flac --two-stems drums           (drums.wav and no_drums.wav)
  audionmf plot song.wav -o song.png; audionmf separate song.wav --group 0-5,9 --group 6-8,10-15
                                                  (look at the 16 components, then group them)
  audionmf separate album/ --jobs 2 --skip-existing     (every audio file in album/)
  audionmf separate 'archive/**/*.flac' --scheduler tcp://10.0.0.5:8786   (on a Dask cluster)
  audionmf evaluate truth/song separated/song --permutation   (score it)

exit status: 0 all inputs done, 1 some input or output failed (named on
stderr; the others are still processed), 2 bad usage, 130 interrupted (Ctrl-C),
143 terminated (SIGTERM); the file in progress then leaves nothing behind.
"""


EVALUATE_EPILOG = """\
examples:
  audionmf evaluate truth/song separated/song --permutation
  audionmf evaluate truth/song separated/song --json > scores.json

exit status: 0 scored, 1 a folder or file cannot be used (missing, unreadable,
silent, no names in common, different sample rates), 2 bad usage.
"""


LEARN_EPILOG = """\
The model file holds the templates and the analysis they belong to (sample
rate, STFT, divergence, spectrogram power); 'audionmf separate --model' uses
that analysis. Frames more than 40 dB below the loudest are ignored. Each
example is also learned from with its spectrogram shifted up and down by up to
--pitch-range semitones (default 1).

examples:
  audionmf learn speech clips/speech/*.wav -o speech.npz
  audionmf learn drums drums_*.flac -o drums.npz --components 32 --sr 22050

exit status: 0 model written, 1 an example or the output cannot be used, 2 bad usage.
"""


FEATURES_EPILOG = """\
examples:
  audionmf decompose song.wav -o song.npz --components 24
  audionmf decompose clip.wav -o clip.csv --model drums.npz   (activations of a learned dictionary)
  audionmf plot song.wav -o song.png

Multichannel input is analysed on the channels' summed spectrogram.
exit status: 0 written, 1 the input, model or output cannot be used, 2 bad usage.
"""

FEATURE_FORMATS = {"decompose": (".npz", ".csv"), "plot": (".png", ".pdf", ".svg")}


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr, exit 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _add_run_options(parser):
    """--seed, --quiet and --debug, which every factorizing command takes."""
    parser.add_argument("--seed", type=_nonnegative_int, default=0, metavar="N",
                        help="random seed; same seed, same result (default: %(default)s)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    parser.add_argument("--debug", action="store_true", help="show the traceback of errors")


def _add_analysis_options(parser, prefix):
    parser.add_argument("--beta", type=_beta, default=None, metavar="BETA",
                        help=f"{prefix}divergence: kl, is, euclidean or a number (default: kl)")
    parser.add_argument("--n-fft", type=_positive_int, default=None, metavar="N",
                        help=f"{prefix}STFT frame length in samples (default: 2048)")
    parser.add_argument("--hop", type=_positive_int, default=None, metavar="N",
                        help=f"{prefix}STFT hop in samples (default: n-fft / 4)")


def _number(convert, minimum, what, maximum=None):
    """An argparse type: ``convert(text)``, finite, at least ``minimum`` (and at most ``maximum``)."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not minimum <= value < float("inf"):
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:g}, got {text}")
        return value

    return parse


def _component_list(text):
    """An argparse type: '0,3,5' or '0-2,7' -> [0, 3, 5] or [0, 1, 2, 7]."""
    indices = []
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        try:
            first, last = int(low), int(high if dash else low)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected component numbers such as 0,3,5 or 0-3, got {text!r}") from None
        if first < 0 or last < first:
            raise argparse.ArgumentTypeError(f"bad component range {part.strip()!r} in {text!r}")
        indices.extend(range(first, last + 1))
    return indices


_positive_int = _number(int, 1, "a whole number")
_nonnegative_int = _number(int, 0, "a whole number")
_nonnegative_float = _number(float, 0, "a number")
_feature_weight = _number(float, 0, "a number", maximum=1000.0)  # grouping.MAX_WEIGHT


def _beta(text):
    from ._validation import ParameterError, beta_to_float

    try:
        return beta_to_float(text)
    except ParameterError as exc:
        try:
            float(text)
        except ValueError:  # not a name nor a number
            raise argparse.ArgumentTypeError(
                f"expected kl, is, euclidean or a number, got {text!r}") from None
        raise argparse.ArgumentTypeError(str(exc)) from None  # a number out of range


def get_parser():
    """The argument parser of the ``audionmf`` command."""
    from .models import LEARN_DEFAULTS

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
    sep.add_argument("inputs", nargs="+", metavar="INPUT",
                     help="audio files (wav, flac, ogg, ...), folders of them, or glob patterns "
                          "such as 'album/**/*.flac' (quoted)")
    sep.add_argument("-o", "--out", default="separated", metavar="OUTDIR",
                     help="folder for the results (default: %(default)s)")
    sep.add_argument("--model", action="append", default=[], metavar="MODEL.npz",
                     help="a source model from 'audionmf learn'; repeat for each source")
    sep.add_argument("--free", type=_nonnegative_int, default=0, metavar="K",
                     help="with --model: K extra templates learned on the mixture, written "
                          "as 'residual' (default: 0)")
    sep.add_argument("--sources", type=_positive_int, default=None, metavar="N",
                     help="blind: number of sources (default: 2)")
    sep.add_argument("--components", type=_positive_int, default=None, metavar="K",
                     help="blind: NMF components in all, at least N (default: 8 per source)")
    sep.add_argument("--two-stems", choices=("drums",), default=None, metavar="drums",
                     help="split into drums.wav and no_drums.wav, with the generic drum templates "
                          "that ship with audionmf (no training data needed)")
    sep.add_argument("--group", action="append", default=None, type=_component_list,
                     metavar="I,J,...",
                     help="blind: the components of one source, chosen by hand (repeat for each "
                          "source; ranges such as 0-3 allowed): the components 'audionmf plot' "
                          "shows with the same --components, analysis options and --seed (files "
                          "up to about 3 minutes at 44.1 kHz)")
    sep.add_argument("--rhythm", type=_feature_weight, default=None, metavar="W",
                     help="blind: weight of how components move over time beside their timbre "
                          "when grouping them (default: 2.5 when at least 6%% of the mixture's "
                          "energy is percussive, as with speech over music or drums over notes; "
                          "else 0); 0: the grouping for sustained notes (timbre and how notes "
                          "start, refined by a finer fit where the mixture is plainly sustained; "
                          "past about 47 s at 44.1 kHz, fitted on stretches of it)")
    _add_analysis_options(sep, "blind: ")
    sep.add_argument("--iterations", type=_positive_int, default=None, metavar="N",
                     help="maximum NMF iterations (default: 200; 60 with --two-stems, 50 with "
                          "--model and no --free)")
    sep.add_argument("--format", choices=("wav", "flac"), default="wav",
                     help="output file format (default: %(default)s)")
    sep.add_argument("--plot", action="store_true",
                     help="also draw the mixture and the sources to OUTDIR/<stem>/separation.png")
    sep.add_argument("--jobs", type=_positive_int, default=1, metavar="N",
                     help="separate N files at once, in separate processes (default: 1)")
    sep.add_argument("--skip-existing", action="store_true",
                     help="skip inputs whose output files all exist (resume a batch)")
    sep.add_argument("--scheduler", default=None, metavar="ADDRESS",
                     help="send the files to the workers of a Dask distributed cluster, such as "
                          "tcp://10.0.0.5:8786 (needs 'pip install audionmf[dask]'; the workers "
                          "must see the same paths)")
    _add_run_options(sep)
    sep.set_defaults(run=_run_separate, check=_check_separate, command_parser=sep)

    learn = commands.add_parser(
        "learn",
        help="learn a source model from example recordings",
        description="Learn the spectral templates of one source from recordings of it alone.",
        epilog=LEARN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    learn.add_argument("name", metavar="NAME", help="source name, used for the separated files")
    learn.add_argument("inputs", nargs="+", metavar="AUDIO", help="example recordings")
    learn.add_argument("-o", "--out", required=True, metavar="MODEL.npz", help="model file to write")
    learn.add_argument("--components", type=_positive_int, default=None, metavar="K",
                       help=f"number of templates (default: {LEARN_DEFAULTS['n_components']})")
    _add_analysis_options(learn, "")
    learn.add_argument("--context", type=_nonnegative_int, default=None, metavar="C",
                       help="frames of context on each side of a template, so templates follow "
                            f"how a sound evolves (default: {LEARN_DEFAULTS['context']})")
    learn.add_argument("--pitch-range", type=_nonnegative_int, default=None, metavar="N",
                       help="also learn from the examples shifted by -N .. N semitones, so the "
                            "model knows notes near the ones they play; 0 for none (default: 1)")
    learn.add_argument("--sparsity", type=_nonnegative_float, default=None, metavar="S",
                       help=f"L1 penalty on activations while learning (default: {LEARN_DEFAULTS['sparsity']})")
    learn.add_argument("--iterations", type=_positive_int, default=None, metavar="N",
                       help=f"NMF iterations (default: {LEARN_DEFAULTS['max_iter']})")
    learn.add_argument("--sr", type=_positive_int, default=None, metavar="HZ",
                       help="sample rate of the model (default: the first file's)")
    _add_run_options(learn)
    learn.set_defaults(run=_run_learn, check=_check_learn, command_parser=learn)

    for name, summary, out_help in (
        ("decompose", "write templates and activations (features) to .npz or .csv",
         "features file: .npz (templates, activations, frequencies, times) or .csv "
         "(activations with a time column)"),
        ("plot", "draw the templates, activations and spectrogram of a file",
         "figure file: .png, .pdf or .svg"),
    ):
        cmd = commands.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".",
                                  epilog=FEATURES_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
        cmd.add_argument("input", metavar="INPUT", help="audio file")
        cmd.add_argument("-o", "--out", required=True, metavar="FILE", help=out_help)
        cmd.add_argument("--model", default=None, metavar="MODEL.npz",
                         help="use this model's templates and compute activations only")
        cmd.add_argument("--components", type=_positive_int, default=None, metavar="K",
                         help="number of templates without --model (default: 16)")
        _add_analysis_options(cmd, "without --model: ")
        cmd.add_argument("--iterations", type=_positive_int, default=200, metavar="N",
                         help="maximum NMF iterations (default: %(default)s)")
        _add_run_options(cmd)
        cmd.set_defaults(run=_run_features, check=_check_features, command_parser=cmd)

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
    """Run the command line; returns the exit status.

    Called from Python, it leaves SIGINT's handler as it found it (a batch stopped
    by Ctrl-C ignores SIGINT until the end, see :mod:`audionmf._batch`).
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return _main(argv)  # no batch here touches SIGINT (only the main thread can)
    before = signal.getsignal(signal.SIGINT)
    try:
        return _main(argv)
    finally:
        if signal.getsignal(signal.SIGINT) is not before and before is not None:
            signal.signal(signal.SIGINT, before)


def console():
    """The ``audionmf`` command and ``python -m audionmf``: exits with main's status.

    A batch stopped by Ctrl-C leaves SIGINT ignored (see :mod:`audionmf._batch`)
    until the process has exited: a further Ctrl-C during the exit, while worker
    processes are reaped, would print a traceback. SIGTERM does what Ctrl-C does,
    and the exit status is then 143.
    """
    from ._batch import INTERRUPTS

    terminated = []

    def on_sigterm(signum, frame):
        # What Ctrl-C does where SIGINT is Python's, whatever it is here (a job started
        # in the background ignores SIGINT): set the running batch's flag, or raise
        # KeyboardInterrupt; once, and not while an interrupted batch is being left.
        if terminated or INTERRUPTS["leaving"]:
            return
        terminated.append(signum)
        if INTERRUPTS["flag"] is not None:
            INTERRUPTS["flag"]["flag"] = True
        else:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        status = _main()
    finally:
        signal.signal(signal.SIGTERM, previous)
    sys.exit(EXIT_TERMINATED if terminated and status == EXIT_INTERRUPTED else status)


def _main(argv=None):
    try:
        parser = get_parser()
        args = parser.parse_args(argv)
        args.check(args.command_parser, args)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except KeyboardInterrupt:
        print("audionmf: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
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


def _check_analysis(sub, args):
    from ._validation import ParameterError
    from .spectrogram import STFTParams

    try:
        STFTParams(2048 if args.n_fft is None else args.n_fft, args.hop)
    except ParameterError as exc:
        sub.error(str(exc).replace("n_fft=", "--n-fft ").replace("hop_length=", "--hop "))


def _refuse_with_model(sub, args, options, what, flag="--model"):
    for option in options:
        if getattr(args, option) is not None:
            sub.error(f"--{option.replace('_', '-')} cannot be used with {flag}: the {what}")


def _check_separate(sub, args):
    """Usage errors that involve several options; exits 2 through ``sub.error``."""
    if not args.out:
        sub.error("-o: an empty folder name (use -o . for the current folder)")
    if args.model or args.two_stems:
        if args.model and args.two_stems:
            sub.error("--two-stems cannot be used with --model")
        if args.two_stems and args.free:
            sub.error("--free cannot be used with --two-stems")
        _refuse_with_model(sub, args, ("sources", "components", "group", "rhythm", "beta", "n_fft",
                                       "hop"),
                           "models decide the sources and the analysis" if args.model
                           else "drum templates decide the sources and the analysis",
                           flag="--model" if args.model else "--two-stems")
    else:
        if args.free:
            sub.error("--free needs --model")
        if args.group:
            _check_groups(sub, args)
        args.sources = 2 if args.sources is None else args.sources
        if args.components is not None and args.components < args.sources:
            sub.error(f"--components {args.components} is fewer than --sources {args.sources}")
        _check_analysis(sub, args)
    if args.scheduler is not None:
        import importlib.util

        if args.jobs != 1:
            sub.error("--jobs cannot be used with --scheduler: the cluster's workers run the files")
        if importlib.util.find_spec("distributed") is None:
            sub.error("--scheduler needs Dask's 'distributed' package: pip install 'audionmf[dask]'")
    args.inputs, found = _expand_inputs(args.inputs)
    own = set(_own_outputs(args, found))
    if own:
        args.inputs = [path for path in args.inputs if path not in own] or sub.error(
            f"the files found are this command's own outputs (under {args.out}): nothing to separate")
    stems = {}
    for path in args.inputs:
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in stems and os.path.abspath(stems[stem]) != os.path.abspath(path):
            sub.error(f"{stems[stem]} and {path} would both write to {os.path.join(args.out, stem)}")
        stems.setdefault(stem, path)


def _check_groups(sub, args):
    from ._validation import ParameterError
    from .grouping import labels_from_groups

    if args.sources is not None and args.sources != len(args.group):
        sub.error(f"--sources {args.sources} but {len(args.group)} --group options: one --group "
                  "per source")
    if args.rhythm is not None:
        sub.error("--rhythm cannot be used with --group: the groups are given")
    try:
        labels_from_groups(args.group, args.components)
    except ParameterError as exc:
        sub.error(f"--group: {exc}")
    args.sources, args.components = len(args.group), sum(map(len, args.group))


def _check_learn(sub, args):
    if not args.out.endswith(".npz"):
        sub.error(f"-o {args.out}: model files end in .npz")
    if args.pitch_range is not None and args.pitch_range > 24:
        sub.error(f"--pitch-range {args.pitch_range}: at most 24 semitones")
    _check_analysis(sub, args)


def _run_learn(args):
    from ._validation import AudioError, ParameterError
    from .models import LEARN_DEFAULTS, ModelError, SourceModel

    problem = _unusable_output_file(args.out, args.inputs)
    if problem:
        _report(f"{args.out}: {problem}")
        return EXIT_BAD_FILE
    options = {
        "n_components": args.components, "context": args.context, "sparsity": args.sparsity,
        "max_iter": args.iterations,
        "beta": args.beta, "n_fft": args.n_fft, "hop_length": args.hop,
        "semitones": None if args.pitch_range is None else range(-args.pitch_range, args.pitch_range + 1),
    }
    options = {k: v for k, v in options.items() if v is not None}
    iterations = options.get("max_iter", LEARN_DEFAULTS["max_iter"])  # for the progress bar
    try:
        model = SourceModel.learn(args.inputs, args.sr, name=args.name, random_state=args.seed,
                                  callback=_progress(args.name, iterations, args.quiet), **options)
        model.save(args.out)
    except (AudioError, ParameterError, ModelError) as exc:
        if args.debug:
            traceback.print_exc()
        _report(str(exc), about=args.name, known=args.inputs + [args.out])
        return EXIT_BAD_FILE
    if not args.quiet:
        print(f"{args.out}: {model.n_components} templates of {args.name!r} "
              f"({model.sr} Hz, n_fft {model.n_fft}, hop {model.hop_length})", file=sys.stderr)
    return EXIT_OK


def _run_separate(args):
    problem = _unusable_output_folder(args.out)
    if problem:
        _report(f"{args.out}: {problem}")
        return EXIT_BAD_FILE

    from ._validation import ParameterError
    from .models import ModelError, SourceModel, check_models

    try:
        args.models = [SourceModel.load(path) for path in args.model] or None
        if args.models:
            try:
                check_models(args.models)
            except ParameterError as exc:
                raise ModelError(f"{', '.join(args.model)}: {exc}") from None
    except ModelError as exc:
        if args.debug:
            traceback.print_exc()
        _report(str(exc))
        return EXIT_BAD_FILE

    inputs = list(args.inputs)
    if args.skip_existing:
        todo = [path for path in inputs if not _already_separated(path, args)]
        if not args.quiet and len(todo) < len(inputs):
            print(f"audionmf: {len(inputs) - len(todo)} of {len(inputs)} inputs already separated, "
                  "skipped", file=sys.stderr)
    else:
        todo = inputs
    task = _SeparateTask(args, protected=inputs + args.model)
    created = []
    if len(todo) > 1:
        # The shared output folder is made here, before any worker starts: a worker whose
        # file fails removes the folders it made, and must not find this one among them
        # (it could remove it while another worker is about to write into it).
        from .io import missing_folders

        created = missing_folders(args.out)
    try:
        if created:
            try:
                os.makedirs(args.out, exist_ok=True)
            except OSError as exc:  # (the folders it made before failing are removed below)
                _report(f"{args.out}: cannot create folder ({exc.strerror or exc})")
                return EXIT_BAD_FILE
        return _separate_all(task, todo, args)
    finally:
        if created:  # when no file was separated, nothing of ours stays behind
            from .io import remove_empty_folders

            remove_empty_folders(created)


def _separate_all(task, todo, args):
    """The batch of :func:`_run_separate`; returns the exit status."""
    from . import _batch

    failed = []
    started = time.time()
    try:
        if args.scheduler:
            results = _batch.run_on_cluster(task, todo, args.scheduler, args.quiet)
        else:
            results = _batch.run_local(task, todo, args.jobs, args.quiet)
        for path, written, error in results:
            if error is None:
                if not args.quiet:
                    print(f"{path} -> {written}", file=sys.stderr)
                continue
            failed.append(path)
            if args.debug and error[1]:
                print(error[1], file=sys.stderr, end="")
            _report(error[0], about=path)
    except _batch.ClusterError as exc:
        _report(str(exc))
        return EXIT_BAD_FILE
    except KeyboardInterrupt:
        # The files in progress left nothing behind (their writes were not committed);
        # worker processes may have finished some whose results never came back.
        done = [path for path in todo if _already_separated(path, args, since=started)]
        print(f"audionmf: interrupted; {len(done)} of {len(todo)} inputs were separated"
              + (f" ({', '.join(done)})" if done else ""), file=sys.stderr)
        return EXIT_INTERRUPTED
    if failed and len(todo) > 1:
        _report(f"{len(failed)} of {len(todo)} inputs failed: {', '.join(failed)}")
    return EXIT_BAD_FILE if failed else EXIT_OK


def _expand_inputs(items):
    """Files as given; folders to the audio files in them; glob patterns to their matches.

    A pattern that matches nothing stays as it is, to be reported as missing.
    Returns the paths, and the set of those found in folders or by patterns.
    """
    import glob

    from .io import AUDIO_EXTENSIONS

    paths, found = [], set()
    for item in items:
        if os.path.isdir(item):
            matches = sorted(os.path.join(item, name) for name in os.listdir(item)
                             if name.lower().endswith(AUDIO_EXTENSIONS) and not name.startswith(".")
                             and os.path.isfile(os.path.join(item, name)))
            paths.extend(matches or [item])  # an empty folder is reported as not audio
            found.update(matches)
        elif not os.path.exists(item) and glob.has_magic(item):
            matches = sorted(p for p in glob.glob(item, recursive=True) if os.path.isfile(p))
            paths.extend(matches or [item])
            found.update(matches)
        else:
            paths.append(item)
    unique = {}
    for path in paths:  # one entry per file, however it is spelled
        unique.setdefault(os.path.realpath(path), path)
    return list(unique.values()), found


def _own_outputs(args, found):
    """The inputs found in folders or by patterns that are outputs of this command,
    ``OUTDIR/<stem>/<source>.wav|flac``: an earlier run wrote them ('album/**/*.wav'
    with -o album/stems, run twice, would separate its own sources). That is, the
    files found in ``OUTDIR/<stem>/`` where ``<stem>`` is another input's, whatever
    the sources were called then, and those named as this run's sources."""
    if args.model:  # their names: the models are checked (and loaded again) later
        from .models import SourceModel

        try:
            names = [SourceModel.load(path).name for path in args.model]
        except Exception:  # reported when the models are loaded for good
            names = []
        names += ["residual"] if args.free else []
    else:
        names = _expected_names(args)
    names = {f"{name}.{fmt}" for name in names for fmt in ("wav", "flac")}
    folder = os.path.realpath(args.out)

    def in_output_folder(path):
        return os.path.dirname(os.path.dirname(os.path.realpath(path))) == folder

    stems = {os.path.splitext(os.path.basename(path))[0] for path in args.inputs
             if not (path in found and in_output_folder(path))}
    return [path for path in args.inputs if path in found and in_output_folder(path)
            and path.lower().endswith((".wav", ".flac"))
            and (os.path.basename(os.path.dirname(path)) in stems or os.path.basename(path) in names)]


def _identity(path):
    """(device, inode) of an existing file, or None: two paths to one file compare equal."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _expected_names(args):
    if args.two_stems:
        from .drums import TWO_STEMS

        return list(TWO_STEMS[args.two_stems])
    if getattr(args, "models", None):  # (loaded after the checks)
        return [m.name for m in args.models] + (["residual"] if args.free else [])
    return [f"source{i + 1}" for i in range(args.sources)]


def _already_separated(path, args, since=None):
    """Whether every output of ``path`` exists (and, with ``since``, was written since then)."""
    stem = os.path.splitext(os.path.basename(path))[0]
    files = [os.path.join(args.out, stem, f"{name}.{args.format}") for name in _expected_names(args)]
    if args.plot:
        files.append(os.path.join(args.out, stem, "separation.png"))
    return all(os.path.isfile(f) and (since is None or os.path.getmtime(f) >= since) for f in files)


class _SeparateTask:
    """One input to separate, as a picklable callable for worker processes."""

    FIELDS = ("out", "sources", "models", "free", "components", "group", "two_stems", "rhythm",
              "beta", "n_fft", "hop", "iterations", "seed", "format", "plot", "quiet")

    def __init__(self, args, protected):
        import types

        self.args = types.SimpleNamespace(**{f: getattr(args, f) for f in self.FIELDS})
        self.protected = {_identity(p) for p in protected} - {None}

    def __call__(self, path):
        """Returns (path, folder written, None) or (path, None, (message, traceback))."""
        from ._validation import AudioError, ParameterError

        from ._batch import WORKER, stopping

        WORKER["busy"] = True  # first: a SIGTERM from here on interrupts this file
        try:
            if stopping():
                return path, None, ("not started: interrupted", "")
            return path, _separate_one(path, self.args, self.protected), None
        except (AudioError, ParameterError) as exc:
            return path, None, (str(exc), traceback.format_exc())
        except KeyboardInterrupt:
            if not WORKER["in_worker"]:
                raise  # Ctrl-C in this very process: the caller reports it
            return path, None, ("interrupted; nothing written", "")
        finally:
            WORKER["busy"] = False


    def abandoned(self, path):
        """Remove what a worker that died on ``path`` left: its temporary files (only
        ours: hidden, named after an output, ending in .part), then its folder if empty."""
        import glob

        stem = os.path.splitext(os.path.basename(path))[0]
        folder = os.path.join(self.args.out, stem)
        names = [f"{name}.{self.args.format}" for name in _expected_names(self.args)] + ["separation.png"]
        for name in names:
            for leftover in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(name)}.*.part")):
                try:
                    os.remove(leftover)
                except OSError:
                    pass
        try:
            os.rmdir(folder)
        except OSError:  # holds other files, or was never made
            pass


def _check_features(sub, args):
    ext = os.path.splitext(args.out)[1].lower()
    allowed = FEATURE_FORMATS[args.command]
    if ext not in allowed:
        sub.error(f"-o {args.out}: the file name must end in {' or '.join(allowed)}")
    if args.model:
        _refuse_with_model(sub, args, ("components", "beta", "n_fft", "hop"),
                           "model decides the templates and the analysis")
    _check_analysis(sub, args)


def _run_features(args):
    from . import io
    from ._validation import AudioError, ParameterError
    from .features import decompose
    from .models import ModelError, SourceModel

    problem = _unusable_output_file(args.out, [args.input] + ([args.model] if args.model else []))
    if problem:
        _report(f"{args.out}: {problem}")
        return EXIT_BAD_FILE
    try:
        model = SourceModel.load(args.model) if args.model else None
        y, sr = io.load(args.input, sr=model.sr if model else None)
        dec = decompose(y, sr, n_components=args.components, beta=args.beta, n_fft=args.n_fft,
                        hop_length=args.hop, templates=model, max_iter=args.iterations,
                        random_state=args.seed,
                        callback=_progress(os.path.basename(args.input), args.iterations, args.quiet))
        if args.command == "decompose":
            dec.save(args.out)
        else:
            import numpy as np

            from . import plot
            from .spectrogram import stft

            V = (np.abs(stft(y, n_fft=dec.n_fft, hop_length=dec.hop_length, window=dec.window)) ** dec.power)
            _save_figure(plot.decomposition(dec, V.sum(axis=0) if V.ndim == 3 else V), args.out)
    except (AudioError, ParameterError, ModelError, OSError) as exc:
        if args.debug:
            traceback.print_exc()
        if isinstance(exc, OSError):
            message = f"{args.out}: cannot write ({exc.strerror or exc})"
        else:
            message = str(exc)
        _report(message, about=args.input, known=[args.out] + ([args.model] if args.model else []))
        return EXIT_BAD_FILE
    if not args.quiet:
        print(f"{args.input} -> {args.out} ({dec.n_components} components, {len(dec.times)} frames)",
              file=sys.stderr)
    return EXIT_OK


def _render_png(fig):
    import io as _bytes

    buffer = _bytes.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    return buffer.getvalue()


def _save_figure(fig, path):
    from .io import atomic_file

    with atomic_file(path) as handle:
        fig.savefig(handle, format=os.path.splitext(path)[1][1:].lower(), dpi=120)


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
        # Strict JSON has no Infinity: a score that is infinite (the SIR of a lone
        # source, which has no interference to measure) is written as null.
        print(json.dumps(_finite_or_null(result), indent=2, allow_nan=False))
    else:
        print(_score_table(result))
    return EXIT_OK


def _finite_or_null(value):
    """``value`` with every float that is not finite replaced by None, in nested dicts and lists."""
    if isinstance(value, dict):
        return {key: _finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


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
    from ._validation import AudioError
    from .separate import default_max_iter, separate_file

    stem = os.path.splitext(os.path.basename(path))[0]
    folder = os.path.join(args.out, stem)
    for name in _expected_names(args) + (["separation"] if args.plot else []):
        target = os.path.join(folder, f"{name}.{'png' if name == 'separation' else args.format}")
        if _identity(target) in protected:
            raise AudioError(f"{path}: output {target} is an input file; choose another -o")
    written = separate_file(
        path,
        folder,
        format=args.format,
        figure=_separation_png if args.plot else None,
        progress=_progress(f"{stem} (masks)", None, args.quiet, unit="frame"),
        n_sources=args.sources,
        models=args.models,
        free_components=args.free,
        n_components=args.components,
        groups=args.group,
        two_stems=args.two_stems,
        rhythm_weight=args.rhythm,
        beta=args.beta,
        n_fft=args.n_fft,
        hop_length=args.hop,
        max_iter=args.iterations,
        random_state=args.seed,
        callback=_progress(stem, args.iterations or default_max_iter(args.two_stems, bool(args.models),
                                                                      args.free), args.quiet),
    )
    return os.path.dirname(next(iter(written.values()))) + os.sep


def _separation_png(spectra, sr, hop_length, n_fft):
    from . import plot

    return _render_png(plot.source_spectrograms(spectra, sr, hop_length=hop_length, n_fft=n_fft))


def _progress(label, total, quiet, unit="it"):
    """A callback drawing a progress bar on stderr when it is a terminal.

    It is called as ``callback(count, loss)`` by the factorization (``total``
    given) or ``callback(count, total)`` by the block loop (``total`` None).
    """
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = None

    def callback(count, other):
        nonlocal bar
        size = total if total is not None else other
        if bar is None or count < bar.n:  # the first call, or a second fit starting over
            if bar is not None:
                bar.close()
            bar = tqdm(total=size, desc=label, unit=unit, leave=False, file=sys.stderr)
        bar.update(count - bar.n)
        if count >= size:
            bar.close()

    return callback


def _unusable_output_file(path, inputs):
    """Why a single output file cannot be written, or None. Checked before any work."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"folder {folder} does not exist"
    problem = _cannot_write_in(folder)
    if problem:
        return f"folder {folder} is not writable ({problem})"
    if os.path.isdir(path):
        return "is a folder"
    for source in inputs:
        if os.path.exists(path) and os.path.exists(source) and os.path.samefile(path, source):
            return f"is the input {source}; choose another -o"
    return None


def _unusable_output_folder(folder):
    """Why ``folder`` cannot hold results, or None. Checked before any work."""
    path = os.path.abspath(folder)
    if os.path.exists(path):
        if not os.path.isdir(path):
            return "exists and is not a folder"
        problem = _cannot_write_in(path)
        return f"folder is not writable ({problem})" if problem else None
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"cannot create folder: {parent} is a file"
    problem = _cannot_write_in(parent)
    return f"cannot create folder: {parent} is not writable ({problem})" if problem else None


def _cannot_write_in(folder):
    """Why no file can be created in ``folder``, or None: tried for real, since
    permission bits say nothing for root or on a read-only file system."""
    import tempfile

    try:
        fd, probe = tempfile.mkstemp(prefix=".audionmf-probe.", dir=folder)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    os.unlink(probe)
    return None


def _report(message, about=None, known=()):
    """One error line on stderr. With ``about``, the message is prefixed with it
    unless it already starts with that or another ``known`` file name."""
    if about is not None and not message.startswith((about, *known)):
        message = f"{about}: {message}"
    print(f"audionmf: error: {message}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())

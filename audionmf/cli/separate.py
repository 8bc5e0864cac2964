"""``audionmf separate``: its options follow from the modes, the batch runs the files."""
import argparse
import functools
import glob
import os
import sys
import time
import traceback
import types

from .. import _batch
from .._validation import AudioError, ParameterError
from ..io import AUDIO_EXTENSIONS, WRITE_FORMATS, atomic_file, missing_folders, remove_empty_folders
from ..models import ModelError, SourceModel, check_models
from ..modes import MODES, pick, two_stems_choices
from ..separate import separate_file
from ._common import (
    EXIT_BAD_FILE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    add_analysis_options,
    add_batch_options,
    add_run_options,
    check_analysis,
    component_list,
    decibels,
    feature_weight,
    file_name,
    nonnegative_int,
    positive_int,
    progress,
    render_png,
    report,
    seconds_span,
    unusable_output_folder,
)

SEPARATE_EPILOG = """\
output:
  OUTDIR/<input file stem>/<source>.wav, at the input's sample rate and channel
  count. Blind: source1 ... sourceN, the source whose model spectrogram holds
  the most energy first. With --model: the models' names (plus 'residual' with
  --free). With --two-stems drums: drums and
  no_drums; with --two-stems vocals: vocals and no_vocals (and, with
  --melody-out NAME, the melody as OUTDIR/<input file stem>/NAME). WAV files are 32-bit float, so the sources add up to the input
  exactly. Outputs already there are replaced once the new ones are complete
  (--skip-existing keeps them); an output that would replace an input is refused.

examples:
  audionmf separate song.flac                     two sources into separated/song/
  audionmf separate a.wav b.ogg -o stems --sources 3 --components 30
  audionmf separate speech.wav --beta is --n-fft 1024 --hop 256
  audionmf separate mix.wav --model speech.npz --model music.npz
  audionmf separate noisy.wav --model speech.npz --free 16   (speech + residual)
  audionmf separate song.flac --two-stems drums           (drums.wav and no_drums.wav)
  audionmf separate song.flac --two-stems vocals --melody-out melody.csv --plot
                                 (vocals.wav, no_vocals.wav, separated/song/melody.csv)
  audionmf separate song.flac --two-stems vocals --melody fixed.csv   (a melody given)
  audionmf plot song.wav -o song.png; audionmf separate song.wav --group 0-5,9 --group 6-8,10-15
                                                  (look at the 16 components, then group them)
  audionmf separate album/ --jobs 2 --skip-existing     (every audio file in album/)
  audionmf separate song.flac --report           (then open separated/song/report.html)
  audionmf separate 'archive/**/*.flac' --scheduler tcp://10.0.0.5:8786   (on a Dask cluster)
  audionmf evaluate truth/song separated/song --permutation   (score it)

exit status: 0 all inputs done, 1 some input or output failed (named on
stderr; the others are still processed), 2 bad usage, 130 interrupted (Ctrl-C),
143 terminated (SIGTERM); the file in progress then leaves nothing behind.
"""

#: How the command line reads each kind of mode option (:class:`audionmf.modes.Option`).
KINDS = {"count": positive_int, "count0": nonnegative_int, "weight": feature_weight,
         "components": component_list, "model": file_name, "audio": file_name, "span": seconds_span,
         "decibels": decibels, "flag": None,
         "path": file_name, "filename": str}
#: The options every mode takes, as the library names them, with their flags.
COMMON_FLAGS = {"two_stems": "--two-stems", "beta": "--beta", "n_fft": "--n-fft",
                "hop_length": "--hop", "max_iter": "--iterations"}
#: What a worker process needs of the arguments, besides the modes' options.
TASK_FIELDS = ("out", "two_stems", "beta", "n_fft", "hop", "iterations", "seed", "format", "plot",
               "report", "quiet", "model_paths")
#: The blind mode's options, which a report's rerun command replaces by its own
#: --components and --group.
BLIND_GROUPING = {option.name for option in MODES["blind"].options}
#: The report of each input, and the page of a batch that links them.
REPORT, INDEX = "report.html", "index.html"


def mode_options():
    """Every mode's options, in registry order."""
    return [option for mode in MODES.values() for option in mode.options]


def spell(name, value=None):
    """How the command line names a keyword of separate() in a message: ``--sources 3``."""
    flags = {**COMMON_FLAGS, **{option.name: option.flag for option in mode_options()}}
    flag = flags.get(name, name)
    return flag if value is None else f"{flag} {value}"


def add_parser(commands):
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
    add_mode_options(sep)
    choices = two_stems_choices()
    sep.add_argument("--two-stems", choices=choices, default=None, metavar="|".join(choices),
                     help="split into two stems, such as drums.wav and no_drums.wav, with "
                          "templates that ship with audionmf (no training data needed)")
    add_analysis_options(sep, "blind: ")
    sep.add_argument("--iterations", type=positive_int, default=None, metavar="N",
                     help="maximum NMF iterations (default: "
                          + "; ".join(_iterations_help(mode) for mode in MODES.values()) + ")")
    sep.add_argument("--format", choices=[extension[1:] for extension in WRITE_FORMATS], default="wav",
                     help="output file format (default: %(default)s)")
    sep.add_argument("--plot", action="store_true",
                     help="also draw the mixture and the sources to OUTDIR/<stem>/separation.png")
    sep.add_argument("--report", action="store_true",
                     help="also write OUTDIR/<stem>/report.html, a page to see and hear the "
                          "separation in a browser (offline): players, spectrograms, each "
                          "component of a blind separation and the command to regroup them; and "
                          "OUTDIR/index.html linking them, for several inputs")
    add_batch_options(sep, "separate")
    add_run_options(sep)
    sep.set_defaults(run=run_separate, check=check_separate, command_parser=sep,
                     model_paths={})  # (the model files' paths, once they are loaded)


def add_mode_options(parser, options=None, flags=None):
    """The ``options`` of modes (default: every mode's), as ``flags`` (name -> flags)
    spells them or as their own flag."""
    for option in mode_options() if options is None else options:
        spelled = (flags or {}).get(option.name, (option.flag,))
        if option.kind == "flag":  # (a switch: no value)
            parser.add_argument(*spelled, dest=option.name, action="store_true", help=option.help)
            continue
        parser.add_argument(*spelled, dest=option.name, type=KINDS[option.kind],
                            action="append" if option.repeat else "store",
                            default=None if option.repeat else option.default,
                            metavar=option.metavar, help=option.help)


def _iterations_help(mode):
    if mode.iterations_note is not None:
        return mode.iterations_note
    if mode.selected_by is None:
        return str(mode.default_max_iter)
    if mode.selected_by == "two_stems":
        return f"{mode.default_max_iter} with --two-stems {mode.two_stems}"
    return f"{mode.iterations({})} with {spell(mode.selected_by)}"


def _options(args):
    """The keywords of separate() that pick and configure the mode, from the arguments."""
    return {"two_stems": args.two_stems,
            **{option.name: getattr(args, option.name) for option in mode_options()}}


def check_separate(sub, args):
    """Usage errors that involve several options; exits 2 through ``sub.error``."""
    if not args.out:
        sub.error("-o: an empty folder name (use -o . for the current folder)")
    options = _options(args)
    try:
        mode = pick(options, spell)
        mode.check_options({o.name: options[o.name] for o in mode.options}, spell)
    except ParameterError as exc:
        sub.error(str(exc))
    if mode.decides is not None:
        for name in ("beta", "n_fft", "hop"):
            if getattr(args, name) is not None:
                sub.error(f"--{name.replace('_', '-')} cannot be used with "
                          f"{spell(mode.selected_by)}: {mode.decides}")
    else:
        check_analysis(sub, args)
    if args.scheduler is not None:
        import importlib.util

        if args.jobs != 1:
            sub.error("--jobs cannot be used with --scheduler: the cluster's workers run the files")
        if importlib.util.find_spec("distributed") is None:
            sub.error("--scheduler needs Dask's 'distributed' package: pip install 'audionmf[dask]'")
    args.inputs, found = _expand_inputs(args.inputs)
    given = [o for o in mode.options if o.kind == "path" and getattr(args, o.name) is not None]
    if given and len(args.inputs) > 1:
        sub.error(f"{given[0].flag} is one input's: give one input with it "
                  f"({len(args.inputs)} given)")
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


def _load_models(args):
    """The model files of the options loaded in their place (their paths kept in
    ``args.model_paths``, by option); raises ModelError."""
    args.model_paths = {}
    for option in mode_options():
        paths = getattr(args, option.name)
        if option.kind != "model" or not paths:
            continue
        args.model_paths[option.name] = list(paths)
        models = [SourceModel.load(path) for path in paths]
        try:
            check_models(models)
        except ParameterError as exc:
            raise ModelError(f"{', '.join(paths)}: {exc}") from None
        setattr(args, option.name, models)


def run_separate(args):
    problem = unusable_output_folder(args.out)
    if problem:
        report(f"{args.out}: {problem}")
        return EXIT_BAD_FILE

    try:
        _load_models(args)
    except ModelError as exc:
        if args.debug:
            traceback.print_exc()
        report(str(exc))
        return EXIT_BAD_FILE
    mode = pick(_options(args))
    for option in mode.options:  # the audio files it reads: once for the batch, not per input
        path = getattr(args, option.name)
        if option.kind != "audio" or path is None:
            continue
        try:  # (at one rate for all inputs: the messages give lengths in seconds)
            mode(44100, spell=spell, **{option.name: path})
        except (AudioError, ParameterError) as exc:
            if args.debug:
                traceback.print_exc()
            report(str(exc), about=path)
            return EXIT_BAD_FILE

    inputs = list(args.inputs)
    if args.skip_existing:
        todo = [path for path in inputs if not _already_separated(path, args)]
        if not args.quiet and len(todo) < len(inputs):
            print(f"audionmf: {len(inputs) - len(todo)} of {len(inputs)} inputs already separated, "
                  "skipped", file=sys.stderr)
    else:
        todo = inputs
    model_files = [path for paths in args.model_paths.values() for path in paths]
    # (files a mode reads, such as a noise sample or a melody, are inputs too)
    read = [getattr(args, o.name) for o in mode_options() if o.kind in ("audio", "path")]
    task = _SeparateTask(args, protected=inputs + model_files + [p for p in read if isinstance(p, str)])
    created = []
    if len(todo) > 1:
        # The shared output folder is made here, before any worker starts: a worker whose
        # file fails removes the folders it made, and must not find this one among them
        # (it could remove it while another worker is about to write into it).
        created = missing_folders(args.out)
    try:
        if created:
            try:
                os.makedirs(args.out, exist_ok=True)
            except OSError as exc:  # (the folders it made before failing are removed below)
                report(f"{args.out}: cannot create folder ({exc.strerror or exc})")
                return EXIT_BAD_FILE
        return _separate_all(task, todo, args)
    finally:
        if created:  # when no file was separated, nothing of ours stays behind
            remove_empty_folders(created)


def _separate_all(task, todo, args):
    """The batch of :func:`run_separate`; returns the exit status."""
    failed = []
    started = time.time()
    try:
        if args.scheduler:
            results = _batch.run_on_cluster(task, todo, args.scheduler, args.quiet)
        else:
            results = _batch.run_local(task, todo, args.jobs, args.quiet)
        outcomes = {}
        for path, written, error in results:
            outcomes[path] = error
            if error is None:
                if not args.quiet:
                    print(f"{path} -> {written}", file=sys.stderr)
                continue
            failed.append(path)
            if args.debug and error[1]:
                print(error[1], file=sys.stderr, end="")
            report(error[0], about=path)
    except _batch.ClusterError as exc:
        report(str(exc))
        return EXIT_BAD_FILE
    except KeyboardInterrupt:
        # The files in progress left nothing behind (their writes were not committed);
        # worker processes may have finished some whose results never came back.
        done = [path for path in todo if _already_separated(path, args, since=started)]
        verb = "denoised" if args.command == "denoise" else "separated"
        print(f"audionmf: interrupted; {len(done)} of {len(todo)} inputs were {verb}"
              + (f" ({', '.join(done)})" if done else ""), file=sys.stderr)
        return EXIT_INTERRUPTED
    if failed and len(todo) > 1:
        report(f"{len(failed)} of {len(todo)} inputs failed: {', '.join(failed)}")
    if args.report and len(args.inputs) > 1 and not _write_index(args, outcomes):
        return EXIT_BAD_FILE
    return EXIT_BAD_FILE if failed else EXIT_OK


def _write_index(args, outcomes):
    """OUTDIR/index.html, linking every input's report (those skipped as done too);
    False, with the error reported, if it cannot be written."""
    from ..report import index_page

    entries = []
    for path in args.inputs:
        error = outcomes.get(path)
        entries.append((path, _report_path(path, args), error[0] if error else None))
    target = os.path.join(args.out, INDEX)
    try:
        os.makedirs(args.out, exist_ok=True)
        with atomic_file(target) as handle:
            handle.write(index_page(entries, args.out))
    except OSError as exc:
        report(f"{target}: cannot write ({exc.strerror or exc})")
        return False
    if not args.quiet:
        print(f"report of the batch: {target}", file=sys.stderr)
    return True


def _report_path(path, args):
    return os.path.join(args.out, os.path.splitext(os.path.basename(path))[0], REPORT)


def _expand_inputs(items):
    """Files as given; folders to the audio files in them; glob patterns to their matches.

    A pattern that matches nothing stays as it is, to be reported as missing.
    Returns the paths, and the set of those found in folders or by patterns.
    """
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
    if not found:  # (inputs named one by one are taken as they are: no model to load)
        return []
    try:  # the models' names: they are checked (and loaded again) later
        loaded = types.SimpleNamespace(**vars(args))
        _load_models(loaded)
        names = _expected_names(loaded)
    except Exception:  # reported when the models are loaded for good
        names = []
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
    """The sources' names (the models loaded, where the mode has models)."""
    options = _options(args)
    return pick(options).source_names(options)


def _outputs(path, args, every=False):
    """The files the separation of ``path`` writes: its sources, and the picture and the
    report where asked for (``every``: whether asked for or not)."""
    folder = os.path.join(args.out, os.path.splitext(os.path.basename(path))[0])
    names = [f"{name}.{args.format}" for name in _expected_names(args)]
    options = _options(args)
    names += pick(options).file_names(options)
    names += ["separation.png"] if args.plot or every else []
    names += [REPORT] if args.report or every else []
    return [os.path.join(folder, name) for name in names]


def _already_separated(path, args, since=None):
    """Whether every output of ``path`` exists (and, with ``since``, was written since then);
    never for a folder (one with no audio files in it, refused when it comes up)."""
    if os.path.isdir(path):
        return False
    files = _outputs(path, args)
    return all(os.path.isfile(f) and (since is None or os.path.getmtime(f) >= since) for f in files)


class _SeparateTask:
    """One input to separate, as a picklable callable for worker processes."""

    def __init__(self, args, protected):
        fields = TASK_FIELDS + tuple(option.name for option in mode_options())
        self.args = types.SimpleNamespace(**{f: getattr(args, f) for f in fields})
        self.protected = {_identity(p) for p in protected} - {None}

    def __call__(self, path):
        """Returns (path, folder written, None) or (path, None, (message, traceback))."""
        WORKER = _batch.WORKER
        WORKER["busy"] = True  # first: a SIGTERM from here on interrupts this file
        try:
            if _batch.stopping():
                return path, None, ("not started: interrupted", "")
            return path, _separate_one(path, self.args, self.protected), None
        except (AudioError, ParameterError) as exc:
            return path, None, (str(exc), traceback.format_exc())
        except KeyboardInterrupt:
            if not WORKER["in_worker"]:
                raise  # Ctrl-C in this very process: the caller reports it
            return path, None, ("interrupted; nothing written", "")
        except Exception as exc:  # a bug, or the machine (memory): this file fails, not the batch
            if _batch.stopping() or _batch.INTERRUPTS["terminated"]:
                # raised while the run was being stopped: the stop's doing (a KeyboardInterrupt
                # that lands inside a lock's release comes out as a RuntimeError)
                if not WORKER["in_worker"]:
                    raise KeyboardInterrupt from exc
                return path, None, ("interrupted; nothing written", "")
            return path, None, (f"internal error: {type(exc).__name__}: {exc} (run with --debug "
                                "for the traceback)", traceback.format_exc())
        finally:
            WORKER["busy"] = False

    def abandoned(self, path):
        """Remove what a worker that died on ``path`` left: its temporary files (only
        ours: hidden, named after an output, ending in .part), then its folder if empty."""
        outputs = _outputs(path, self.args, every=True)
        folder = os.path.dirname(outputs[0])
        for name in map(os.path.basename, outputs):
            for leftover in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(name)}.*.part")):
                try:
                    os.remove(leftover)
                except OSError:
                    pass
        try:
            os.rmdir(folder)
        except OSError:  # holds other files, or was never made
            pass


def _separate_one(path, args, protected):
    """Separate one file; returns the folder written. Nothing is left on failure."""
    if os.path.isdir(path):  # (a folder with audio files was replaced by them)
        raise AudioError(f"{path}: a folder with no audio files in it (files ending in "
                         f"{', '.join(AUDIO_EXTENSIONS)})")
    targets = _outputs(path, args)
    folder = os.path.dirname(targets[0])
    stem = os.path.basename(folder)
    for target in targets:
        if _identity(target) in protected:
            raise AudioError(f"{path}: output {target} is an input file; choose another -o")
    options = _options(args)
    iterations = args.iterations or pick(options).iterations(options)
    written = separate_file(
        path,
        folder,
        format=args.format,
        figure=_separation_png if args.plot else None,
        report=_report_maker(path, args) if args.report else None,
        progress=progress(f"{stem} (masks)", None, args.quiet, unit="frame"),
        beta=args.beta,
        n_fft=args.n_fft,
        hop_length=args.hop,
        max_iter=args.iterations,
        random_state=args.seed,
        callback=progress(stem, iterations, args.quiet),
        spell=spell,
        **options,
    )
    return os.path.dirname(next(iter(written.values()))) + os.sep


def _report_maker(path, args):
    """The ``report`` callable of separate_file for this input: its page, with the
    command that reruns it (the report adds --components and --group)."""
    from ..report import group_ranges, separation_report

    def spelled(value):
        return f"{value:g}" if isinstance(value, float) else str(value)

    command = ["audionmf", "separate", path, "-o", args.out]
    for flag, value in (("--two-stems", args.two_stems), ("--beta", args.beta), ("--n-fft", args.n_fft),
                        ("--hop", args.hop), ("--iterations", args.iterations)):
        if value is not None:
            command += [flag, spelled(value)]
    grouping = []  # the blind mode's: the report writes its own --components and --group
    for option in mode_options():
        value = args.model_paths.get(option.name) if option.kind == "model" else getattr(args, option.name)
        if not option.given(value):
            continue
        values = value if option.repeat else [value]
        if option.kind == "flag":
            command.append(option.flag)
            continue
        if option.kind == "span":
            values = [":".join(f"{v:g}" for v in span) for span in values]
        if option.kind == "components":
            values = [group_ranges(v) for v in values]
        words = [word for v in values for word in (option.flag, spelled(v))]
        if option.name in BLIND_GROUPING:
            grouping += words
        else:
            command += words
    command += ["--seed", str(args.seed)] + (["--format", args.format] if args.format != "wav" else [])
    command += (["--plot"] if args.plot else []) + ["--report"]
    return functools.partial(separation_report, command=command, grouping=grouping,
                             parameters={"seed": args.seed})


def _separation_png(spectra, sr, hop_length, n_fft, **overlays):
    from .. import plot  # (matplotlib: imported where a picture is asked for)

    return render_png(plot.source_spectrograms(spectra, sr, hop_length=hop_length, n_fft=n_fft,
                                               **overlays))

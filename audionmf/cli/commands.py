"""``audionmf learn``, ``decompose``, ``plot`` and ``evaluate``."""
import argparse
import json
import math
import os
import sys
import traceback

import numpy as np

from .. import io
from .._validation import MAX_COMPONENTS, MAX_SR, AudioError, ParameterError
from ..evaluate import evaluate_folders, score_columns
from ..features import decompose
from ..io import atomic_file
from ..models import LEARN_DEFAULTS, LEARN_FRAME, MAX_FITS, MAX_LEARN_ITER, ModelError, SourceModel, check_name
from ..spectrogram import MAX_CONTEXT, stft
from ._common import (
    EXIT_BAD_FILE,
    EXIT_OK,
    add_analysis_options,
    add_run_options,
    check_analysis,
    file_name,
    nonnegative_float,
    nonnegative_int,
    number,
    positive_int,
    progress,
    refuse_with_model,
    report,
    save_figure,
    unusable_output_file,
)

EVALUATE_EPILOG = """\
examples:
  audionmf evaluate truth/song separated/song --permutation
  audionmf evaluate truth/song separated/song --json > scores.json
  audionmf evaluate truth/song separated/song --report   (and separated/song/report_scores.html)

exit status: 0 scored, 1 a folder or file cannot be used (missing, unreadable,
silent, no names in common, different sample rates), 2 bad usage.
"""


LEARN_EPILOG = """\
The model file holds the templates and the analysis they belong to (sample
rate, STFT, divergence, spectrogram power); 'audionmf separate --model' uses
that analysis. Frames more than 40 dB below the loudest are ignored. Each
example is also learned from with its spectrogram shifted up and down by up to
--pitch-range semitones (default 1). The templates are those of --fits
factorizations from different random starts (default 2, each of --components
templates); 'separate' fits each one's activations on its own and averages
the masks. An existing MODEL.npz is replaced, only once the new model is
complete (it is written to a temporary file, then renamed: a failure or an
interruption leaves the old one as it was); an example is never overwritten.

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



def add_parsers(commands):
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
    learn.add_argument("--components", type=number(int, 1, "a whole number", maximum=MAX_COMPONENTS), default=None, metavar="K",
                       help=f"number of templates of each factorization (default: {LEARN_DEFAULTS['n_components']})")
    learn.add_argument("--fits", type=number(int, 1, "a whole number", maximum=MAX_FITS), default=None,
                       metavar="N", help="factorizations from different random starts, each of K "
                       f"templates (default: {LEARN_DEFAULTS['fits']})")
    add_analysis_options(learn, "", n_fft_default="139 ms: 3072 at 22.05 kHz, 6144 at 44.1 kHz")
    learn.add_argument("--context", type=number(int, 0, "a whole number", maximum=MAX_CONTEXT), default=None, metavar="C",
                       help="frames of context on each side of a template, so templates follow "
                            f"how a sound evolves (default: {LEARN_DEFAULTS['context']})")
    learn.add_argument("--pitch-range", type=nonnegative_int, default=None, metavar="N",
                       help="also learn from the examples shifted by -N .. N semitones, so the "
                            "model knows notes near the ones they play; 0 for none "
                            f"(default: {int(max(LEARN_DEFAULTS['semitones']))})")
    learn.add_argument("--sparsity", type=nonnegative_float, default=None, metavar="S",
                       help=f"L1 penalty on activations while learning (default: {LEARN_DEFAULTS['sparsity']})")
    learn.add_argument("--iterations", type=number(int, 1, "a whole number", maximum=MAX_LEARN_ITER), default=None, metavar="N",
                       help=f"NMF iterations of each factorization (default: {LEARN_DEFAULTS['max_iter']})")
    learn.add_argument("--sr", type=number(int, 1, "a whole number", maximum=MAX_SR), default=None, metavar="HZ",
                       help="sample rate of the model (default: the first file's)")
    add_run_options(learn)
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
        cmd.add_argument("--model", type=file_name, default=None, metavar="MODEL.npz",
                         help="use this model's templates and compute activations only")
        cmd.add_argument("--components", type=number(int, 1, "a whole number", maximum=MAX_COMPONENTS), default=None, metavar="K",
                         help="number of templates without --model (default: 16)")
        add_analysis_options(cmd, "without --model: ")
        cmd.add_argument("--iterations", type=positive_int, default=200, metavar="N",
                         help="maximum NMF iterations (default: %(default)s)")
        add_run_options(cmd)
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
    ev.add_argument("--report", action="store_true",
                    help="also write the scores as a web page, ESTIMATE_DIR/report_scores.html "
                         "(beside the report.html of 'audionmf separate --report', which it links)")
    ev.add_argument("--debug", action="store_true", help="show the traceback of errors")
    ev.set_defaults(run=_run_evaluate, check=lambda sub, args: None, command_parser=ev)


def _check_learn(sub, args):
    try:
        check_name(args.name)
    except ParameterError as exc:
        sub.error(f"NAME: {exc}")
    if not args.out.endswith(".npz"):
        sub.error(f"-o {args.out}: model files end in .npz")
    if args.pitch_range is not None and args.pitch_range > 24:
        sub.error(f"--pitch-range {args.pitch_range}: at most 24 semitones")
    check_analysis(sub, args, n_fft_default=LEARN_FRAME[1])


def _run_learn(args):
    problem = unusable_output_file(args.out, args.inputs)
    if problem:
        report(f"{args.out}: {problem}")
        return EXIT_BAD_FILE
    options = {
        "n_components": args.components, "fits": args.fits, "context": args.context,
        "sparsity": args.sparsity,
        "max_iter": args.iterations,
        "beta": args.beta, "n_fft": args.n_fft, "hop_length": args.hop,
        "semitones": None if args.pitch_range is None else range(-args.pitch_range, args.pitch_range + 1),
    }
    options = {k: v for k, v in options.items() if v is not None}
    iterations = options.get("max_iter", LEARN_DEFAULTS["max_iter"])  # for the progress bar
    try:
        model = SourceModel.learn(args.inputs, args.sr, name=args.name, random_state=args.seed,
                                  callback=progress(args.name, iterations, args.quiet), **options)
        model.save(args.out)
    except (AudioError, ParameterError, ModelError) as exc:
        if args.debug:
            traceback.print_exc()
        report(str(exc), about=args.name, known=args.inputs + [args.out])
        return EXIT_BAD_FILE
    if not args.quiet:
        fits = f" ({model.fits} factorizations)" if model.fits > 1 else ""
        print(f"{args.out}: {model.n_components} templates of {args.name!r}{fits} "
              f"({model.sr} Hz, n_fft {model.n_fft}, hop {model.hop_length})", file=sys.stderr)
    return EXIT_OK


def _check_features(sub, args):
    ext = os.path.splitext(args.out)[1].lower()
    allowed = FEATURE_FORMATS[args.command]
    if ext not in allowed:
        sub.error(f"-o {args.out}: the file name must end in {' or '.join(allowed)}")
    if args.model:
        refuse_with_model(sub, args, ("components", "beta", "n_fft", "hop"),
                           "model decides the templates and the analysis")
    check_analysis(sub, args)


def _run_features(args):
    problem = unusable_output_file(args.out, [args.input] + ([args.model] if args.model else []))
    if problem:
        report(f"{args.out}: {problem}")
        return EXIT_BAD_FILE
    try:
        model = SourceModel.load(args.model) if args.model else None
        y, sr = io.load(args.input, sr=model.sr if model else None)
        dec = decompose(y, sr, n_components=args.components, beta=args.beta, n_fft=args.n_fft,
                        hop_length=args.hop, templates=model, max_iter=args.iterations,
                        random_state=args.seed,
                        callback=progress(os.path.basename(args.input), args.iterations, args.quiet))
        if args.command == "decompose":
            dec.save(args.out)
        else:
            from .. import plot  # (matplotlib: imported where a picture is asked for)

            V = (np.abs(stft(y, n_fft=dec.n_fft, hop_length=dec.hop_length, window=dec.window)) ** dec.power)
            save_figure(plot.decomposition(dec, V.sum(axis=0) if V.ndim == 3 else V), args.out)
    except (AudioError, ParameterError, ModelError, OSError) as exc:
        if args.debug:
            traceback.print_exc()
        if isinstance(exc, OSError):
            message = f"{args.out}: cannot write ({exc.strerror or exc})"
        else:
            message = str(exc)
        report(message, about=args.input, known=[args.out] + ([args.model] if args.model else []))
        return EXIT_BAD_FILE
    if not args.quiet:
        print(f"{args.input} -> {args.out} ({dec.n_components} components, {len(dec.times)} frames)",
              file=sys.stderr)
    return EXIT_OK


def _run_evaluate(args):
    try:
        result = evaluate_folders(args.reference_dir, args.estimate_dir, permutation=args.permutation)
    except (AudioError, ParameterError) as exc:
        if args.debug:
            traceback.print_exc()
        message = str(exc)
        if args.reference_dir not in message and args.estimate_dir not in message:
            message = f"{args.reference_dir} vs {args.estimate_dir}: {message}"
        report(message)
        return EXIT_BAD_FILE
    if args.report:
        from ..report import SCORES_NAME, scores_page

        target = os.path.join(args.estimate_dir, SCORES_NAME)
        try:
            with atomic_file(target) as handle:
                handle.write(scores_page(result, args.reference_dir, args.estimate_dir))
        except OSError as exc:
            report(f"{target}: cannot write ({exc.strerror or exc})")
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
    columns = score_columns(result)
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



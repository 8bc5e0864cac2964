"""What the commands share: the parser's types, one-line errors, progress bars, output checks."""
import argparse
import io
import math
import os
import sys
import tempfile

from .._validation import MAX_COMPONENTS, ParameterError, beta_to_float
from ..grouping import MAX_WEIGHT
from ..io import atomic_file
from ..spectrogram import STFTParams

EXIT_OK, EXIT_BAD_FILE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr, exit 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def add_run_options(parser):
    """--seed, --quiet and --debug, which every factorizing command takes."""
    parser.add_argument("--seed", type=nonnegative_int, default=0, metavar="N",
                        help="random seed; same seed, same result (default: %(default)s)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    parser.add_argument("--debug", action="store_true", help="show the traceback of errors")


def add_batch_options(parser, verb):
    """--jobs, --skip-existing and --scheduler, of the commands that ``verb`` (separate,
    denoise) a batch of files."""
    parser.add_argument("--jobs", type=positive_int, default=1, metavar="N",
                        help=f"{verb} N files at once, in separate processes (default: 1)")
    parser.add_argument("--skip-existing", action="store_true",
                        help="skip inputs whose output files all exist (resume a batch)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="send the files to the workers of a Dask distributed cluster, such as "
                             "tcp://10.0.0.5:8786 (needs 'pip install audionmf[dask]'; the workers "
                             "must see the same paths)")


def add_analysis_options(parser, prefix, n_fft_default="2048"):
    parser.add_argument("--beta", type=beta, default=None, metavar="BETA",
                        help=f"{prefix}divergence: kl, is, euclidean or a number (default: kl)")
    parser.add_argument("--n-fft", type=positive_int, default=None, metavar="N",
                        help=f"{prefix}STFT frame length in samples (default: {n_fft_default})")
    parser.add_argument("--hop", type=positive_int, default=None, metavar="N",
                        help=f"{prefix}STFT hop in samples (default: n-fft / 4)")


def number(convert, minimum, what, maximum=None):
    """An argparse type: ``convert(text)``, finite, at least ``minimum`` (and at most ``maximum``)."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected {what}, a finite one, got {text}")
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:g}, got {text}")
        return value

    return parse


def component_list(text):
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
        if last >= MAX_COMPONENTS:  # (before a range of a billion numbers is built)
            raise argparse.ArgumentTypeError(
                f"component {last} in {text!r}: components are numbered 0 to {MAX_COMPONENTS - 1} at most")
        indices.extend(range(first, last + 1))
    return indices


def file_name(text):
    """An argparse type: a file name, not empty (an empty --model was ignored or failed late)."""
    if not text:
        raise argparse.ArgumentTypeError("expected a file name, got ''")
    return text


def seconds_span(text):
    """An argparse type: 'START:END' in seconds -> (start, end)."""
    from ..modes.denoise import parse_span

    try:
        return parse_span(text, "")
    except ParameterError as exc:
        raise argparse.ArgumentTypeError(str(exc).lstrip(": ")) from None


def decibels(text):
    """An argparse type: a positive number of dB."""
    value = number(float, 0, "a number of dB")(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 dB, got {text}")
    return value


positive_int = number(int, 1, "a whole number")
nonnegative_int = number(int, 0, "a whole number")
nonnegative_float = number(float, 0, "a number")
feature_weight = number(float, 0, "a number", maximum=MAX_WEIGHT)


def beta(text):
    try:
        return beta_to_float(text)
    except ParameterError as exc:
        try:
            float(text)
        except ValueError:  # not a name nor a number
            raise argparse.ArgumentTypeError(
                f"expected kl, is, euclidean or a number, got {text!r}") from None
        raise argparse.ArgumentTypeError(str(exc)) from None  # a number out of range


def check_analysis(sub, args, n_fft_default=2048):
    try:
        STFTParams(n_fft_default if args.n_fft is None else args.n_fft, args.hop)
    except ParameterError as exc:
        sub.error(str(exc).replace("n_fft=", "--n-fft ").replace("hop_length=", "--hop "))


def refuse_with_model(sub, args, options, what, flag="--model"):
    for option in options:
        if getattr(args, option) is not None:
            sub.error(f"--{option.replace('_', '-')} cannot be used with {flag}: the {what}")


def render_png(fig):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    return buffer.getvalue()


def save_figure(fig, path):
    with atomic_file(path) as handle:
        fig.savefig(handle, format=os.path.splitext(path)[1][1:].lower(), dpi=120)


def progress(label, total, quiet, unit="it"):
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


def unusable_output_file(path, inputs):
    """Why a single output file cannot be written, or None. Checked before any work."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"folder {folder} does not exist"
    problem = cannot_write_in(folder)
    if problem:
        return f"folder {folder} is not writable ({problem})"
    if os.path.isdir(path):
        return "is a folder"
    for source in inputs:
        if os.path.exists(path) and os.path.exists(source) and os.path.samefile(path, source):
            return f"is the input {source}; choose another -o"
    return None


def unusable_output_folder(folder):
    """Why ``folder`` cannot hold results, or None. Checked before any work."""
    path = os.path.abspath(folder)
    if os.path.exists(path):
        if not os.path.isdir(path):
            return "exists and is not a folder"
        problem = cannot_write_in(path)
        return f"folder is not writable ({problem})" if problem else None
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"cannot create folder: {parent} is a file"
    problem = cannot_write_in(parent)
    return f"cannot create folder: {parent} is not writable ({problem})" if problem else None


def cannot_write_in(folder):
    """Why no file can be created in ``folder``, or None: tried for real, since
    permission bits say nothing for root or on a read-only file system."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".audionmf-probe.", dir=folder)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    os.unlink(probe)
    return None


def report(message, about=None, known=()):
    """One error line on stderr. With ``about``, the message is prefixed with it
    unless it already starts with that or another ``known`` file name."""
    if about is not None and not message.startswith((about, *known)):
        message = f"{about}: {message}"
    print(f"audionmf: error: {message}", file=sys.stderr)

"""The ``audionmf`` command line.

Exit status: 0 success; 1 an input or output file could not be used (each
failure is one line on stderr naming the file); 2 bad usage (unknown option,
bad value); 130 interrupted (Ctrl-C); 143 terminated (SIGTERM, as ``kill`` and
``timeout`` send), which stops the work and cleans up as Ctrl-C does.
"""
import argparse
import signal
import sys
import threading

from .._batch import INTERRUPTS
from .._version import __version__
from . import commands, denoise, separate
from ._common import EXIT_BAD_FILE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, Parser

__all__ = ["get_parser", "main", "console", "EXIT_OK", "EXIT_BAD_FILE", "EXIT_USAGE",
           "EXIT_INTERRUPTED", "EXIT_TERMINATED"]

EXIT_TERMINATED = 128 + signal.SIGTERM

DESCRIPTION = """\
Separate audio into sources with non-negative matrix factorization (NMF).

The spectrogram of each input is factorized as V ~= W H (spectral templates W,
activations H); the components are grouped into sources, blindly by the timbre
of their templates or by source models learned from examples ('audionmf learn');
soft masks split the mixture, so the sources sum back to the input.
"""


def get_parser():
    """The argument parser of the ``audionmf`` command."""
    parser = Parser(
        prog="audionmf",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"audionmf {__version__}")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    subcommands.required = True
    separate.add_parser(subcommands)
    denoise.add_parser(subcommands)
    commands.add_parsers(subcommands)
    return parser


def main(argv=None):
    """Run the command line; returns the exit status.

    Called from Python, it leaves SIGINT's handler as it found it (a batch stopped
    by Ctrl-C ignores SIGINT until the end, see :mod:`audionmf._batch`).
    """
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
    terminated = []
    INTERRUPTS["terminated"] = False

    def on_sigterm(signum, frame):
        # What Ctrl-C does where SIGINT is Python's, whatever it is here (a job started
        # in the background ignores SIGINT): set the running batch's flag, or raise
        # KeyboardInterrupt; once, and not while an interrupted batch is being left.
        if terminated or INTERRUPTS["leaving"]:
            return
        terminated.append(signum)
        INTERRUPTS["terminated"] = True
        if INTERRUPTS["flag"] is not None:
            INTERRUPTS["flag"]["flag"] = True
        else:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        status = _main()
    finally:
        signal.signal(signal.SIGTERM, previous)
    # CPython marks a KeyboardInterrupt raised in code that exec() or eval() ran from a
    # string (a namedtuple or a dataclass made as a module imports) as unhandled, caught
    # or not, and `python -m` then ends by SIGINT whatever sys.exit says (the mark of
    # bpo-1054041, _Py_UnhandledKeyboardInterrupt). exec() of a string clears it.
    exec("")
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

"""``audionmf denoise``: ``separate --two-stems noise`` under its own name and defaults.

The options are the denoise mode's (:class:`audionmf.modes.denoise.Denoise`); the
batch, the checks, the output names and the atomic writes are ``separate``'s.
"""
import argparse

from ..modes import MODES
from ..modes.denoise import FRAME_SECONDS, denoise_n_fft
from . import separate
from ._common import add_batch_options, add_run_options, positive_int

DENOISE_EPILOG = """\
output:
  OUTDIR/<input file stem>/clean.wav and noise.wav, at the input's sample rate
  and channel count; 32-bit float WAV, so clean + noise is the input exactly.
  With --reduction, noise.wav holds what was removed. Outputs already there are
  replaced once the new ones are complete (--skip-existing keeps them); an output
  that would replace an input (a noise sample) is refused.

noise profile (what the noise sounds like alone), one of:
  --noise-sample NOISE.wav   a recording of the noise alone (any rate: resampled)
  --noise-from START:END     a noise-only stretch of the input, in seconds
  (neither)                  the input's quietest stretches: the quarter of bands
                             that rise most above their quietest level are
                             averaged per frame, smoothed over 0.25 s, and the
                             15% of frames lowest on that score are the noise;
                             where they are not at least 3 dB under the louder
                             frame (speech with no pause, or noise alone), or
                             the pauses are digital silence (a clean recording),
                             the command stops and asks for one of the above.

examples:
  audionmf denoise talk.wav                           denoised/talk/clean.wav, noise.wav
  audionmf denoise talk.wav --noise-from 0:1.5        (the first 1.5 s are noise alone)
  audionmf denoise interview.flac --noise-sample room_tone.wav --reduction 12
  audionmf denoise lectures/ --jobs 2 --skip-existing
  audionmf denoise field.wav --stationary             (the noise does not change)
  audionmf denoise talk.wav --model speech.npz        (speech templates from 'audionmf learn')

exit status: 0 all inputs done, 1 some input or output failed (named on
stderr; the others are still processed), 2 bad usage, 130 interrupted (Ctrl-C),
143 terminated (SIGTERM); the file in progress then leaves nothing behind.
"""

#: The command line's names for the denoise mode's options (besides its own flags).
FLAGS = {"speech_models": ("--model", "--speech-model")}


def add_parser(commands):
    mode = MODES["denoise"]
    cmd = commands.add_parser(
        "denoise",
        help="remove background noise from speech recordings (clean.wav + noise.wav)",
        description="Remove background noise (hum, fans, traffic, rain, a cafe) from each INPUT, "
                    "a recorded voice: semi-supervised NMF, noise templates from a noise profile, "
                    "the speech as what they cannot explain.",
        epilog=DENOISE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument("inputs", nargs="+", metavar="INPUT",
                     help="audio files, folders of them, or glob patterns (quoted)")
    cmd.add_argument("-o", "--out", default="denoised", metavar="OUTDIR",
                     help="folder for the results (default: %(default)s)")
    for option in mode.options:  # (their help without separate's "with --two-stems noise: ")
        separate.add_mode_options(cmd, [_own_help(option)], FLAGS)
    cmd.add_argument("--n-fft", type=positive_int, default=None, metavar="N",
                     help=f"STFT frame length in samples (default: about {FRAME_SECONDS * 1000:.0f} ms, "
                          f"{denoise_n_fft(22050)} at 22.05 kHz, {denoise_n_fft(44100)} at 44.1 kHz)")
    cmd.add_argument("--hop", type=positive_int, default=None, metavar="N",
                     help="STFT hop in samples (default: n-fft / 2)")
    cmd.add_argument("--iterations", type=positive_int, default=None, metavar="N",
                     help=f"maximum NMF iterations (default: {mode.default_max_iter})")
    cmd.add_argument("--format", choices=[ext[1:] for ext in separate.WRITE_FORMATS], default="wav",
                     help="output file format (default: %(default)s)")
    add_batch_options(cmd, "denoise")
    add_run_options(cmd)
    others = {o.name: (None if o.repeat else o.default) for o in separate.mode_options()
              if o not in mode.options}
    cmd.set_defaults(run=separate.run_separate, check=check_denoise, command_parser=cmd, model_paths={},
                     two_stems=mode.two_stems, beta=None, plot=False, report=False, **others)


def _own_help(option):
    import dataclasses

    return dataclasses.replace(option, help=option.help.replace("with --two-stems noise: ", ""))


def check_denoise(sub, args):
    # Without --n-fft the frame follows each file's rate, so a --hop is checked per file.
    hop = args.hop
    if args.n_fft is None:
        args.hop = None
    try:
        separate.check_separate(sub, args)
    finally:
        args.hop = hop

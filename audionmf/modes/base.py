"""The protocol every way of separating follows, and what the modes share.

A mode turns options into an analysis, source names and a factorization, and
a block of activations into masks; the block loop (:mod:`audionmf._blocks`)
does the rest (the spectrogram of the whole signal or of its excerpts, blocks,
overlap-add, the round-off shared so that the sources sum to the input) and
knows no mode. See ``docs/architecture.md`` for how to write a new one.
"""
from dataclasses import dataclass

import numpy as np

from .._validation import ParameterError, check_nonnegative_real, check_positive_int
from ..limits import check_limits
from ..masks import wiener_masks
from ..nmf import nmf

__all__ = ["Mode", "Option", "Fitted", "keyword"]


@dataclass(frozen=True)
class Option:
    """A keyword of :func:`audionmf.separate` that one mode owns, and its command-line form.

    Attributes
    ----------
    name : str
        The keyword.
    flag : str
        The command-line option (``--sources``).
    kind : str
        How the command line reads it: ``"count"`` (a whole number >= 1),
        ``"count0"`` (>= 0), ``"weight"`` (a real number in [0, 1000]),
        ``"components"`` (component numbers such as ``0-2,7``), ``"model"``
        (a model file), ``"audio"`` (an audio file), ``"span"`` (``START:END``
        in seconds), ``"decibels"`` (a positive number of dB), ``"flag"`` (a
        switch, no value), ``"path"`` (a file the mode reads, one input's: refused
        with several inputs) or ``"filename"`` (a file the mode writes in each
        input's output folder).
    help : str
    metavar : str
    repeat : bool
        Given once per source (``--group``, ``--model``).
    default : object
        The value that means "not given".
    """

    name: str
    flag: str
    kind: str
    help: str
    metavar: str = "N"
    repeat: bool = False
    default: object = None

    def given(self, value):
        """Whether ``value`` was given: not None, nor the default (compared only when
        both are plain values: an array is given)."""
        if value is None:
            return False
        return self.default is None or not (np.isscalar(value) and value == self.default)


def keyword(name, value=None):
    """How the Python API names an option in a message: ``n_sources=3``, or ``n_sources``.
    (The command line passes its own speller, which writes ``--sources 3``.)"""
    return name if value is None else f"{name}={value!r}"


@dataclass
class Fitted:
    """What a mode learned from the signal (or from its excerpts).

    Attributes
    ----------
    W : np.ndarray [shape=(n_rows * (2 * context + 1), K)]
        Templates the masks are made of.
    labels : np.ndarray [shape=(K,), dtype=int]
        Source of each template.
    H : np.ndarray [shape=(K, n_frames)] or None
        Activations of every frame, when the fit was of the whole signal.
    templates : np.ndarray [shape=(n_fit_rows * (2 * context + 1), K)]
        What the activations of a block are estimated with (``W``, or ``W``
        pooled into the fit's bands).
    state : object
        Anything else the mode's masks need.
    """

    W: np.ndarray
    labels: np.ndarray
    H: np.ndarray = None
    templates: np.ndarray = None
    state: object = None

    def __post_init__(self):
        if self.templates is None:
            self.templates = self.W


class Mode:
    """One way of separating. Subclasses set the class attributes and write
    :meth:`configure` and :meth:`fit`; the rest has defaults that suit a fit of
    templates whose activations give Wiener masks.

    Class attributes
    ----------------
    key : str
        Its name in :data:`audionmf.modes.MODES`.
    options : tuple of Option
        The keywords of :func:`audionmf.separate` that it owns.
    selected_by : str or None
        The keyword that picks it: ``"two_stems"`` (with :attr:`two_stems` as
        its value) or one of its own options (``"models"``); None for the
        default mode.
    two_stems : str or None
        The ``two_stems`` value that picks it.
    decides : str or None
        Why other modes' options, and the analysis options, do not apply
        (for a mode whose own templates bring the analysis).
    default_mask_power, default_max_iter : float, int
    """

    key = None
    options = ()
    selected_by = None
    two_stems = None
    decides = None
    default_mask_power = 2.0
    default_max_iter = 200
    #: How the command line's help gives the default iterations (None: from the above).
    iterations_note = None

    def __init__(self, sr, *, beta=None, power=None, n_fft=None, hop_length=None, window=None,
                 mask_power=None, max_iter=None, tol=1e-4, init=None, sparsity=0.0,
                 random_state=None, callback=None, limits=None, spell=keyword, **options):
        """Check the options; the analysis, source names and templates at the rate ``sr``;
        ``limits`` (:class:`audionmf.limits.Limits`) for every fit and block."""
        if mask_power is None:
            mask_power = self.default_mask_power
        self.mask_power = check_nonnegative_real(mask_power, "mask_power", allow_zero=False)
        if max_iter is None:
            max_iter = self.iterations(options)
        self.max_iter = check_positive_int(max_iter, "max_iter")
        self.sr = check_positive_int(sr, "sr")
        self.limits = check_limits(limits)
        self.rows = self.pool = None
        self.configure(dict(beta=beta, power=power, n_fft=n_fft, hop_length=hop_length,
                            window=window), spell=spell, **options)
        if self.rows is None:
            self.rows = self.analysis.n_freq
        self.tol, self.sparsity, self.init, self.callback = tol, sparsity, init, callback
        self.rng = np.random.default_rng(random_state)

    # ------------------------------------------------------------- what a mode writes
    @classmethod
    def iterations(cls, options):
        """Most iterations when ``max_iter`` is not given, for these options."""
        return cls.default_max_iter

    @classmethod
    def check_options(cls, options, spell=keyword):
        """This mode's options checked on their own (no signal, no files read):
        what the command line checks before any work. Raises ParameterError."""
        return dict(options)

    @classmethod
    def source_names(cls, options):
        """The names of the sources these options give (for the command line, which
        needs them before any file is read); a configured mode has them as :attr:`names`."""
        raise NotImplementedError

    def configure(self, analysis_options, spell=keyword, **options):
        """Check this mode's ``options`` and set :attr:`analysis` (an
        :class:`audionmf.analysis.Analysis` at the signal's rate), :attr:`names`
        and what the fit needs; optionally :attr:`rows` (bins the templates
        cover, default all) and :attr:`pool` (bins summed into bands for the fit)."""
        raise NotImplementedError

    def fit(self, V, whole):
        """Learn from the stacked, normalized spectrogram ``V`` of the whole signal
        (``whole``) or of excerpts of it laid side by side; returns a :class:`Fitted`."""
        raise NotImplementedError

    @classmethod
    def file_names(cls, options):
        """Files besides the sources that these options make the mode write (names
        in the output folder), for the command line's --skip-existing."""
        return []

    def files(self):
        """After a separation: those files, name -> bytes (committed with the sources)."""
        return {}

    def picture(self):
        """After a separation: keywords for the picture of it (a melody, say)."""
        return {}

    # ------------------------------------------------------------- defaults
    @property
    def fit_rows(self):
        """Rows of one frame of the spectrogram that is fitted."""
        return self.rows if self.pool is None else self.pool.shape[0]

    def prepare(self, signal):
        """Read what the mode needs of the signal itself (an :class:`audionmf.io.Signal`)
        before its fit, such as a stretch named by an option; nothing by default."""

    def needs_fit(self, whole):
        """Whether :meth:`fit` has anything to learn (a signal fitted on excerpts
        with every template fixed has not: each block is fitted on its own)."""
        return True

    def without_fit(self):
        """The :class:`Fitted` of a mode that :meth:`needs_fit` says has nothing to learn."""
        raise NotImplementedError

    def check_excerpts(self, name):
        """Refuse, naming the signal, what cannot work on excerpts of a long signal."""

    def fit_options(self, **extra):
        """The keywords of :func:`audionmf.nmf` that every fit of this mode shares."""
        return dict(beta=self.analysis.beta, max_iter=self.max_iter, tol=self.tol,
                    sparsity=self.sparsity, limits=self.limits, **extra)

    def fixed_activations(self, V, templates, max_iter=None):
        """Activations of ``V`` (normalized) with the templates fixed, in the mode's
        iterations or ``max_iter``. No progress callback: with one, nmf would sweep all
        frames per iteration and stop on the whole matrix instead of block by block, so
        the result would depend on it."""
        options = self.fit_options(random_state=self.rng)
        if max_iter is not None:
            options["max_iter"] = max_iter
        return nmf(V, templates.shape[1], W=templates, update_W=False, **options).H

    def activations(self, fitted, V):
        """Activations of a block's spectrogram ``V`` (not normalized) with the
        fitted templates; zeros for a silent block."""
        if not np.any(V):
            return np.zeros((fitted.templates.shape[1], V.shape[1]), dtype=np.float32)
        return self.fixed_activations(V / V.max(), fitted.templates)

    def activations_at(self, fitted, V, start):
        """:meth:`activations` of the block whose first frame is ``start`` (for a mode
        whose activations depend on where the block lies: a melody given in time)."""
        return self.activations(fitted, V)

    def spread(self, fitted):
        """Frames beyond a block whose activations its masks depend on."""
        return self.analysis.context

    #: Frames of STFT beyond a block that its masks read (besides the activations').
    reach = 0

    def masks(self, fitted, H, X, h_span, x_span):
        """Masks of the frames ``h_span`` of activations ``H`` (and ``x_span`` of the
        STFT ``X`` of the block and its reach), one per source, for the analysis's rows."""
        return wiener_masks(fitted.W, H, fitted.labels, mask_power=self.mask_power,
                            context=self.analysis.context)[:, :, h_span]


def refuse_foreign(mode, options, modes, spell=keyword):
    """Refuse the options of other modes than ``mode``: those of a two-stems mode
    "need" its ``two_stems`` value; beside a mode that decides, no other applies;
    those of a mode picked by its own option "need" that option."""
    for other in modes:
        if other is mode:
            continue
        given = [o for o in other.options if o.given(options.get(o.name, o.default))]
        if not given:
            continue
        names = ", ".join(spell(o.name) for o in given)
        need = "needs" if len(given) == 1 else "need"
        if other.two_stems is not None:
            raise ParameterError(f"{names} {need} {spell('two_stems', other.two_stems)}")
        if mode.decides is not None:
            picked = spell(mode.selected_by)
            raise ParameterError(f"{names} cannot be used with {picked}: {mode.decides}")
        if other.selected_by is not None and other.selected_by not in [o.name for o in given]:
            raise ParameterError(f"{names} {need} {spell(other.selected_by)}")
        picked = "here" if mode.two_stems is None else f"with {spell('two_stems', mode.two_stems)}"
        raise ParameterError(f"{names} cannot be used {picked}")

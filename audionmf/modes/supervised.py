"""Separation with learned source models (supervised NMF), optionally with free templates.

Each :class:`audionmf.SourceModel` brings its templates and its analysis; the
templates are held fixed and only their activations are estimated. With
``free_components``, templates learned on the mixture itself form one more
source, ``"residual"`` (semi-supervised NMF).

Without free templates, the activations are fitted on high bins summed in
narrow bands (:func:`audionmf.models.model_pooling`, as the models were
learned), and the masks are built at full resolution.

Models learned as several factorizations (``SourceModel.fits``) are an
ensemble: group ``g`` of every model's templates (a model with fewer groups
lends its group ``g`` modulo their count) is fitted on its own, with free
templates of its own if any, and the masks of the fits are averaged.
"""
import numpy as np

from .._threads import serial_blas
from .._validation import MAX_COMPONENTS, check_positive_int
from ..analysis import Analysis, templates_at_rate
from ..masks import wiener_masks
from ..models import check_models, model_pooling
from ..nmf import nmf
from .base import Fitted, Mode, Option, keyword
from .blind import MIXTURE_OVER_RELAXATION

__all__ = ["Supervised"]

#: Iterations with every template fixed: the activations settle sooner
#: (docs/decisions.md, "Fewer iterations with fixed templates").
FIXED_MAX_ITER = 50


class Supervised(Mode):
    """``separate(y, sr, models=[...], free_components=K)``."""

    key = "models"
    selected_by = "models"
    decides = "the models decide the sources and the analysis"
    options = (
        Option("models", "--model", "model", "a source model from 'audionmf learn'; repeat for "
               "each source", metavar="MODEL.npz", repeat=True),
        Option("free_components", "--free", "count0", "with --model: K extra templates learned "
               "on the mixture, written as 'residual' (default: 0)", metavar="K", default=0),
    )

    #: How the command line's help gives the default iterations.
    iterations_note = f"{FIXED_MAX_ITER} with --model and no --free"

    @classmethod
    def iterations(cls, options):
        return cls.default_max_iter if options.get("free_components") else FIXED_MAX_ITER

    @classmethod
    def check_options(cls, options, spell=keyword):
        free = check_positive_int(options.get("free_components") or 0, spell("free_components"),
                                  minimum=0, maximum=MAX_COMPONENTS)
        return dict(options, free_components=free)

    @classmethod
    def source_names(cls, options):
        names = [m.name for m in options.get("models") or ()]
        return names + (["residual"] if options.get("free_components") else [])

    def configure(self, analysis_options, spell=keyword, models=None, free_components=0):
        models = list(models)
        if models:
            check_models(models)
        own = Analysis.from_models(models, **analysis_options)
        self.analysis = own.at_rate(self.sr)
        self.n_free = self.check_options({"free_components": free_components})["free_components"]
        self.names = self.source_names({"models": models, "free_components": self.n_free})
        # Each fit of the ensemble: its columns of the models' templates laid side by side.
        offsets = np.cumsum([0] + [m.n_components for m in models])
        fits = [[offset + m.groups()[g % m.fits] for m, offset in zip(models, offsets)]
                for g in range(max(m.fits for m in models))]
        self.labels = np.concatenate([np.repeat(np.arange(len(self.names)), [len(c) for c in columns]
                                                + ([self.n_free] if self.n_free else []))
                                      for columns in fits])  # (each fit's free templates last)
        self.spans = _spans([sum(len(c) for c in columns) for columns in fits])
        every = np.hstack([m.templates for m in models])
        self.fixed = templates_at_rate(every, own, self.sr)[:, np.concatenate(sum(fits, []))]
        frames = 2 * own.context + 1
        self.rows = self.fixed.shape[0] // frames
        self.fit_templates = self.fixed
        if not self.n_free:  # free templates are learned at full resolution
            self.pool = model_pooling(self.rows, sr=self.sr, n_fft=self.analysis.stft.n_fft)
            with serial_blas():  # a fit follows (see modes.drums)
                self.fit_templates = np.vstack([self.pool @ block
                                                for block in np.split(self.fixed, frames)])

    def needs_fit(self, whole):
        return whole or bool(self.n_free)

    def without_fit(self):
        return Fitted(W=self.fixed, labels=self.labels, templates=self.fit_templates, state=self.spans)

    def fit(self, V, whole):
        if not self.n_free:  # nothing to learn: the activations of the whole signal
            return Fitted(W=self.fixed, labels=self.labels, templates=self.fit_templates,
                          H=self._activations(V, self.fit_templates, self.spans), state=self.spans)
        results = []
        for span in self.spans:  # each fit of the ensemble with free templates of its own
            free = self.rng.random((V.shape[0], self.n_free)).astype(np.float32)
            W = np.hstack([self.fixed[:, span], free / np.maximum(free.sum(axis=0), 1e-30)])
            update = np.r_[np.zeros(span.stop - span.start, bool), np.ones(self.n_free, bool)]
            results.append(nmf(V, W.shape[1], W=W, update_W=update,
                               over_relaxation=MIXTURE_OVER_RELAXATION,
                               **self.fit_options(random_state=self.rng, callback=self.callback)))
        return Fitted(W=np.hstack([r.W for r in results]), labels=self.labels,
                      H=np.vstack([r.H for r in results]) if whole else None,
                      state=_spans([r.W.shape[1] for r in results]))

    def _activations(self, V, templates, spans):
        """The activations of each fit's templates (``V`` normalized), one above the other."""
        return np.vstack([self.fixed_activations(V, templates[:, span]) for span in spans])

    def activations(self, fitted, V):
        if not np.any(V):
            return np.zeros((fitted.templates.shape[1], V.shape[1]), dtype=np.float32)
        return self._activations(V / V.max(), fitted.templates, fitted.state)

    def masks(self, fitted, H, X, h_span, x_span):
        """The average of the fits' Wiener masks (a single fit's own masks for one)."""
        masks = [wiener_masks(fitted.W[:, span], H[span], fitted.labels[span],
                              mask_power=self.mask_power, context=self.analysis.context)[:, :, h_span]
                 for span in fitted.state]
        return masks[0] if len(masks) == 1 else sum(masks) / len(masks)


def _spans(sizes):
    """Consecutive slices of the given sizes."""
    ends = np.cumsum(sizes)
    return [slice(int(end - size), int(end)) for size, end in zip(sizes, ends)]

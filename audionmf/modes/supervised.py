"""Separation with learned source models (supervised NMF), optionally with free templates.

Each :class:`audionmf.SourceModel` brings its templates and its analysis; the
templates are held fixed and only their activations are estimated. With
``free_components``, templates learned on the mixture itself form one more
source, ``"residual"`` (semi-supervised NMF).

Without free templates, the activations are fitted on high bins summed in
narrow bands (:func:`audionmf.models.model_pooling`, as the models were
learned), and the masks are built at full resolution.
"""
import numpy as np

from .._threads import serial_blas
from .._validation import MAX_COMPONENTS, check_positive_int
from ..analysis import Analysis, templates_at_rate
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
        self.fixed = templates_at_rate(np.hstack([m.templates for m in models]), own, self.sr)
        self.labels = np.repeat(np.arange(len(self.names)),
                                [m.n_components for m in models] + ([self.n_free] if self.n_free else []))
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
        return Fitted(W=self.fixed, labels=self.labels, templates=self.fit_templates)

    def fit(self, V, whole):
        if not self.n_free:  # nothing to learn: the activations of the whole signal
            return Fitted(W=self.fixed, labels=self.labels, templates=self.fit_templates,
                          H=self.fixed_activations(V, self.fit_templates))
        free = self.rng.random((V.shape[0], self.n_free)).astype(np.float32)
        W = np.hstack([self.fixed, free / np.maximum(free.sum(axis=0), 1e-30)])
        update = np.r_[np.zeros(self.fixed.shape[1], bool), np.ones(self.n_free, bool)]
        result = nmf(V, W.shape[1], W=W, update_W=update, over_relaxation=MIXTURE_OVER_RELAXATION,
                     **self.fit_options(random_state=self.rng, callback=self.callback))
        return Fitted(W=result.W, labels=self.labels, H=result.H if whole else None)

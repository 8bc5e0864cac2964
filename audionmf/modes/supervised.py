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

The masks are put to a vote (:mod:`audionmf.vote`): a blind factorization of the
mixture's magnitudes, on the fit's rows, finds the parts that recur in it, each part
goes to the sources in the share of its energy that the models' masks give them, and
the masks are blended with the parts', the models' weighing more (:data:`VOTE_MODEL_WEIGHT`;
docs/decisions.md, "Source models: the vote").
A long signal's parts are learned on its excerpts and their activations fitted block
by block.

Before the vote, each source's templates are adapted to the mixture by a smooth gain
curve over frequency, fitted on the ensemble's first fit, alternately with its activations
(:mod:`audionmf.adapt`: the examples' recording and instrument are not the mixture's;
docs/decisions.md, "Source models: adapted to the mixture's colour"). A long signal's
gains are fitted on its excerpts, and its blocks take them.
"""
import numpy as np

from .._threads import serial_blas
from .._validation import MAX_COMPONENTS, check_positive_int
from ..analysis import Analysis, band_centres, templates_at_rate
from ..masks import blend_sources, wiener_masks
from ..models import check_models, model_pooling
from ..nmf import nmf
from .. import adapt, vote
from .base import Fitted, Mode, Option, keyword
from .blind import MIXTURE_OVER_RELAXATION

__all__ = ["Supervised"]

#: The weight of the models' masks against the vote's in their blend (docs/decisions.md,
#: "Source models: the vote").
VOTE_MODEL_WEIGHT = 0.7
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
    #: Parts of the vote's factorization (:mod:`audionmf.vote`); 0: no vote.
    vote_parts = vote.PARTS
    #: Whether the templates go through gain curves fitted to the mixture (:mod:`audionmf.adapt`).
    adapt_gains = True

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
            self.gain_bases = adapt.gain_bases(band_centres(self.pool, sr=self.sr,
                                                            n_fft=self.analysis.stft.n_fft))

    def needs_fit(self, whole):
        return whole or bool(self.n_free) or bool(self.vote_parts) or self._adapts()

    def _adapts(self):
        """Whether the templates go through gain curves: KL models (the divergence the
        curves are fitted with and were measured on) without free templates."""
        return self.adapt_gains and not self.n_free and self.analysis.beta == 1.0

    def without_fit(self):
        return Fitted(W=self.fixed, labels=self.labels, templates=self.fit_templates,
                      state=(self.spans, None))

    def fit(self, V, whole):
        """The activations of the whole signal (``whole``), the free templates of each
        fit of the ensemble if any, and the vote's parts."""
        if self._adapts():  # the models' templates, through gains fitted to V
            spans = self.spans
            W, fit_templates, H = self._adapted(V, spans, whole)
        elif not self.n_free:  # the templates are the models': fixed
            W, spans, fit_templates = self.fixed, self.spans, self.fit_templates
            H = self._activations(V, fit_templates, spans) if whole else None
        else:
            results = []
            for span in self.spans:  # each fit of the ensemble with free templates of its own
                free = self.rng.random((V.shape[0], self.n_free)).astype(np.float32)
                start = np.hstack([self.fixed[:, span], free / np.maximum(free.sum(axis=0), 1e-30)])
                update = np.r_[np.zeros(span.stop - span.start, bool), np.ones(self.n_free, bool)]
                results.append(nmf(V, start.shape[1], W=start, update_W=update,
                                   over_relaxation=MIXTURE_OVER_RELAXATION,
                                   **self.fit_options(random_state=self.rng, callback=self.callback)))
            W, spans = np.hstack([r.W for r in results]), _spans([r.W.shape[1] for r in results])
            H = np.vstack([r.H for r in results]) if whole else None
        templates = fit_templates if not self.n_free else W
        parts = None
        if self.vote_parts:
            parts, H_parts = vote.learn_parts(self._frames(V), self.vote_parts,
                                              power=self.analysis.power, random_state=self.rng,
                                              limits=self.limits)
            if whole:
                H = np.vstack([H, self._split(templates, H, spans, parts, H_parts)])
        return Fitted(W=W, labels=self.labels, templates=templates, H=H, state=(spans, parts))

    def _activations(self, V, templates, spans):
        """The activations of each fit's templates (``V`` normalized), one above the other."""
        return np.vstack([self.fixed_activations(V, templates[:, span]) for span in spans])

    def _adapted(self, V, spans, whole):
        """The templates through each source's gain curve fitted to ``V`` on the
        ensemble's first fit (:func:`audionmf.adapt.equalize`: the gains are the
        recording's, and every fit's templates take them), at full resolution and on the
        fit's rows, and if ``whole`` the activations of each fit through them (else None)."""
        frames = 2 * self.analysis.context + 1
        first = self.fit_templates[:, spans[0]]
        # The first fit's iterations: the plain templates' first, then the rounds.
        plain = min(adapt.FIRST_ITER, self.max_iter)
        H = self.fixed_activations(V, first, max_iter=plain)
        gains, H = adapt.equalize(V, first, H, self.labels[spans[0]], self.gain_bases, frames=frames,
                                  rounds=self.max_iter - plain, sparsity=self.sparsity,
                                  limits=self.limits)
        W = adapt.through(self.fixed, self.labels, {s: self.pool.T @ g for s, g in gains.items()},
                          frames)  # (each bin its band's gain)
        templates = adapt.through(self.fit_templates, self.labels, gains, frames)
        if not whole:
            return W, templates, None
        H = [H] + [self.fixed_activations(V, templates[:, span]) for span in spans[1:]]
        return W, templates, np.vstack(H)

    def _frames(self, V):
        """The frames of the stacked spectrogram ``V`` (its middle block)."""
        rows, context = self.fit_rows, self.analysis.context
        return V[context * rows : (context + 1) * rows]

    def _model_masks(self, W, H, spans):
        """The average of the fits' Wiener masks (a single fit's own masks for one)."""
        masks = [wiener_masks(W[:, span], H[span], self.labels[span], mask_power=self.mask_power,
                              context=self.analysis.context) for span in spans]
        return masks[0] if len(masks) == 1 else sum(masks) / len(masks)

    def _split(self, templates, H, spans, parts, H_parts):
        """The parts' activations split between the sources by the models' masks."""
        shares = vote.shares(parts, H_parts, self._model_masks(templates, H, spans))
        return vote.split(H_parts, shares).astype(np.float32)

    def activations(self, fitted, V):
        spans, parts = fitted.state
        n_models = fitted.templates.shape[1]
        if not np.any(V):
            n_parts = 0 if parts is None else len(self.names) * parts.shape[1]
            return np.zeros((n_models + n_parts, V.shape[1]), dtype=np.float32)
        V = V / V.max()
        H = self._activations(V, fitted.templates, spans)
        if parts is None:
            return H
        _, H_parts = vote.learn_parts(self._frames(V), parts, power=self.analysis.power,
                                      random_state=self.rng, limits=self.limits)
        return np.vstack([H, self._split(fitted.templates, H, spans, parts, H_parts)])

    def masks(self, fitted, H, X, h_span, x_span):
        """The fits' averaged Wiener masks, blended with the vote's."""
        spans, parts = fitted.state
        n_models = fitted.templates.shape[1]
        model = self._model_masks(fitted.W, H[:n_models], spans)[:, :, h_span]
        if parts is None:
            return model
        votes = vote.vote_masks(parts, H[n_models:, h_span])
        if self.pool is not None:
            votes = np.matmul(self.pool.T, votes)
        return blend_sources(votes, model, VOTE_MODEL_WEIGHT)


def _spans(sizes):
    """Consecutive slices of the given sizes."""
    ends = np.cumsum(sizes)
    return [slice(int(end - size), int(end)) for size, end in zip(sizes, ends)]

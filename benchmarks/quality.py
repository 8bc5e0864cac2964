"""Separation quality on a corpus laid out like bench-dev, with the reference points.

    python benchmarks/quality.py CORPUS_DIR [--json OUT.json] [--tasks T ...] [--methods M ...]
                                 [--seed N]

Corpus layout (see bench-dev's README):

    <task>/train/<source>/*.flac       training clips per source
    <task>/test/<id>/mix.flac          mixture
    <task>/test/<id>/<source>.flac     true stems

Every method runs in this one process, on the same mixtures, and is scored by
audionmf.evaluate (BSS Eval v3 = mir_eval.separation.bss_eval_sources; blind methods
with the best permutation). Prints one table of mean SDR / SIR / SAR per task and
source and seconds per mixture, then the mean SDR per task, and writes the JSON.
``--seed`` (default 0) seeds every method that draws random numbers (audionmf's fits and
models, scikit-learn's NMF and k-means): a change smaller than what another seed moves
is no evidence either way, so compare defaults under a few seeds.

Methods:
  mixture             the unprocessed mixture as every source (floor)
  oracle_wiener       |S_j|^2 / sum |S_k|^2 from the true stems (ceiling)
  librosa_hpss        librosa.effects.hpss, harmonic / percussive (blind)
  sklearn_mfcc        scikit-learn NMF (KL, 16 components) + MFCC k-means grouping (blind)
  sklearn_supervised  scikit-learn KL-NMF, 20 templates per source from train/, templates
                      fixed at test, Wiener mask p=2
  audionmf_blind      audionmf.separate(n_sources=2), the CLI defaults
  audionmf_blind_timbre  the same with rhythm_weight=0 (`--rhythm 0`: timbre only)
  audionmf_blind_rhythm  the same with rhythm_weight=2.5 (`--rhythm 2.5`)
  audionmf_two_stems  audionmf.separate(two_stems="drums"): drums / no_drums (blind; scored
                      with the best permutation, as HPSS)
  audionmf_models     audionmf.SourceModel.learn on train/, audionmf.separate(models=...)
  audionmf_models_single  the same with models of one factorization (fits=1, 200 iterations:
                      the defaults before the ensemble of two)
  audionmf_models_novote  audionmf_models with the vote off (the Supervised mode's
                      vote_parts = 0: the default before the vote)
  audionmf_models_noadapt  audionmf_models with the templates as learned (the Supervised
                      mode's adapt_gains = False: the default before the gain curves)
  noisereduce_nonstationary  noisereduce.reduce_noise(stationary=False): speech / the rest
  noisereduce_stationary     noisereduce.reduce_noise(stationary=True, y_noise=noise_sample.flac)
  audionmf_denoise           audionmf.denoise(): the noise profile found in the mixture
  audionmf_denoise_sample    audionmf.denoise(noise=noise_sample.flac)
                      (these four only on speech_noise, scored with no permutation: clean -> speech)
  librosa_vocal       librosa's "Vocal separation" gallery recipe: nearest-neighbour filtering
                      (nn_filter, cosine, 2 s) of the magnitude, soft masks with margins
                      (foreground 10, background 2, power 2); foreground as the lead (vocals, speech)
  audionmf_vocals     audionmf.separate(two_stems="vocals"): vocals as the lead (vocals,
                      speech), no_vocals as the other source; not blind (no permutation); only on
                      vocals_band and speech_music

On speech_noise the table also gives the speech estimate's PESQ (wide band, at 16 kHz) and
STOI, where the `pesq` / `pystoi` packages are installed (pip install 'audionmf[bench]').
"""
import argparse
import glob
import json
import os
import sys
import time
import warnings

import numpy as np

import audionmf

N_FFT, HOP = 2048, 512


# --------------------------------------------------------------------------- corpus
def read_corpus(root, tasks=None):
    """{task: {"sources": [...], "train": {source: [paths]}, "test": [{id, mix, stems}]}}"""
    corpus = {}
    for task_dir in sorted(glob.glob(os.path.join(root, "*", ""))):
        task = os.path.basename(os.path.dirname(task_dir))
        if tasks and task not in tasks:
            continue
        if not (os.path.isdir(os.path.join(task_dir, "train")) and os.path.isdir(os.path.join(task_dir, "test"))):
            continue
        sources = sorted(os.listdir(os.path.join(task_dir, "train")))
        train = {s: sorted(glob.glob(os.path.join(task_dir, "train", s, "*.flac"))) for s in sources}
        tests = []
        for mix_dir in sorted(glob.glob(os.path.join(task_dir, "test", "*", ""))):
            tests.append({
                "id": os.path.basename(os.path.dirname(mix_dir)),
                "folder": mix_dir,  # (what else a method may read there: noise_sample.flac)
                "mix": os.path.join(mix_dir, "mix.flac"),
                "stems": {s: os.path.join(mix_dir, f"{s}.flac") for s in sources},
            })
        corpus[task] = {"sources": sources, "train": train, "test": tests}
    return corpus


def magnitude(y):
    return np.abs(audionmf.stft(y, n_fft=N_FFT, hop_length=HOP))


def wiener_from_models(mix, models, p=2.0):
    """Soft masks from per-source model spectrograms, applied to the mixture STFT."""
    X = audionmf.stft(mix, n_fft=N_FFT, hop_length=HOP)
    stack = np.stack([np.maximum(m, 0) for m in models]) ** p + 1e-20
    masks = stack / stack.sum(axis=0)
    return [audionmf.istft(m * X, length=mix.shape[-1], n_fft=N_FFT, hop_length=HOP) for m in masks]


# --------------------------------------------------------------------------- methods
# Each method: prepare(task) -> state (training, untimed per mixture), run(state, mix, sr) -> {name: y}.

class Mixture:
    blind = False

    def prepare(self, task, sr):
        return task["sources"]

    def run(self, sources, mix, sr, stems):
        return {s: mix for s in sources}


class OracleWiener:
    blind = False

    def prepare(self, task, sr):
        return task["sources"]

    def run(self, sources, mix, sr, stems):
        estimates = wiener_from_models(mix, [magnitude(stems[s]) for s in sources])
        return dict(zip(sources, estimates))


class LibrosaHPSS:
    blind = True

    def prepare(self, task, sr):
        return None

    def run(self, state, mix, sr, stems):
        import librosa

        harmonic, percussive = librosa.effects.hpss(mix)
        return {"harmonic": harmonic, "percussive": percussive}


class SklearnMFCC:
    """NMF, then k-means on the templates' MFCCs (nussl's TimbreClustering idea)."""

    seed = 0  # (quality.py --seed)

    blind = True
    n_components = 16

    def prepare(self, task, sr):
        return None

    def run(self, state, mix, sr, stems):
        import librosa
        from sklearn.cluster import KMeans
        from sklearn.decomposition import non_negative_factorization

        V = magnitude(mix)
        acts, templates, _ = non_negative_factorization(
            V.T, n_components=self.n_components, solver="mu", beta_loss="kullback-leibler",
            max_iter=200, random_state=self.seed,
        )
        mel = librosa.feature.melspectrogram(S=templates.T ** 2, sr=sr)
        mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), sr=sr, n_mfcc=13)
        labels = KMeans(2, n_init=10, random_state=self.seed).fit_predict(mfcc.T)
        if len(set(labels)) < 2:
            labels[0] = 1 - labels[0]
        models = [acts[:, labels == c] @ templates[labels == c] for c in (0, 1)]
        estimates = wiener_from_models(mix, [m.T for m in models])
        return {"source1": estimates[0], "source2": estimates[1]}


class SklearnSupervised:
    """KL-NMF, 20 templates per source from train/, fixed at test, Wiener p=2."""

    seed = 0  # (quality.py --seed)

    blind = False
    n_components = 20

    def prepare(self, task, sr):
        from sklearn.decomposition import NMF

        templates = []
        for source in task["sources"]:
            V = np.concatenate(
                [magnitude(audionmf.load(p, sr=sr, dtype=np.float64)[0]) for p in task["train"][source]], axis=1
            )
            model = NMF(self.n_components, solver="mu", beta_loss="kullback-leibler", max_iter=200,
                        random_state=self.seed)
            model.fit(V.T)
            templates.append(model.components_)
        return task["sources"], templates

    def run(self, state, mix, sr, stems):
        from sklearn.decomposition import non_negative_factorization

        sources, templates = state
        H = np.vstack(templates)
        acts, _, _ = non_negative_factorization(
            magnitude(mix).T, H=H, update_H=False, n_components=H.shape[0], solver="mu",
            beta_loss="kullback-leibler", max_iter=200,
        )
        bounds = np.cumsum([0] + [t.shape[0] for t in templates])
        models = [(acts[:, a:b] @ H[a:b]).T for a, b in zip(bounds[:-1], bounds[1:])]
        return dict(zip(sources, wiener_from_models(mix, models)))


class AudionmfBlind:
    seed = 0  # (quality.py --seed)
    blind = True

    def prepare(self, task, sr):
        return None

    def run(self, state, mix, sr, stems):
        return audionmf.separate(mix, sr, n_sources=len(stems), random_state=self.seed)


class AudionmfBlindTimbre(AudionmfBlind):
    def run(self, state, mix, sr, stems):
        return audionmf.separate(mix, sr, n_sources=len(stems), rhythm_weight=0.0, random_state=self.seed)


class AudionmfBlindRhythm(AudionmfBlind):
    def run(self, state, mix, sr, stems):
        return audionmf.separate(mix, sr, n_sources=len(stems), rhythm_weight=2.5, random_state=self.seed)


class AudionmfTwoStems:
    """`separate --two-stems drums`: shipped drum templates against harmonic combs (blind)."""

    blind = True
    n_sources = 2  # (not run on tasks of more sources)

    def prepare(self, task, sr):
        return None

    def run(self, state, mix, sr, stems):
        return audionmf.separate(mix, sr, two_stems="drums")


class AudionmfModels:
    seed = 0  # (quality.py --seed)
    blind = False
    learn_options = {}

    def prepare(self, task, sr):
        return [
            audionmf.SourceModel.learn(task["train"][s], sr, name=s, random_state=self.seed,
                                       **self.learn_options)
            for s in task["sources"]
        ]

    def run(self, models, mix, sr, stems):
        return audionmf.separate(mix, sr, models=models, random_state=self.seed)


class AudionmfModelsSingle(AudionmfModels):
    learn_options = {"fits": 1, "max_iter": 200}


class AudionmfModelsNoVote(AudionmfModels):
    def run(self, models, mix, sr, stems):
        from audionmf.modes.supervised import Supervised

        parts = Supervised.vote_parts
        Supervised.vote_parts = 0
        try:
            return super().run(models, mix, sr, stems)
        finally:
            Supervised.vote_parts = parts


class AudionmfModelsNoAdapt(AudionmfModels):
    def run(self, models, mix, sr, stems):
        from audionmf.modes.supervised import Supervised

        Supervised.adapt_gains = False
        try:
            return super().run(models, mix, sr, stems)
        finally:
            Supervised.adapt_gains = True


class Denoiser:
    """A speech denoiser: ``clean`` scored as the speech, the rest as the noise, no permutation.
    The test item's folder is ``self.folder`` (its noise_sample.flac)."""

    seed = 0  # (quality.py --seed)

    blind = False
    tasks = ("speech_noise",)
    folder = None

    def prepare(self, task, sr):
        return None

    def noise_sample(self):
        return os.path.join(self.folder, "noise_sample.flac")

    def run(self, state, mix, sr, stems):
        clean = self.clean(mix, sr)
        return {"speech": clean, "noise": mix - clean}


class NoisereduceNonstationary(Denoiser):
    def clean(self, mix, sr):
        import noisereduce

        return noisereduce.reduce_noise(y=mix, sr=sr, stationary=False)


class NoisereduceStationary(Denoiser):
    def clean(self, mix, sr):
        import noisereduce

        noise, _ = audionmf.load(self.noise_sample(), sr=sr, dtype=np.float64)
        return noisereduce.reduce_noise(y=mix, sr=sr, stationary=True, y_noise=noise)


class AudionmfDenoise(Denoiser):
    def clean(self, mix, sr):
        return audionmf.denoise(mix, sr, random_state=self.seed)[0]


class AudionmfDenoiseSample(Denoiser):
    def clean(self, mix, sr):
        return audionmf.denoise(mix, sr, noise=self.noise_sample(), random_state=self.seed)[0]


def speech_scores(reference, estimate, sr):
    """{"pesq", "stoi"} of a speech estimate, those whose package is installed (PESQ
    wide band at 16 kHz, resampled; STOI at the signal's rate)."""
    import importlib.util

    scores = {}
    if importlib.util.find_spec("pesq") is not None:
        from pesq import pesq

        ref, est = (audionmf.io.resample(y, sr, 16000) for y in (reference, estimate))
        scores["pesq"] = float(pesq(16000, ref, est, "wb"))
    if importlib.util.find_spec("pystoi") is not None:
        from pystoi import stoi

        scores["stoi"] = float(stoi(reference, estimate, sr, extended=False))
    return scores


#: Tasks whose speech estimate also gets PESQ and STOI.
SPEECH_TASKS = ("speech_noise",)
#: The sources that are a lead voice, in the tasks that have one.
LEADS = ("vocals", "speech")


def lead_and_band(sources):
    """The task's lead voice (vocals, speech) and the other source."""
    lead = next(s for s in sources if s in LEADS)
    return lead, next(s for s in sources if s != lead)


class LibrosaVocal:
    """librosa's documented vocal separation (gallery, "Vocal separation"): the
    repeating background by nearest-neighbour filtering, soft masks with margins."""

    blind = False
    tasks = ("vocals_band", "speech_music")

    def prepare(self, task, sr):
        return task["sources"]

    def run(self, sources, mix, sr, stems):
        import librosa

        X = librosa.stft(mix)
        S_full = np.abs(X)
        S_filter = librosa.decompose.nn_filter(S_full, aggregate=np.median, metric="cosine",
                                               width=int(librosa.time_to_frames(2, sr=sr)))
        S_filter = np.minimum(S_full, S_filter)
        mask_i = librosa.util.softmask(S_filter, 2 * (S_full - S_filter), power=2)
        mask_v = librosa.util.softmask(S_full - S_filter, 10 * S_filter, power=2)
        foreground, background = (librosa.istft(m * X, length=mix.shape[-1]) for m in (mask_v, mask_i))
        lead, band = lead_and_band(sources)
        return {lead: foreground, band: background}


class AudionmfVocals:
    """`separate --two-stems vocals`: the lead (vocals, speech) as the first source."""

    seed = 0  # (quality.py --seed)

    blind = False
    tasks = ("vocals_band", "speech_music")

    def prepare(self, task, sr):
        return task["sources"]

    def run(self, sources, mix, sr, stems):
        out = audionmf.separate(mix, sr, two_stems="vocals", random_state=self.seed)
        lead, band = lead_and_band(sources)
        return {lead: out["vocals"], band: out["no_vocals"]}


METHODS = {
    "mixture": Mixture,
    "oracle_wiener": OracleWiener,
    "librosa_hpss": LibrosaHPSS,
    "sklearn_mfcc": SklearnMFCC,
    "sklearn_supervised": SklearnSupervised,
    "audionmf_blind": AudionmfBlind,
    "audionmf_blind_timbre": AudionmfBlindTimbre,
    "audionmf_blind_rhythm": AudionmfBlindRhythm,
    "audionmf_two_stems": AudionmfTwoStems,
    "audionmf_models": AudionmfModels,
    "noisereduce_nonstationary": NoisereduceNonstationary,
    "noisereduce_stationary": NoisereduceStationary,
    "audionmf_denoise": AudionmfDenoise,
    "audionmf_denoise_sample": AudionmfDenoiseSample,
    "librosa_vocal": LibrosaVocal,
    "audionmf_vocals": AudionmfVocals,
    "audionmf_models_single": AudionmfModelsSingle,
    "audionmf_models_novote": AudionmfModelsNoVote,
    "audionmf_models_noadapt": AudionmfModelsNoAdapt,
}


# --------------------------------------------------------------------------- main
def run(corpus, methods, log=sys.stderr, seed=0):
    results = {}
    for task_name, task in corpus.items():
        mixtures = []
        for item in task["test"]:
            mix, sr = audionmf.load(item["mix"], dtype=np.float64)
            stems = {s: audionmf.load(p, dtype=np.float64)[0] for s, p in item["stems"].items()}
            mixtures.append((item["id"], mix, sr, stems, item.get("folder")))
        sr = mixtures[0][2]
        for method_name in methods:
            method = METHODS[method_name]()
            method.seed = seed
            if getattr(method, "n_sources", len(task["sources"])) != len(task["sources"]):
                continue
            if task_name not in getattr(method, "tasks", (task_name,)):
                continue
            t0 = time.perf_counter()
            state = method.prepare(task, sr)
            train_seconds = time.perf_counter() - t0
            per_mix, seconds = [], []
            for mix_id, mix, sr, stems, folder in mixtures:
                method.folder = folder
                t0 = time.perf_counter()
                estimates = method.run(state, mix, sr, stems)
                seconds.append(time.perf_counter() - t0)
                scores = audionmf.evaluate(stems, estimates, sr, permutation=method.blind)
                per_mix.append({"id": mix_id, **{s: scores["sources"][s] for s in task["sources"]}})
                if task_name in SPEECH_TASKS and "speech" in stems:
                    speech = scores["sources"]["speech"]
                    speech.update(speech_scores(stems["speech"], estimates[speech["estimate"]], sr))
            metrics = ("sdr", "sir", "sar", "si_sdr", "pesq", "stoi")
            summary = {
                s: {m: float(np.mean([r[s][m] for r in per_mix])) for m in metrics if all(m in r[s] for r in per_mix)}
                for s in task["sources"]
            }
            results.setdefault(task_name, {})[method_name] = {
                "sources": summary,
                "mean_sdr": float(np.mean([summary[s]["sdr"] for s in task["sources"]])),
                "seconds_per_mixture": float(np.mean(seconds)),
                "training_seconds": train_seconds,
                "mixtures": per_mix,
            }
            print(f"{task_name:16s} {method_name:20s} mean SDR {results[task_name][method_name]['mean_sdr']:6.2f} dB"
                  f"  ({np.mean(seconds):.2f} s/mixture)", file=log, flush=True)
    return results


def table(results):
    lines = [f"{'task':16s} {'source':9s} {'method':20s} {'SDR':>6s} {'SIR':>6s} {'SAR':>6s} {'s/mix':>6s}"
             f"  {'SI-SDR':>6s} {'PESQ':>5s} {'STOI':>5s}"]
    for task, methods in results.items():
        for method, r in methods.items():
            for source, s in r["sources"].items():
                extra = ""
                if task in SPEECH_TASKS:
                    extra = f"  {s.get('si_sdr', float('nan')):6.2f}" + "".join(
                        f" {s[m]:5.{digits}f}" for m, digits in (("pesq", 2), ("stoi", 3)) if m in s)
                lines.append(f"{task:16s} {source:9s} {method:20s} {s['sdr']:6.2f} {s['sir']:6.2f} "
                             f"{s['sar']:6.2f} {r['seconds_per_mixture']:6.2f}{extra}")
    lines.append("")
    methods = list(dict.fromkeys(m for r in results.values() for m in r))
    lines.append("mean SDR (dB) | " + " | ".join(results))
    for method in methods:
        lines.append(f"{method} | " + " | ".join(f"{results[t][method]['mean_sdr']:.2f}" if method in results[t]
                                                 else "-" for t in results))
    return "\n".join(lines)


def main(argv=None):
    # scikit-learn warns at every fit that stops at max_iter, which the baselines do by design.
    warnings.filterwarnings("ignore", message="Maximum number of iterations")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", help="folder laid out like bench-dev")
    parser.add_argument("--json", default="quality.json", help="where to write the results (default: %(default)s)")
    parser.add_argument("--tasks", nargs="*", help="only these tasks")
    parser.add_argument("--methods", nargs="*", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--seed", type=int, default=0, help="random state of every method (default: %(default)s)")
    args = parser.parse_args(argv)
    corpus = read_corpus(args.corpus, args.tasks)
    if not corpus:
        parser.error(f"{args.corpus}: no task folders with train/ and test/")
    t0 = time.perf_counter()
    results = run(corpus, args.methods, seed=args.seed)
    print(table(results))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; audionmf {audionmf.__version__}")
    with open(args.json, "w") as handle:
        json.dump({"corpus": os.path.abspath(args.corpus), "seed": args.seed, "results": results}, handle,
                  indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

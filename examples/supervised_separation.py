"""Learn a model of each source from examples, then separate a mixture with them.

    python examples/supervised_separation.py

The bundled sample comes with its true stems. The first half of each stem
teaches a source model (drums; organ + bass); the second half of the mixture,
which the models never heard, is separated with them and scored against the
truth, beside a blind separation of the same excerpt.
"""
import pathlib

import audionmf

SAMPLES = pathlib.Path(__file__).resolve().parent.parent / "audio_samples"


def main():
    mix, sr = audionmf.load(SAMPLES / "drums_organ_bass.flac")
    stems = {
        name: audionmf.load(SAMPLES / "drums_organ_bass_stems" / f"{name}.flac")[0]
        for name in ("drums", "harmonic")
    }
    half = len(mix) // 2
    models = [
        audionmf.SourceModel.learn(stem[:half], sr, name=name, n_components=32, random_state=0)
        for name, stem in stems.items()
    ]
    truth = {name: stem[half:] for name, stem in stems.items()}
    supervised = audionmf.separate(mix[half:], sr, models=models)
    blind = audionmf.separate(mix[half:], sr, n_sources=2, random_state=0)
    for label, estimates, permutation in (("with models", supervised, False), ("blind", blind, True)):
        scores = audionmf.evaluate(truth, estimates, sr, permutation=permutation)
        per_source = ", ".join(f"{name} {s['sdr']:.1f} dB" for name, s in scores["sources"].items())
        print(f"{label:12s} SDR: {per_source} (mean {scores['mean']['sdr']:.1f} dB)")


if __name__ == "__main__":
    main()

"""Build audionmf/data/drums.npz: generic drum templates from freely licensed drum hits.

    apt-get download hydrogen-drumkits && dpkg -x hydrogen-drumkits_*.deb hd
    HYDROGEN_KITS=hd/usr/share/hydrogen/data/drumkits python build_drum_model.py drums.npz

Reproducible: every random choice comes from one seeded numpy Generator, and
the defaults rebuild the shipped file bit for bit (its sha256 is in README.md).

Source material: Debian's ``hydrogen-drumkits`` 2017.09.19~dfsg-1 (bookworm),
kits ``Audiophob`` (CC0) and ``rumpf_kit_z01_h2`` (CC-BY-3.0, Emanuel Rumpf),
licenses as /usr/share/doc/hydrogen-drumkits/copyright gives them. Other kits
of the package can be named with ``--kits``; ``EXCLUDED`` are never used: the
two kits of the development corpus's drums (Millo_MultiLayered3, ForzeeStereo)
and the other kits of the same author, so that the templates have never heard
the drums they are measured on.

Within a kit only instruments named as kick, snare (clap, rimshot, side stick),
tom, hi-hat, crash (splash, china) or ride are used. The hits are sequenced
into seeded one-bar patterns (rock, pop, half-time, funk with ghost notes,
disco, ride, sparse electro) at 70-170 BPM with humanized timing and
velocities, velocity layers chosen as Hydrogen chooses them, fills, crashes,
open hi-hats choked by the next closed one, and each clip's instruments retuned
by up to +-3 semitones. Each 10 s clip is scaled to -23 dBFS RMS. Then
``audionmf.SourceModel.learn`` learns 64 templates of 5 frames (KL, magnitude,
n_fft 2048, hop 512, 22050 Hz, 200 iterations, seed 0). The sample files used
are listed in ``<out>.files.txt``.
"""
import argparse
import os
import re
import xml.etree.ElementTree as ET

import numpy as np
import soundfile as sf

import audionmf

KITDIR = os.environ.get("HYDROGEN_KITS", "hd/usr/share/hydrogen/data/drumkits")
KITS = ["Audiophob", "rumpf_kit_z01_h2"]  # CC0 and CC-BY-3.0
EXCLUDED = {"Millo_MultiLayered3", "ForzeeStereo", "Millo_MultiLayered2", "Millo-Drums_v.1"}
SR = 22050
MAX_HIT_S = 2.5


def _tag(el):
    return el.tag.split("}")[-1]


def role_of(name):
    n = name.lower()
    if "cowbell" in n or "conga" in n:
        return None
    if re.search(r"kick|bass ?drum|\bbd\b", n):
        return "kick"
    if re.search(r"snare|clap|rimshot|side stick", n) or re.search(r"\bstick\b", n):
        return "snare"
    if "tom" in n:
        return "tom"
    if re.search(r"hat|\bhh\b|\bchh\b|\bohh\b|\bhh\b", n) or re.search(r"\b(side )?o?hh\b", n):
        return "hat_open" if re.search(r"open|\bop\b|semi|swish|free|ohh", n) else "hat_closed"
    if re.search(r"crash|splash|china|cymbal", n):
        return "crash"
    if re.search(r"ride|bell", n):
        return "ride"
    return None


def kit_instruments(kit):
    """{role: [instrument]}, instrument = list of (path, vmin, vmax, gain) layers."""
    root = ET.parse(os.path.join(KITDIR, kit, "drumkit.xml")).getroot()
    roles = {}
    for el in root.iter():
        if _tag(el) != "instrument":
            continue
        name = next((c.text or "" for c in el if _tag(c) == "name"), "").strip()
        layers = []
        for c in el:
            if _tag(c) == "layer":
                d = {_tag(x): (x.text or "").strip() for x in c}
                layers.append((d.get("filename"), float(d.get("min", 0)), float(d.get("max", 1)),
                               float(d.get("gain", 1))))
            elif _tag(c) == "filename" and c.text:
                layers.append((c.text.strip(), 0.0, 1.0, 1.0))
        layers = [(os.path.join(KITDIR, kit, f), a, b, g) for f, a, b, g in layers
                  if f and os.path.exists(os.path.join(KITDIR, kit, f))]
        r = role_of(name)
        if r and layers:
            roles.setdefault(r, []).append(layers)
    return roles


_cache = {}


def load_hit(path, rate=1.0):
    """The hit at SR, played back ``rate`` times faster (drum tuning: pitch and decay)."""
    if (path, rate) not in _cache:
        y, _ = audionmf.load(path, sr=SR, mono=True, dtype=np.float64)
        if rate != 1.0:
            y = np.interp(np.arange(0, len(y) - 1, rate), np.arange(len(y)), y)
        y = y[: int(MAX_HIT_S * SR)]
        fade = min(len(y), int(0.05 * SR))
        y[len(y) - fade:] *= np.linspace(1, 0, fade)
        _cache[(path, rate)] = y
    return _cache[(path, rate)]


def pick_layer(layers, v):
    for f, a, b, g in layers:
        if a <= v <= b:
            return f, g
    f, a, b, g = min(layers, key=lambda l: min(abs(v - l[1]), abs(v - l[2])))
    return f, g


STYLES = ["rock", "pop16", "halftime", "funk", "disco", "ride", "electro"]


def bar_pattern(style, rng, roles):
    """List of (step 0..15, role, velocity) for one bar."""
    ev = []
    hat = "hat_closed" if "hat_closed" in roles else ("ride" if "ride" in roles else None)
    def add(step, role, v):
        if role in roles:
            ev.append((step, role, float(np.clip(v + rng.normal(0, 0.06), 0.05, 1.0))))
    if style == "rock":
        for s in (0, 8): add(s, "kick", 0.9)
        if rng.random() < 0.5: add(int(rng.choice([6, 10, 14])), "kick", 0.75)
        for s in (4, 12): add(s, "snare", 0.9)
        for s in range(0, 16, 2): add(s, hat, 0.8 if s % 4 == 0 else 0.55)
    elif style == "pop16":
        for s in (0, 7, 8, 10): 
            if s in (0, 8) or rng.random() < 0.6: add(s, "kick", 0.85)
        for s in (4, 12): add(s, "snare", 0.9)
        for s in range(16): add(s, hat, 0.7 if s % 2 == 0 else 0.4)
    elif style == "halftime":
        add(0, "kick", 0.9); 
        if rng.random() < 0.6: add(int(rng.choice([3, 6, 11])), "kick", 0.7)
        add(8, "snare", 0.95)
        for s in range(0, 16, 2): add(s, hat, 0.65)
    elif style == "funk":
        for s in (0, 3, 10): add(s, "kick", 0.85)
        for s in (4, 12): add(s, "snare", 0.95)
        for s in (1, 7, 9, 15):
            if rng.random() < 0.5: add(s, "snare", 0.2)
        for s in range(16): add(s, hat, 0.6 if s % 2 == 0 else 0.35)
    elif style == "disco":
        for s in (0, 4, 8, 12): add(s, "kick", 0.9)
        for s in (4, 12): add(s, "snare", 0.85)
        for s in range(16):
            if s % 4 == 2: add(s, "hat_open" if "hat_open" in roles else hat, 0.7)
            elif s % 2 == 0: add(s, hat, 0.5)
    elif style == "ride":
        cym = "ride" if "ride" in roles else hat
        for s in (0, 8): add(s, "kick", 0.8)
        for s in (4, 12): add(s, "snare", 0.85)
        for s in range(0, 16, 2): add(s, cym, 0.7 if s % 4 == 0 else 0.5)
        for s in (4, 12): add(s, "hat_closed", 0.4)
    else:  # electro: random sparse
        for s in range(16):
            if s % 4 == 0 or rng.random() < 0.15: add(s, "kick", 0.9)
            if s in (4, 12) or rng.random() < 0.08: add(s, "snare", 0.8)
            if rng.random() < 0.6: add(s, hat, rng.uniform(0.3, 0.8))
    return ev


def fill(rng, roles):
    ev = []
    start = int(rng.choice([8, 12]))
    for s in range(start, 16):
        r = "tom" if ("tom" in roles and rng.random() < 0.6) else "snare"
        if rng.random() < 0.85 and r in roles:
            ev.append((s, r, float(rng.uniform(0.5, 1.0))))
    return ev


def render_clip(kit, roles, rng, seconds=10.0, tuning=0.0):
    n = int(seconds * SR)
    style = STYLES[int(rng.integers(len(STYLES)))]
    bpm = float(rng.uniform(70, 170))
    step = 60.0 / bpm / 4
    swing = float(rng.choice([0.0, 0.0, 0.1]))
    # one instrument per role for the clip (the kit's sound), occasionally two
    chosen = {r: [ins[int(rng.integers(len(ins)))] for _ in range(1 + (rng.random() < 0.3))]
              for r, ins in roles.items()}
    gains = {r: 10 ** (rng.uniform(-6, 3) / 20) for r in roles}
    # tuning: every role of the clip is retuned by up to +-`tuning` semitones
    rates = {r: round(float(2 ** (rng.uniform(-tuning, tuning) / 12)), 3) if tuning else 1.0
             for r in roles}
    events = []
    bar = 0
    while bar * 16 * step < seconds:
        ev = bar_pattern(style, rng, roles)
        if bar % 4 == 3 and rng.random() < 0.7:
            ev = [e for e in ev if e[0] < 8 or e[1] in ("kick", "hat_closed", "ride")] + fill(rng, roles)
        if bar % 4 == 0 and "crash" in roles and rng.random() < 0.7:
            ev.append((0, "crash", float(rng.uniform(0.6, 1.0))))
        for s, r, v in ev:
            t = (bar * 16 + s) * step + (swing * step if s % 2 else 0) + rng.normal(0, 0.006)
            events.append((max(t, 0.0), r, v))
        bar += 1
    events.sort()
    y = np.zeros(n + int(MAX_HIT_S * SR))
    choke_times = [t for t, r, _ in events if r == "hat_closed"]
    used = set()
    for t, r, v in events:
        layers = chosen[r][int(rng.integers(len(chosen[r])))]
        path, g = pick_layer(layers, v)
        used.add(path)
        hit = load_hit(path, rates[r]) * v * g * gains[r]
        if r == "hat_open":
            nxt = [c for c in choke_times if c > t]
            if nxt:
                cut = int((nxt[0] - t) * SR)
                if cut < len(hit):
                    hit = hit.copy(); f = min(int(0.02 * SR), len(hit) - cut)
                    hit[cut:cut + f] *= np.linspace(1, 0, f); hit[cut + f:] = 0
        i = int(round(t * SR))
        if i < n:
            y[i:i + len(hit)] += hit
    y = y[:n]
    y *= 10 ** (-23 / 20) / np.sqrt(np.mean(y ** 2))
    peak = np.max(np.abs(y))
    if peak > 0.9:
        y *= 0.9 / peak
    return y, dict(kit=kit, style=style, bpm=round(bpm, 1)), used


def build_clips(kits, clips_per_kit, seed, tuning=0.0):
    rng = np.random.default_rng(seed)
    clips, meta, used = [], [], set()
    for kit in kits:
        if kit in EXCLUDED:
            raise SystemExit(f"{kit}: excluded (the development corpus's drums or their author's)")
        roles = kit_instruments(kit)
        for _ in range(clips_per_kit):
            y, m, u = render_clip(kit, roles, rng, tuning=tuning)
            clips.append(y); meta.append(m); used |= u
    return clips, meta, sorted(used)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--components", type=int, default=64)
    ap.add_argument("--context", type=int, default=2)
    ap.add_argument("--clips-per-kit", type=int, default=20)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--kits", nargs="*", default=KITS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tuning", type=float, default=3.0,
                    help="retune each clip's drums by up to +-this many semitones")
    ap.add_argument("--write-audio", help="folder to write the training clips to")
    a = ap.parse_args()
    clips, meta, used = build_clips(a.kits, a.clips_per_kit, a.seed, a.tuning)
    if a.write_audio:
        os.makedirs(a.write_audio, exist_ok=True)
        for i, (y, m) in enumerate(zip(clips, meta)):
            sf.write(os.path.join(a.write_audio, f"clip{i:02d}_{m['style']}.flac"), y, SR)
    # Every learning option spelt out, so that new defaults of learn() cannot change the file.
    model = audionmf.SourceModel.learn(clips, sr=SR, name="drums", n_components=a.components,
                                       context=a.context, max_iter=a.iterations, semitones=(0,),
                                       beta="kl", n_fft=2048, hop_length=512, window="hann",
                                       sparsity=0.0, fits=1, random_state=a.seed)
    model.save(a.out)
    with open(a.out + ".files.txt", "w") as fh:
        fh.write(f"# hydrogen-drumkits 2017.09.19~dfsg-1; kits: {a.kits}\n")
        for m in meta:
            fh.write(f"# clip {m}\n")
        for p in used:
            fh.write(os.path.relpath(p, KITDIR) + "\n")
    print(f"wrote {a.out}: K={a.components} context={a.context}, {len(clips)} clips, "
          f"{len(used)} sample files")


if __name__ == "__main__":
    main()

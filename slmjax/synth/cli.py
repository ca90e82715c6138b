"""slmjax-synth: spoken corpora and benchmark sets in the official layouts.

  slmjax-synth corpus --out=DIR --hours=H [--voices=...] [--text=FILE] [--exclude=BENCH_ROOT]
  slmjax-synth sblimp|swuggy|storycloze --out=ROOT [--n=N] [--voices=...] [--seed=S]
  slmjax-synth bench --out=ROOT [--n=N]      all three benchmark sets into one root
  slmjax-synth check --out=ROOT              validate a benchmark root's layout
  slmjax-synth leakage --out=CORPUS_DIR --exclude=ROOT[,ROOT]   count corpus texts holding benchmark items
  slmjax-synth stories [--n=N] [--seed=S] [--count=M]   print N built-in stories; with M, count the
                                             distinct stories and words among stories 0..M-1

--voices: comma-separated ENGINE:VOICE[:sSPEED][:pPITCH] specs (e.g. espeak:en-us+f3:s165:p62) or a
count N of the built-in espeak-ng voices. A rerun skips every wav that already exists.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags

from slmjax import cli_help
from slmjax.synth import benchio, corpus, engines, layout, leakage, render, sblimp, stories, storycloze, swuggy
from slmjax.synth.errors import SynthError

COMMANDS = ("corpus", "sblimp", "swuggy", "storycloze", "bench", "check", "leakage", "stories")

_OUT = cli_help.DEFINE_path("out", None, "Output folder (corpus) or benchmark root.")
_N = flags.DEFINE_integer("n", 100, "Benchmarks: items (pairs) per split; stories: how many to print.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of texts, voices and file names.")
_VOICES = flags.DEFINE_string("voices", "4", "Voices: comma-separated specs, or a count of built-in voices.")
_WORKERS = flags.DEFINE_integer("workers", None, "Synthesis processes (default: one per CPU core).")
_HOURS = flags.DEFINE_float("hours", 1.0, "corpus: hours of audio (0 with --text: the whole file).")
_TEXT = cli_help.DEFINE_path("text", None, "corpus: text file (plain, <|endoftext|>-separated, or JSONL).")
_EXCLUDE = cli_help.DEFINE_path_list("exclude", [], "corpus: benchmark roots whose texts the corpus must not contain.")
_TEST_FRACTION = flags.DEFINE_float("test_fraction", 0.01, "corpus: hashed share of utterances in split 'test'.")
_COUNT = flags.DEFINE_integer("count", 0, "stories: count distinct stories and words among this many.")
_SPLITS = flags.DEFINE_list("splits", ["dev", "test"], "sblimp/swuggy: splits to write.")


def _voices() -> list[engines.Voice]:
    voices = engines.parse_voices(_VOICES.value)
    render.check_engines(voices)  # a missing engine or unknown voice stops here, before any work
    return voices


def _need_out() -> str:
    if not _OUT.value:
        raise SynthError("--out is required")
    if os.path.exists(_OUT.value) and not os.path.isdir(_OUT.value):
        raise SynthError(f"--out={_OUT.value} exists and is not a directory")
    return _OUT.value


def _bench(cmd: str) -> dict:
    root, voices = _need_out(), _voices()
    if _N.value < 1:
        raise SynthError(f"--n={_N.value}: must be >= 1")
    splits = benchio.check_splits(_SPLITS.value)
    out = {}
    if cmd in ("sblimp", "bench"):
        out["sblimp"] = sblimp.build(root, _N.value, voices, _SEED.value, _WORKERS.value, splits)
    if cmd in ("swuggy", "bench"):
        out["swuggy"] = swuggy.build(root, _N.value, voices, _SEED.value, _WORKERS.value, splits)
        out["swuggy"]["word_list"] = swuggy.system_words()[1]
    if cmd in ("storycloze", "bench"):
        out["storycloze"] = storycloze.build(root, _N.value, voices, _SEED.value, _WORKERS.value)
    found, problems = layout.check(root, check_audio=False)
    if problems:
        raise SynthError(f"{root}: layout check failed: {problems[0]}")
    out["voices"] = [v.spec for v in voices]
    return out


def _stories() -> dict:
    import hashlib

    from tqdm import tqdm

    for flag, value in (("n", _N.value), ("count", _COUNT.value)):
        if value < 0:
            raise SynthError(f"--{flag}={value}: must be >= 0 (stories to print / to count)")
    for i in range(_N.value):
        s = stories.story(_SEED.value, i)
        print(f"[{s.topic}, {'success' if s.success else 'failure'}] {s.text}\n")
    if _COUNT.value <= 0:
        return {}
    seen, vocab = set(), set()
    for i in tqdm(range(_COUNT.value), desc="stories", unit="story", mininterval=1.0):
        text = stories.story(_SEED.value, i).text
        seen.add(hashlib.sha1(text.encode()).digest()[:12])
        vocab.update(stories.words(text))
    return {"seed": _SEED.value, "stories": _COUNT.value, "distinct": len(seen), "lexicon_words": len(vocab)}


def _leakage() -> dict:
    if not _EXCLUDE.value:
        raise SynthError("--exclude=BENCH_ROOT is required")
    manifest = os.path.join(_need_out(), "manifest.jsonl")
    if not os.path.isfile(manifest):
        raise SynthError(f"{manifest} does not exist")
    excl = leakage.load(_EXCLUDE.value)
    rows = corpus.read_manifest(manifest)
    leaking = [r["id"] for r in rows if excl.leaks(r["text"])]
    return {"utterances": len(rows), "benchmark_hashes": len(excl), "leaking": len(leaking), "leaking_ids": leaking[:20]}


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[1] not in COMMANDS:
        raise app.UsageError(f"give one command: {' | '.join(COMMANDS)}")
    cmd = argv[1]
    try:
        if cmd == "corpus":
            result = corpus.build(_need_out(), _HOURS.value, _voices(), _SEED.value,
                                  _TEXT.value, _EXCLUDE.value, _WORKERS.value, _TEST_FRACTION.value)
        elif cmd == "check":
            found, problems = layout.check(_need_out())
            result = {"sets": found, "problems": problems}
            if problems or not found:
                print(json.dumps(result, indent=1))
                raise SynthError(f"{_OUT.value}: {len(problems)} problems" if found else
                                 f"{_OUT.value}: no benchmark sets found")
        elif cmd == "leakage":
            result = _leakage()
        elif cmd == "stories":
            result = _stories()
        else:
            result = _bench(cmd)
    except SynthError as e:
        print(f"slmjax-synth {cmd}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # a folder that cannot be made or written (a file in its place, permissions, disk full)
        where = f": {e.filename}" if e.filename else ""
        print(f"slmjax-synth {cmd}: error: {e.strerror or e}{where}", file=sys.stderr)
        sys.exit(2)
    if result:
        print(json.dumps(result))


def run() -> None:
    cli_help.adopt(__name__)
    app.run(main)


if __name__ == "__main__":
    run()

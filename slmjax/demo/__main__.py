"""`make demo`: the whole study in miniature on one CPU box, every stage real.

    python -m slmjax.demo --out=demo_out

Synthesises a multi-voice story corpus and the four benchmark sets, fits the MFCC tokenizer and
encodes the corpus, trains the cpu_mini grid, scores every final checkpoint, fits the scaling laws
and writes ``<out>/report.md``. A rerun skips every finished stage (and the commands themselves
skip finished work inside a stage).
"""

from __future__ import annotations

import glob
import hashlib
import os
import sys

from absl import app, flags

from slmjax import cli_help, errortext
from slmjax.demo import report
from slmjax.demo.stages import (Stage, StageError, check_settings, code_digest, console_script,
                                 run_stages)

_OUT = cli_help.DEFINE_path("out", "demo_out", "Folder of everything the demo writes.")
_HOURS = flags.DEFINE_float(
    "hours", 36.0, "Hours of synthetic story audio (36 h gives ~5.0M training units: the grid's "
    "single-epoch runs, up to 4.6M tokens, stay within one epoch).")
_VOICES = flags.DEFINE_string("voices", "8", "Corpus voices: a count of built-in voices, or specs.")
_TEST_FRACTION = flags.DEFINE_float("test_fraction", 0.05, "Share of corpus utterances held out for the test loss.")
_BENCH_VOICES = flags.DEFINE_string("bench_voices", "4", "Benchmark voices (count or specs).")
_BENCH_N = flags.DEFINE_integer("bench_n", 150, "Items (pairs) per benchmark set and split.")
_K = flags.DEFINE_integer("k", 100, "k-means units of the MFCC tokenizer (HuBERT iteration 1: 100).")
_GRID = cli_help.DEFINE_path("grid", "configs/sweeps/cpu_mini.py", "Sweep config of the grid.")
_BOOTSTRAP = flags.DEFINE_integer("bootstrap", 1000, "Bootstrap replicates of the fits.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of texts, voices and the grid.")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _grid_path() -> str:
    """--grid, relative to the repository unless absolute."""
    return _GRID.value if os.path.isabs(_GRID.value) else os.path.join(REPO, _GRID.value)


def build_stages(out: str) -> list[Stage]:
    """The demo's stages, in order, with rough 2-core CPU time estimates for the ETA."""
    bench = os.path.join(out, "benchmarks")
    corpus = os.path.join(out, "corpus")
    tok = os.path.join(out, "tokenizer")
    units = os.path.join(out, "units")
    runs = os.path.join(out, "runs")
    fit = os.path.join(out, "fit")
    grid = _grid_path()
    synth = console_script("slmjax-synth")
    common = [f"--seed={_SEED.value}"]

    def bench_cmds():
        return [synth + [task, f"--out={bench}", f"--n={_BENCH_N.value}",
                         f"--voices={_BENCH_VOICES.value}"] + common
                for task in ("sblimp", "swuggy", "storycloze")]

    def corpus_cmds():
        return [synth + ["corpus", f"--out={corpus}", f"--hours={_HOURS.value}",
                         f"--voices={_VOICES.value}", f"--exclude={bench}",
                         f"--test_fraction={_TEST_FRACTION.value}"] + common]

    manifest = os.path.join(corpus, "manifest.jsonl")
    units_cli = console_script("slmjax-units")

    def fit_tok_cmds():
        return [units_cli + ["fit", f"--audio={manifest}", f"--out={tok}", f"--k={_K.value}"]]

    def encode_cmds():
        return [units_cli + ["encode", f"--tokenizer={tok}", f"--audio={manifest}", f"--out={units}"]]

    sweep = console_script("slmjax-sweep") + [f"--config={grid}", f"--root={runs}",
                                               f"--config.data_path={units}"]

    def sweep_cmds():
        return [sweep + ["--launcher=local"]]

    def eval_cmds():
        workdirs = sorted(os.path.dirname(p) for p in glob.glob(os.path.join(runs, "*", "run.json")))
        if not workdirs:
            raise StageError(f"no runs under {runs}: the sweep stage wrote nothing")
        return [console_script("slmjax-eval") + [f"--workdir={w}", f"--benchmarks={bench}", f"--tokenizer={tok}",
                                                  "--steps=last"] for w in workdirs]

    def fit_cmds():
        return [console_script("slmjax-fit") + [f"--runs={runs}", f"--out={fit}",
                                                 f"--bootstrap={_BOOTSTRAP.value}"]]

    def write_report():
        report.write_demo_report(out)

    return [
        Stage("benchmarks", "synthesise sBLIMP, sWUGGY, sSC and tSC sets", 50, bench_cmds),
        Stage("corpus", f"synthesise a {_HOURS.value:g}-hour story corpus", 3 * _HOURS.value, corpus_cmds),
        Stage("tokenizer", "fit the MFCC k-means tokenizer", 65, fit_tok_cmds),
        Stage("encode", "encode the corpus into units", 1.25 * _HOURS.value, encode_cmds),
        Stage("sweep", "train the grid (slmjax-sweep, local)", 440, sweep_cmds),
        Stage("eval", "score every final checkpoint on the four benchmarks", 260, eval_cmds),
        Stage("fit", "fit scaling laws with bootstrap intervals", 20, fit_cmds),
        Stage("report", "write report.md", 5, lambda: [], after=write_report),
    ]


def settings() -> dict:
    """The flags that shape the demo's outputs, with digests of the grid file and of the code."""
    with open(_grid_path(), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    return {"hours": _HOURS.value, "voices": _VOICES.value, "test_fraction": _TEST_FRACTION.value,
            "bench_voices": _BENCH_VOICES.value, "bench_n": _BENCH_N.value, "k": _K.value,
            "grid": _GRID.value, "grid_sha256": digest, "bootstrap": _BOOTSTRAP.value,
            "seed": _SEED.value, "code_sha256": code_digest(REPO)}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    out = os.path.abspath(_OUT.value)
    if not os.path.isfile(_grid_path()):
        print(f"slmjax demo: --grid={_GRID.value}: no such file ({_grid_path()})", file=sys.stderr)
        return 1
    try:
        os.makedirs(out, exist_ok=True)
        problem = check_settings(out, settings())
    except OSError as e:  # --out is a file, or not writable
        problem = f"--out={_OUT.value}: {errortext.describe(e)}"
    if problem:
        print(f"slmjax demo: {problem}", file=sys.stderr)
        return 1
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    try:
        run_stages(build_stages(out), out, env=env)
    except StageError as e:
        print(f"slmjax demo: {e}", file=sys.stderr)
        return 1
    print(f"report: {os.path.join(out, 'report.md')}")
    return 0


def run():
    app.run(main)


if __name__ == "__main__":
    run()

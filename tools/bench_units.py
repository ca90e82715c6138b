"""Speech-to-units speed: MFCC + units real-time factor, and HuBERT-base in JAX vs PyTorch.

  PYTHONPATH=. python tools/bench_units.py [--audio=DIR] [--hubert_seconds=20] [--repeats=3]

Real-time factor (RTF) = seconds of audio per second of wall time (higher is faster). The MFCC path
is measured end to end from files (load, features, nearest centroid, collapse). HuBERT-base (random
weights: the architecture alone sets the speed) runs in our Flax encoder and in transformers'
PyTorch HubertModel on the same audio, alternating, median of ``--repeats``; JAX compile time is
reported apart. Prints a table; the last line is one JSON object.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import benchcli  # noqa: E402  (tools/, beside this script)
from slmjax import cli_help, hostalloc  # noqa: E402  (the repository on the path first)

cli_help.DEFINE_path("audio", "/usr/share/pocketsphinx/test/data", "Folder of speech (synthetic tones when absent).")
flags.DEFINE_float("hubert_seconds", 20.0, "Seconds of audio per HuBERT measurement (files concatenated, cut into utterances).")
benchcli.positive("hubert_seconds")
flags.DEFINE_float("utterance_seconds", 10.0, "HuBERT utterance length.")
benchcli.positive("utterance_seconds")
flags.DEFINE_integer("repeats", 3, "Timed repeats (median).", lower_bound=1)
flags.DEFINE_integer("k", 100, "k-means units for the MFCC path.", lower_bound=2)
flags.DEFINE_integer("hubert_layer", 12, "Layer returned by our encoder (12 = all layers, as PyTorch computes).",
                     lower_bound=0, upper_bound=12)  # hubert-base has 12 layers
FLAGS = flags.FLAGS


def _median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_mfcc(utts, repeats, k):
    import librosa
    import numpy as np

    from slmjax.units.audio import load_wave
    from slmjax.units.features import MfccFeatures
    from slmjax.units.tokenizer import one_blas_thread
    from slmjax.units.fit import fit_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tok = fit_tokenizer(MfccFeatures(), utts, tmp, k=k, progress=False)
    seconds = sum(load_wave(u.source).size for u in utts) / 16000

    def run():
        for u in utts:
            tok.encode_units(load_wave(u.source))

    run()
    wall = _median_time(run, repeats)
    waves = [load_wave(u.source) for u in utts]
    with one_blas_thread():
        feat_wall = _median_time(lambda: [tok.features(w) for w in waves], repeats)

    def librosa_mfcc():  # the same 39-dim features with librosa, as a baseline
        for w in waves:
            c = librosa.feature.mfcc(y=w, sr=16000, n_mfcc=13, n_fft=512, hop_length=160, win_length=400, n_mels=40,
                                     fmin=20.0, center=False)
            d = librosa.feature.delta(c, width=5)
            np.concatenate([c, d, librosa.feature.delta(d, width=5)])

    with one_blas_thread():  # librosa is faster with one BLAS thread here too: compare like with like
        librosa_mfcc()
        lib_wall = _median_time(librosa_mfcc, repeats)
    return {"seconds": seconds, "rtf": seconds / wall, "features_rtf": seconds / feat_wall,
            "librosa_rtf": seconds / lib_wall, "files": len(utts)}


def bench_hubert(waves, repeats, layer):
    import jax
    import numpy as np
    import torch
    import transformers

    from slmjax.units.hubert_features import HubertFeatures
    from slmjax.units.hubert_import import load_hubert

    torch.manual_seed(0)
    model = transformers.HubertModel(transformers.HubertConfig()).eval()  # hubert-base architecture
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        ours = HubertFeatures(load_hubert(tmp), layer=layer, bucket_seconds=1.0)
    seconds = sum(w.size for w in waves) / 16000
    t0 = time.perf_counter()
    ours(waves[0])
    compile_s = time.perf_counter() - t0

    def run_jax():
        for w in waves:
            ours(w)

    def run_torch():
        with torch.inference_mode():
            for w in waves:
                model(torch.from_numpy(w)[None], output_hidden_states=False)

    run_torch()
    jt, tt = [], []
    for _ in range(repeats):  # alternate so that load on the shared machine hits both alike
        jt.append(_median_time(run_jax, 1))
        tt.append(_median_time(run_torch, 1))
    with torch.inference_mode():
        ref = model(torch.from_numpy(waves[0])[None], output_hidden_states=True).hidden_states[layer][0].numpy()
    err = float(np.abs(ours(waves[0]) - ref).max())
    return {"seconds": seconds, "rtf": seconds / statistics.median(jt), "baseline_rtf": seconds / statistics.median(tt),
            "compile_s": compile_s, "max_abs_err": err, "torch_threads": torch.get_num_threads(),
            "jax_devices": len(jax.devices())}


def main(_):
    import numpy as np

    from slmjax.units.audio import load_wave
    from slmjax.units.sources import Utterance, list_utterances

    if os.path.isdir(FLAGS.audio):
        utts = list_utterances(FLAGS.audio, holdout=0.0)
        source = FLAGS.audio
    else:
        import soundfile as sf

        tmp = tempfile.mkdtemp()
        rng = np.random.default_rng(0)
        for i in range(10):
            sf.write(os.path.join(tmp, f"t{i}.wav"), (0.1 * rng.standard_normal(16000 * 3)).astype(np.float32), 16000)
        utts, source = list_utterances(tmp, holdout=0.0), "synthetic noise (speech folder absent)"
    mf = bench_mfcc(utts, FLAGS.repeats, FLAGS.k)
    audio = np.concatenate([load_wave(u.source) for u in utts])
    need = int(FLAGS.hubert_seconds * 16000)
    audio = np.tile(audio, -(-need // audio.size))[:need]
    step = int(FLAGS.utterance_seconds * 16000)
    waves = [audio[i : i + step] for i in range(0, need, step)]
    hb = bench_hubert(waves, FLAGS.repeats, FLAGS.hubert_layer)
    cpu = os.cpu_count()
    print(f"audio: {source}; {cpu} CPU cores; load average {os.getloadavg()[0]:.1f} (shared machine if > {cpu}); "
          f"host allocator {hostalloc.active_allocator()} (SLMJAX_ALLOCATOR=system for glibc's default)")
    print(f"| path | audio s | real-time factor |")
    print(f"|---|---|---|")
    print(f"| MFCC + k={FLAGS.k} units, from files ({mf['files']} files) | {mf['seconds']:.1f} | {mf['rtf']:.0f}x |")
    print(f"| MFCC features only | {mf['seconds']:.1f} | {mf['features_rtf']:.0f}x |")
    print(f"| MFCC features, librosa.feature.mfcc + delta (baseline) | {mf['seconds']:.1f} | {mf['librosa_rtf']:.0f}x |")
    print(f"| HuBERT-base, ours (JAX, layer {FLAGS.hubert_layer}) | {hb['seconds']:.1f} | {hb['rtf']:.2f}x |")
    print(f"| HuBERT-base, transformers PyTorch ({hb['torch_threads']} threads) | {hb['seconds']:.1f} | {hb['baseline_rtf']:.2f}x |")
    print(f"JAX/PyTorch speed ratio {hb['rtf'] / hb['baseline_rtf']:.2f}; JAX compile {hb['compile_s']:.1f} s (once per "
          f"length bucket); max |JAX - PyTorch| on layer {FLAGS.hubert_layer}: {hb['max_abs_err']:.1e}")
    print(json.dumps({"mfcc_rtf": round(mf["rtf"], 1), "mfcc_features_rtf": round(mf["features_rtf"], 1),
                      "mfcc_librosa_rtf": round(mf["librosa_rtf"], 1),
                      "hubert_rtf": round(hb["rtf"], 3), "hubert_baseline_rtf": round(hb["baseline_rtf"], 3),
                      "hubert_speed_ratio": round(hb["rtf"] / hb["baseline_rtf"], 3), "hubert_compile_s": round(hb["compile_s"], 1),
                      "load_average": round(os.getloadavg()[0], 1), "cpu_count": cpu,
                      "allocator": hostalloc.active_allocator()}))


if __name__ == "__main__":
    hostalloc.use_fast_allocator()  # as slmjax-units
    app.run(main, flags_parser=benchcli.parse_flags)

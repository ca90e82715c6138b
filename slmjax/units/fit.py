"""``fit``: read a seeded subset of training audio, fit k-means (and coarse tokens), save a tokenizer."""

from __future__ import annotations

import time

import numpy as np
from tqdm import tqdm

from slmjax.units import ids as unit_ids
from slmjax.units.audio import BadAudio, check_wave
from slmjax.units.errors import UnitsError
from slmjax.units.kmeans import assign, fit_kmeans, import_sklearn
from slmjax.units.sources import list_utterances
from slmjax.units.tokenizer import one_blas_thread, save_tokenizer


def read_features(features, utts, max_seconds: float, seed: int, progress: bool = True,
                  max_frames: int | None = None) -> list[np.ndarray]:
    """Features of a seeded random subset of ``utts`` (train split), up to ``max_seconds`` of audio
    and ``max_frames`` frames (bounds memory: 1M HuBERT-base frames are 3 GB)."""
    train = [u for u in utts if u.split == "train"] or utts
    order = np.random.default_rng(seed).permutation(len(train))
    feats, seconds, frames, t0 = [], 0.0, 0, time.perf_counter()
    bar = tqdm(total=len(train), desc="fit: features", unit="file", disable=not progress)
    for i in order:
        if seconds >= max_seconds or (max_frames and frames >= max_frames):
            break
        bar.update(1)
        try:
            wave = train[i].load()
            check_wave(wave, features.min_samples)
        except BadAudio:
            continue
        with one_blas_thread():
            feats.append(features(wave))
        frames += len(feats[-1])
        seconds += wave.size / 16000
        bar.set_postfix(rtf=f"{seconds / max(time.perf_counter() - t0, 1e-9):.0f}x")
    bar.close()
    if not feats:
        raise UnitsError("nothing could be read to fit the tokenizer: every input was unreadable, empty, silent or too short")
    return feats


def fit_tokenizer(features, utts, out: str, k: int, seed: int = 0, method: str = "lloyd", iters: int = 100,
                  batch_size: int = 10000, max_frames: int = 1_000_000, fit_hours: float = 10.0,
                  kmeans_file: str | None = None, coarse: str = "none", coarse_vocab: int = 5000, progress: bool = True):
    """Fit (or import) centroids and optional coarse tokens; write and return the tokenizer."""
    # imported centroids need audio only to train coarse tokens
    need_audio = not kmeans_file or coarse != "none"
    feats = read_features(features, utts, fit_hours * 3600, seed, progress, max_frames) if need_audio else []
    if kmeans_file:
        cents = import_sklearn(kmeans_file)
        header = {"imported_from": kmeans_file}
        if cents.shape[1] != features.dim:
            raise UnitsError(f"{kmeans_file}: centroids of dim {cents.shape[1]}, features of dim {features.dim}")
    else:
        x = np.concatenate(feats)
        if x.shape[0] > max_frames:
            x = x[np.sort(np.random.default_rng(seed).choice(x.shape[0], max_frames, replace=False))]
        cents, header = fit_kmeans(x, k, seed=seed, iters=iters, method=method, batch_size=batch_size, progress=progress)
    coarse_bytes = None
    if coarse != "none":
        from slmjax.units.coarse import train_coarse

        seqs = [unit_ids.collapse(assign(f, cents)) for f in feats]
        coarse_bytes = train_coarse(seqs, cents.shape[0], coarse_vocab, coarse)
    return save_tokenizer(out, features, cents, header, coarse_bytes)


def fit_from_flags(FLAGS):
    if FLAGS.features == "mfcc":
        from slmjax.units.features import MfccFeatures
        from slmjax.units.mfcc import MfccConfig

        features = MfccFeatures(MfccConfig(normalize=FLAGS.mfcc_norm))
        k = FLAGS.k or 100
    else:
        if not FLAGS.hubert_checkpoint:
            raise UnitsError("--features=hubert needs --hubert_checkpoint (an HF HubertModel or fairseq checkpoint)")
        from slmjax.units.hubert_features import HubertFeatures

        features = HubertFeatures.from_checkpoint(FLAGS.hubert_checkpoint, FLAGS.hubert_layer, FLAGS.chunk_seconds,
                                                  save_dir=FLAGS.out)
        k = FLAGS.k or 500
    utts = list_utterances(FLAGS.audio, data_dir=FLAGS.data_dir, holdout=FLAGS.holdout)
    tok = fit_tokenizer(features, utts, FLAGS.out, k, FLAGS.seed, FLAGS.kmeans_method, FLAGS.kmeans_iters,
                        FLAGS.kmeans_batch, FLAGS.max_frames, FLAGS.fit_hours, FLAGS.kmeans_file, FLAGS.coarse,
                        FLAGS.coarse_vocab)
    print(f"wrote tokenizer {FLAGS.out}: {tok.identity['kind']} k={tok.k} vocab_size={tok.vocab_size}")

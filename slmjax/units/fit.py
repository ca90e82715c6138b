"""``fit``: read a seeded subset of training audio, fit k-means (and coarse tokens), save a tokenizer."""

from __future__ import annotations

import math
import os
import time

import numpy as np
from tqdm import tqdm

from slmjax.units import ids as unit_ids
from slmjax.units.audio import check_wave, nothing_usable, skip_row, write_skipped
from slmjax.units.coarse import check_coarse_args, train_coarse
from slmjax.units.errors import UnitsError, make_dir
from slmjax.units.kmeans import assign, check_kmeans_args, fit_kmeans, import_sklearn
from slmjax.units.sources import list_utterances
from slmjax.units.tokenizer import one_blas_thread, save_tokenizer


def read_features(features, utts, max_seconds: float, seed: int, progress: bool = True,
                  max_frames: int | None = None) -> tuple[list[np.ndarray], list[dict]]:
    """Features of a seeded random subset of ``utts`` (train split), up to ``max_seconds`` of audio
    and ``max_frames`` frames, the last file cut to them (bounds memory: 1M HuBERT-base frames are
    3 GB), and the skipped.jsonl rows of the inputs tried that could not be used."""
    train = [u for u in utts if u.split == "train"] or utts
    order = np.random.default_rng(seed).permutation(len(train))
    feats, skipped, seconds, frames, t0 = [], [], 0.0, 0, time.perf_counter()
    bar = tqdm(total=len(train), desc="fit: features", unit="file", disable=not progress)
    for i in order:
        if seconds >= max_seconds or (max_frames and frames >= max_frames):
            break
        bar.update(1)
        try:
            wave = train[i].load()
            check_wave(wave, features.min_samples)
            with one_blas_thread():
                feats.append(features(wave))
        except Exception as exc:  # noqa: BLE001 - bad audio, a decoder or feature failure skips this input only
            skipped.append(skip_row(train[i], exc))
            continue
        # the last file is cut to the limits: one long recording (an hour-long audiobook file is
        # 180k frames) would otherwise take the fit far past --max_frames' memory bound
        n, file_seconds = len(feats[-1]), wave.size / 16000
        keep = n if seconds + file_seconds <= max_seconds else math.ceil(n * (max_seconds - seconds) / file_seconds)
        if max_frames:
            keep = min(keep, max_frames - frames)
        if keep < n:
            feats[-1] = feats[-1][:keep]
            file_seconds *= keep / n
        frames += keep
        seconds += file_seconds
        bar.set_postfix(rtf=f"{seconds / max(time.perf_counter() - t0, 1e-9):.0f}x")
    bar.close()
    return feats, skipped


def check_fit_args(k: int, iters: int, method: str, batch_size: int, max_frames: int, fit_hours: float,
                   kmeans_file: str | None, coarse: str = "none", coarse_vocab: int = 5000) -> None:
    """UnitsError naming the first meaningless fit setting (before any feature model is loaded)."""
    if not kmeans_file:
        check_kmeans_args(k, iters, method, batch_size)
        if coarse != "none":  # with a k-means file, k is known once it is read
            check_coarse_args(k, coarse_vocab, coarse)
    if not max_frames >= 1:
        raise UnitsError(f"--max_frames must be >= 1, got {max_frames}")
    if not fit_hours > 0:
        raise UnitsError(f"--fit_hours must be > 0, got {fit_hours}")


def fit_tokenizer(features, utts, out: str, k: int, seed: int = 0, method: str = "lloyd", iters: int = 100,
                  batch_size: int = 10000, max_frames: int = 1_000_000, fit_hours: float = 10.0,
                  kmeans_file: str | None = None, coarse: str = "none", coarse_vocab: int = 5000, progress: bool = True):
    """Fit (or import) centroids and optional coarse tokens; write and return the tokenizer.

    Inputs that could not be used are listed in ``out/skipped.jsonl``.
    """
    check_fit_args(k, iters, method, batch_size, max_frames, fit_hours, kmeans_file, coarse, coarse_vocab)
    if kmeans_file:
        cents = import_sklearn(kmeans_file)
        header = {"imported_from": kmeans_file}
        if cents.shape[1] != features.dim:
            raise UnitsError(f"{kmeans_file}: centroids of dim {cents.shape[1]}, features of dim {features.dim}")
        if coarse != "none":
            check_coarse_args(cents.shape[0], coarse_vocab, coarse)
    make_dir(out)
    # imported centroids need audio only to train coarse tokens
    need_audio = not kmeans_file or coarse != "none"
    feats, skipped = [], []
    if need_audio:
        feats, skipped = read_features(features, utts, fit_hours * 3600, seed, progress, max_frames)
    write_skipped(os.path.join(out, "skipped.jsonl"), skipped)
    if need_audio and not feats:
        raise nothing_usable("read to fit the tokenizer", skipped, os.path.join(out, "skipped.jsonl"))
    if not kmeans_file:
        x = np.concatenate(feats)
        if x.shape[0] > max_frames:
            x = x[np.sort(np.random.default_rng(seed).choice(x.shape[0], max_frames, replace=False))]
        cents, header = fit_kmeans(x, k, seed=seed, iters=iters, method=method, batch_size=batch_size, progress=progress)
    coarse_bytes = None
    if coarse != "none":
        seqs = [unit_ids.collapse(assign(f, cents)) for f in feats]
        coarse_bytes = train_coarse(seqs, cents.shape[0], coarse_vocab, coarse)
    return save_tokenizer(out, features, cents, header, coarse_bytes)


def fit_from_flags(FLAGS):
    k = FLAGS.k if FLAGS.k is not None else 100 if FLAGS.features == "mfcc" else 500
    # Checked before a HuBERT checkpoint is imported (minutes for a large one).
    check_fit_args(k, FLAGS.kmeans_iters, FLAGS.kmeans_method, FLAGS.kmeans_batch, FLAGS.max_frames,
                   FLAGS.fit_hours, FLAGS.kmeans_file, FLAGS.coarse, FLAGS.coarse_vocab)
    utts = list_utterances(FLAGS.audio, data_dir=FLAGS.data_dir, holdout=FLAGS.holdout)
    if FLAGS.features == "mfcc":
        from slmjax.units.features import MfccFeatures
        from slmjax.units.mfcc import MfccConfig

        features = MfccFeatures(MfccConfig(normalize=FLAGS.mfcc_norm))
    else:
        if not FLAGS.hubert_checkpoint:
            raise UnitsError("--features=hubert needs --hubert_checkpoint (an HF HubertModel or fairseq checkpoint)")
        from slmjax.units.hubert_features import HubertFeatures

        features = HubertFeatures.from_checkpoint(FLAGS.hubert_checkpoint, FLAGS.hubert_layer, FLAGS.chunk_seconds)
    tok = fit_tokenizer(features, utts, FLAGS.out, k, FLAGS.seed, FLAGS.kmeans_method, FLAGS.kmeans_iters,
                        FLAGS.kmeans_batch, FLAGS.max_frames, FLAGS.fit_hours, FLAGS.kmeans_file, FLAGS.coarse,
                        FLAGS.coarse_vocab)
    with open(os.path.join(FLAGS.out, "skipped.jsonl")) as f:
        skipped = sum(1 for _ in f)
    print(f"wrote tokenizer {FLAGS.out}: {tok.identity['kind']} k={tok.k} vocab_size={tok.vocab_size}, "
          f"skipped {skipped} unusable input(s) (listed in {os.path.join(FLAGS.out, 'skipped.jsonl')})")

"""The tokenizer directory and the public ``load_tokenizer`` surface (docs/interfaces.md).

A tokenizer directory holds ``tokenizer.json`` (feature spec, k, coarse model), ``centroids.npy``
with its ``centroids.json`` header, optionally ``coarse.model`` (SentencePiece) and, for HuBERT
features, the imported encoder weights. It is self-contained: encoding never needs the original
checkpoint or PyTorch.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib

import numpy as np

from slmjax import fileio
from slmjax.errortext import describe
from slmjax.units import ids as unit_ids
from slmjax.units.audio import BadAudio, as_wave, check_wave, load_wave
from slmjax.units.coarse import Coarse
from slmjax.units.errors import UnitsError, make_dir
from slmjax.units.features import build_features
from slmjax.units.kmeans import assign, centroids_sha256

FORMAT_VERSION = 1
_BLAS = []


def one_blas_thread():
    """Context limiting BLAS to one thread: per-utterance matmuls are small, and OpenBLAS threads
    spinning on a shared machine made the MFCC path 14x slower."""
    if not _BLAS:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS.append(ThreadpoolController())
        except ImportError:
            _BLAS.append(None)
    return contextlib.nullcontext() if _BLAS[0] is None else _BLAS[0].limit(limits=1, user_api="blas")


class Tokenizer:
    """Speech -> units: features, nearest centroid, repeats collapsed, optional coarse tokens."""

    def __init__(self, features, centroids: np.ndarray, coarse: Coarse | None = None):
        self.features = features
        self.centroids = np.ascontiguousarray(centroids, np.float32)
        self._cents_sq = np.sum(self.centroids * self.centroids, 1)
        self.k = int(self.centroids.shape[0])
        if self.centroids.shape[1] != features.dim:
            raise UnitsError(f"centroids have dim {self.centroids.shape[1]} but {features.kind} features have dim {features.dim}")
        if coarse is not None:
            coarse.check_units(self.k)
        self.coarse = coarse
        self.directory = None  # set by load_tokenizer; recorded in unit dataset manifests
        n_base = coarse.vocab_size if coarse is not None else self.k
        special = unit_ids.special_ids(n_base)
        self.eos_id, self.pad_id, self.vocab_size = special["eos_id"], special["pad_id"], special["vocab_size"]
        self.frame_rate = float(features.frame_rate)
        self.dtype = unit_ids.storage_dtype(self.vocab_size)
        coarse_id = None if coarse is None else {"type": coarse.model_type, "vocab_size": coarse.vocab_size, "sha256": coarse.sha256}
        self.identity = {"kind": features.kind, "k": self.k, "centroids_sha256": centroids_sha256(self.centroids),
                         "coarse": coarse_id, "features_sha256": features.fingerprint()}

    def frame_units(self, wave: np.ndarray) -> np.ndarray:
        """Uncollapsed nearest-centroid unit per feature frame."""
        with one_blas_thread():
            feats = self.features(wave)
            return assign(feats, self.centroids, self._cents_sq)

    def encode_units(self, wave, return_durations: bool = False):
        """Collapsed units 0..K-1 (no coarse tokens, no EOS); durations in frames if asked.

        An empty, non-finite or shorter-than-one-frame wave is a UnitsError (silence is encoded)."""
        wave = as_wave(wave)
        try:
            check_wave(wave, self.features.min_samples, silence_peak=0.0)
        except BadAudio as exc:
            raise UnitsError(f"cannot encode this wave: {exc}") from None
        return unit_ids.collapse(self.frame_units(wave), return_durations=return_durations)

    def encode_wave(self, wave) -> np.ndarray:
        """Collapsed ids, coarse tokens applied, no EOS (int32)."""
        units = self.encode_units(wave)
        return self.coarse.encode(units) if self.coarse is not None else units

    def encode_file(self, path: str) -> np.ndarray:
        """Load mono 16 kHz audio, then :meth:`encode_wave`; bad audio raises UnitsError."""
        try:
            wave = load_wave(path)
            check_wave(wave, self.features.min_samples)
        except BadAudio as exc:
            raise UnitsError(f"{path}: {exc}") from None
        return self.encode_wave(wave)


def withdraw(tokdir: str) -> None:
    """Remove ``tokdir/tokenizer.json``, which makes the directory a tokenizer, before any of its files
    is rewritten: a write killed half-way (new centroids or weights beside the old coarse model)
    then never loads as a tokenizer. ``save_tokenizer`` writes it again last."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(tokdir, "tokenizer.json"))


def save_tokenizer(tokdir: str, features, centroids: np.ndarray, kmeans_header: dict, coarse_bytes: bytes | None = None,
                   extra: dict | None = None) -> Tokenizer:
    """Write a tokenizer directory (each file via a temp name then rename); returns the loaded tokenizer."""
    from slmjax.units.kmeans import save_centroids

    make_dir(tokdir)
    withdraw(tokdir)  # comes back last
    if hasattr(features, "save"):  # HuBERT: its encoder weights
        features.save(tokdir)
    save_centroids(os.path.join(tokdir, "centroids.npy"), centroids, kmeans_header)
    if coarse_bytes is not None:
        fileio.atomic_write_bytes(os.path.join(tokdir, "coarse.model"), coarse_bytes)
    elif os.path.exists(os.path.join(tokdir, "coarse.model")):
        os.remove(os.path.join(tokdir, "coarse.model"))
    meta = {"format_version": FORMAT_VERSION, "features": features.spec(), "k": int(centroids.shape[0]),
            "centroids": "centroids.npy", "coarse": "coarse.model" if coarse_bytes is not None else None, **(extra or {})}
    fileio.atomic_write_bytes(os.path.join(tokdir, "tokenizer.json"), json.dumps(meta, indent=1).encode())
    return load_tokenizer(tokdir)


def load_tokenizer(tokdir: str) -> Tokenizer:
    """Load a tokenizer directory written by ``slmjax-units fit``."""
    path = os.path.join(tokdir, "tokenizer.json")
    if not os.path.exists(path):
        raise UnitsError(f"not a tokenizer directory (no tokenizer.json): {tokdir}")
    meta = _read(path, _read_meta)
    if meta.get("format_version") != FORMAT_VERSION:
        raise UnitsError(f"{path}: unsupported format_version {meta.get('format_version')}")
    features = _read(path, lambda _: build_features(meta["features"], tokdir))
    centroids = _read(os.path.join(tokdir, meta["centroids"]), _read_centroids)
    coarse = None
    if meta.get("coarse"):
        coarse = _read(os.path.join(tokdir, meta["coarse"]), lambda p: Coarse(pathlib.Path(p).read_bytes()))
    tok = Tokenizer(features, centroids, coarse)
    tok.directory = os.path.abspath(tokdir)
    return tok


def _read(path: str, parse):
    """``parse(path)``; a missing, unreadable or malformed file is one UnitsError naming it."""
    try:
        return parse(path)
    except UnitsError:
        raise
    except Exception as exc:  # noqa: BLE001 - json, numpy, sentencepiece and safetensors raise their own
        raise UnitsError(f"tokenizer file {path} is missing or corrupt ({describe(exc)}); refit the tokenizer") from None


def _read_meta(path: str) -> dict:
    with open(path) as f:
        meta = json.load(f)
    if not isinstance(meta, dict) or "features" not in meta or not isinstance(meta.get("centroids"), str):
        raise ValueError("expected a JSON object with 'features' and 'centroids' (a file name) fields")
    return meta


def _read_centroids(path: str) -> np.ndarray:
    cents = np.load(path, allow_pickle=False)
    if cents.ndim != 2 or cents.shape[0] < 1 or cents.dtype.kind != "f":
        raise ValueError(f"expected a [k, dim] float array, got {cents.dtype} {cents.shape}")
    return cents

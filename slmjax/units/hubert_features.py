"""HuBERT features for the tokenizer: one chosen layer, chunks of at most ``chunk_seconds``.

Audio longer than a chunk runs in overlapping chunks on the whole-file frame grid: each starts on a
multiple of the hop and spans whole frames, so it yields exactly the whole-file frames it covers; each
keeps its core and drops ``context_frames`` of context either side (at least the positional conv's
reach, so a kept frame's transformer input sees the same frames as in one pass). Each chunk is
zero-padded to a multiple of ``bucket_seconds`` so compiled code is reused across lengths; the encoder
masks the padding, so features equal an unpadded run. Checkpoints trained on
normalised waves (``norm_eps``, see hubert_import) get each whole utterance normalised before chunking,
as fairseq's feature reader does. Weights are kept in the tokenizer directory as ``hubert.safetensors``
(our parameter names, config in the metadata).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from slmjax import fileio
from slmjax.errortext import describe
from slmjax.units.errors import UnitsError, make_dir
from slmjax.units.hubert import HubertConfig, HubertEncoder
from slmjax.units.tokenizer import withdraw

WEIGHTS_FILE = "hubert.safetensors"


@functools.lru_cache(maxsize=8)
def _runner(graphdef, layer: int):
    """One jitted encoder per architecture and layer, shared by every instance (compiles once)."""

    @jax.jit
    def run(state, wave, n_valid):
        hidden, _, _ = nnx.merge(graphdef, state)(wave, n_valid, num_layers=layer)
        return hidden[layer]

    return run


class HubertFeatures:
    """``__call__(wave) -> float32 [frames, hidden]`` from HF ``hidden_states[layer]``."""

    kind = "hubert"

    def __init__(self, model: HubertEncoder, layer: int, chunk_seconds: float = 30.0, bucket_seconds: float = 1.0,
                 weights_sha256: str | None = None, norm_eps: float | None = None, context_frames: int | None = None):
        cfg = model.cfg
        if not 0 <= layer <= cfg.num_hidden_layers:
            raise UnitsError(f"--hubert_layer must be in [0, {cfg.num_hidden_layers}], got {layer}")
        self.cfg, self.layer = cfg, layer
        self.chunk_samples = int(chunk_seconds * 16000)
        if self.chunk_samples < cfg.receptive_field:
            raise UnitsError(f"--chunk_seconds must be at least {cfg.receptive_field / 16000:g} (one frame), got {chunk_seconds:g}")
        self.bucket_samples = max(int(bucket_seconds * 16000), cfg.hop)
        self.context_frames = cfg.num_conv_pos_embeddings // 2 if context_frames is None else int(context_frames)
        if self.context_frames < 0:
            raise UnitsError(f"chunk_context_frames must be >= 0, got {self.context_frames}")
        self.frame_rate = 16000.0 / cfg.hop
        self.min_samples = cfg.receptive_field
        self.dim = cfg.hidden_size
        self.weights_sha256 = weights_sha256
        self.norm_eps = norm_eps
        self.model = model
        graphdef, self._state = nnx.split(model)
        self._run = _runner(graphdef, layer)

    @classmethod
    def from_checkpoint(cls, path: str, layer: int, chunk_seconds: float = 30.0, save_dir: str | None = None):
        """Import HF/fairseq weights; with ``save_dir`` also store them there for the tokenizer
        (``save_tokenizer`` stores them itself, once the fit has succeeded)."""
        from slmjax.units.hubert_import import import_hubert

        model, norm_eps = import_hubert(path)
        feats = cls(model, layer, chunk_seconds, weights_sha256=weights_sha256(model), norm_eps=norm_eps)
        if save_dir is not None:
            make_dir(save_dir)
            withdraw(save_dir)
            feats.save(save_dir)
        return feats

    def save(self, tokdir: str) -> None:
        """Write the encoder weights into the tokenizer directory ``tokdir``."""
        save_weights(self.model, os.path.join(tokdir, WEIGHTS_FILE))

    @classmethod
    def from_saved(cls, path: str, layer: int, chunk_seconds: float = 30.0, norm_eps: float | None = None,
                   context_frames: int | None = None):
        from safetensors import safe_open

        from slmjax.units.hubert_import import set_params

        if not os.path.exists(path):
            raise UnitsError(f"HuBERT weights missing from the tokenizer: {path}")
        try:
            with safe_open(path, framework="numpy") as f:
                cfg = HubertConfig.from_dict(json.loads(f.metadata()["config"]))
                params = {k: f.get_tensor(k) for k in f.keys()}
                sha = f.metadata().get("sha256")
            model = set_params(HubertEncoder(cfg), params)
        except UnitsError as exc:
            raise UnitsError(f"{path}: {exc}; refit the tokenizer") from None
        except Exception as exc:  # noqa: BLE001 - safetensors, json, a metadata without config
            raise UnitsError(f"{path}: not HuBERT weights written by slmjax-units fit ({describe(exc)}); refit the tokenizer") from None
        return cls(model, layer, chunk_seconds, weights_sha256=sha, norm_eps=norm_eps, context_frames=context_frames)

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        wave = np.asarray(wave, np.float32)
        if self.norm_eps is not None:
            w = wave.astype(np.float64)
            wave = ((w - w.mean()) / np.sqrt(w.var() + self.norm_eps)).astype(np.float32)
        runs = self.chunks(wave.size)
        feats = [self._encode(wave[start : start + size])[drop : drop + keep] for start, size, drop, keep in runs]
        return np.concatenate(feats) if feats else np.zeros((0, self.dim), np.float32)

    def chunks(self, n_samples: int) -> list[tuple[int, int, int, int]]:
        """(first sample, samples, frames to drop, frames to keep) of each encoder run over ``n_samples``.

        Runs start at a multiple of the hop and span whole frames, so run frame i is whole-file frame
        first_sample / hop + i; the kept frames tile the whole file's frames once, in order."""
        cfg = self.cfg
        total = max(cfg.n_frames(n_samples), 0)
        if n_samples <= self.chunk_samples:
            return [(0, n_samples, 0, total)] if total else []
        window = cfg.n_frames(self.chunk_samples)
        context = min(self.context_frames, (window - 1) // 4)  # a short chunk still keeps half its frames
        core = window - 2 * context
        runs = []
        for first in range(0, total, core):
            last = min(first + core, total)
            lo, hi = max(0, first - context), min(total, last + context)
            runs.append((lo * cfg.hop, (hi - lo - 1) * cfg.hop + cfg.receptive_field, first - lo, last - first))
        return runs

    def _encode(self, chunk: np.ndarray) -> np.ndarray:
        """Layer features of one run, padded to the bucket length (masked, so as unpadded)."""
        padded = math.ceil(chunk.size / self.bucket_samples) * self.bucket_samples
        buf = np.zeros((1, padded), np.float32)
        buf[0, : chunk.size] = chunk
        out = self._run(self._state, jnp.asarray(buf), jnp.asarray([chunk.size], jnp.int32))
        return np.asarray(out[0, : self.cfg.n_frames(chunk.size)])

    def spec(self) -> dict:
        spec = {"kind": "hubert", "weights": WEIGHTS_FILE, "weights_sha256": self.weights_sha256, "layer": self.layer,
                "chunk_seconds": self.chunk_samples / 16000, "chunk_context_frames": self.context_frames,
                "config": dataclasses.asdict(self.cfg)}
        if self.norm_eps is not None:  # absent when off, so tokenizers of unnormalised models keep their identity
            spec["norm_eps"] = self.norm_eps
        return spec

    def fingerprint(self) -> str:
        spec = {k: v for k, v in self.spec().items() if k != "weights"}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _flat_params(model: HubertEncoder) -> dict:
    return {".".join(str(p) for p in path_): np.asarray(v[...]) for path_, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def _params_sha256(flat: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(flat):
        h.update(k.encode())
        h.update(np.ascontiguousarray(flat[k]).tobytes())
    return h.hexdigest()


def weights_sha256(model: HubertEncoder) -> str:
    """The hash of our parameters (names and bytes) that identifies the encoder in the tokenizer."""
    return _params_sha256(_flat_params(model))


def save_weights(model: HubertEncoder, path: str) -> str:
    """Write our parameters as safetensors (temp name, then rename); returns their sha256."""
    from safetensors.numpy import save_file

    flat = _flat_params(model)
    sha = _params_sha256(flat)
    with fileio.atomic_path(path) as tmp:
        save_file(flat, tmp, metadata={"config": json.dumps(dataclasses.asdict(model.cfg)), "sha256": sha})
    return sha

"""Feature extractors behind one small interface: ``frame_rate``, ``min_samples``, ``dim``, ``__call__``.

``spec`` dicts (stored in tokenizer.json) rebuild an extractor: {"kind": "mfcc", ...MfccConfig} or
{"kind": "hubert", "layer": L, "chunk_seconds": 30, "chunk_context_frames": C, "weights": "hubert.safetensors",
...} (``norm_eps`` when the checkpoint normalises waves).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import numpy as np

from slmjax.units.errors import UnitsError
from slmjax.units.mfcc import MfccConfig, mfcc


class MfccFeatures:
    """39-dim MFCC + deltas at 100 Hz (see slmjax.units.mfcc)."""

    kind = "mfcc"

    def __init__(self, cfg: MfccConfig = MfccConfig()):
        self.cfg = cfg
        self.frame_rate = cfg.frame_rate
        self.min_samples = cfg.min_samples
        self.dim = cfg.dim

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        return mfcc(wave, self.cfg)

    def spec(self) -> dict:
        return {"kind": "mfcc", **dataclasses.asdict(self.cfg)}

    def fingerprint(self) -> str:
        return _sha(json.dumps(self.spec(), sort_keys=True).encode())


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_features(spec: dict, tokdir: str | None = None):
    """Rebuild a feature extractor from its stored ``spec``."""
    kind = spec.get("kind")
    if kind == "mfcc":
        fields = {f.name for f in dataclasses.fields(MfccConfig)}
        return MfccFeatures(MfccConfig(**{k: v for k, v in spec.items() if k in fields}))
    if kind == "hubert":
        from slmjax.units.hubert_features import HubertFeatures

        weights = spec["weights"]
        if tokdir is not None and not os.path.isabs(weights):
            weights = os.path.join(tokdir, weights)
        return HubertFeatures.from_saved(weights, layer=spec["layer"], chunk_seconds=spec.get("chunk_seconds", 30.0),
                                         norm_eps=spec.get("norm_eps"), context_frames=spec.get("chunk_context_frames"))
    raise UnitsError(f"unknown feature kind {kind!r} (expected mfcc or hubert)")

"""Synthetic unit streams from a fixed random n-gram (Markov) model with a known entropy rate.

Symbols are units `0..K-1` and EOS `K` (PAD `K+1` never occurs). The stream is one stationary
Markov chain of order `order` over the K+1 symbols; utterances are the pieces between EOS symbols.
Because the generating model is known, its entropy rate (the best achievable test loss, nats per
token) and its unigram entropy (what a model that ignores context achieves) are exact, so tests
can check that training learns the structure.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from slmjax.data.errors import DataError
from slmjax.data.splits import MemorySplit


@dataclasses.dataclass(frozen=True)
class NGramModel:
  """A random order-n Markov model over K units + EOS.

  Each context (the last `order` symbols) may be followed by EOS or by one of `support` units
  drawn at random (with replacement), weighted by a Dirichlet draw; `support >= K` gives every
  unit a chance. Sparse successors keep the tables small for K = 500 and make the structure
  learnable from a modest stream.

  Attributes:
    n_units: K, the number of units (vocab_size - 2).
    order: how many previous symbols the next one depends on (1 = bigram; at most 3).
    support: successor units per context (at most K).
    concentration: Dirichlet concentration of each next-unit distribution (small = peaky).
    mean_utterance: mean utterance length in units (EOS probability 1/mean after a unit).
    seed: seeds the transition tables.
  """

  n_units: int
  order: int = 1
  support: int = 16
  concentration: float = 0.5
  mean_utterance: float = 50.0
  seed: int = 0

  def __post_init__(self):
    if not 1 <= self.order <= 3:
      raise ValueError(f"synthetic order must be 1..3, got {self.order}")
    # EOS follows a unit with probability 1/mean_utterance: below 1 that is no probability (the
    # tables went negative and sampling stopped on NaN), and at infinity no utterance ever ends.
    if not (math.isfinite(self.mean_utterance) and self.mean_utterance >= 1):
      raise DataError(f"data.synthetic.mean_utterance={self.mean_utterance} must be a finite "
                      "number >= 1 (units per utterance)")
    if (self.n_units + 1) ** self.order * (min(self.support, self.n_units) + 1) > 2**25:
      raise ValueError(f"synthetic model too large: {self.n_units} units at order {self.order} "
                       f"with support {self.support}")

  @property
  def eos_id(self) -> int:
    return self.n_units

  @property
  def n_symbols(self) -> int:
    return self.n_units + 1

  @property
  def n_contexts(self) -> int:
    return self.n_symbols ** self.order

  @functools.cached_property
  def tables(self) -> tuple[np.ndarray, np.ndarray]:
    """(symbols int64 [C, m+1], probs float64 [C, m+1]): successors of each context (flat,
    base-V index of the last `order` symbols); the last column is EOS."""
    k, c = self.n_units, self.n_contexts
    m = min(self.support, k)
    rng = np.random.default_rng([self.seed, 0x5eed])
    if m == k:
      succ = np.broadcast_to(np.arange(k), (c, k))
    else:
      succ = rng.integers(0, k, size=(c, m))
    p_units = rng.dirichlet(np.full(m, self.concentration), size=c)
    p_eos = np.full(c, 1.0 / self.mean_utterance)
    p_eos[np.arange(c) % self.n_symbols == self.eos_id] = 0.0  # no empty utterances
    sym = np.concatenate([succ, np.full((c, 1), self.eos_id)], axis=1).astype(np.int64)
    prob = np.concatenate([p_units * (1.0 - p_eos)[:, None], p_eos[:, None]], axis=1)
    return sym, prob

  @functools.cached_property
  def stationary(self) -> np.ndarray:
    """float64 [C]: stationary distribution over contexts (power iteration)."""
    sym, prob = self.tables
    c = self.n_contexts
    nxt = (np.arange(c)[:, None] * self.n_symbols + sym) % c
    pi = np.full(c, 1.0 / c)
    for _ in range(20000):
      new = np.bincount(nxt.ravel(), weights=(pi[:, None] * prob).ravel(), minlength=c)
      if np.abs(new - pi).sum() < 1e-13:
        return new
      pi = new
    return pi

  def _merged(self):
    """Per-context probabilities with repeated successors merged: (context, prob) pairs."""
    sym, prob = self.tables
    key = np.arange(self.n_contexts)[:, None] * self.n_symbols + sym
    uniq, inv = np.unique(key.ravel(), return_inverse=True)
    return uniq // self.n_symbols, np.bincount(inv, weights=prob.ravel())

  def entropy_rate(self) -> float:
    """Nats per symbol of the stream: the lowest achievable mean NLL."""
    ctx, p = self._merged()
    nz = p > 0
    return float(-(self.stationary[ctx[nz]] * p[nz] * np.log(p[nz])).sum())

  def unigram(self) -> np.ndarray:
    """float64 [V]: marginal symbol frequencies."""
    sym, prob = self.tables
    return np.bincount(sym.ravel(), weights=(self.stationary[:, None] * prob).ravel(),
                       minlength=self.n_symbols)

  def unigram_entropy(self) -> float:
    """Nats per symbol of a context-free model of the stream."""
    q = self.unigram()
    q = q[q > 0]
    return float(-(q * np.log(q)).sum())

  def sample(self, n_tokens: int, stream: int, n_chains: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """About n_tokens symbols as whole utterances: (tokens int32, lengths int64).

    `n_chains` chains run side by side (vectorised), each started from the stationary
    distribution and cut after its last EOS. `stream` selects an independent random stream.
    """
    sym, prob = self.tables
    c, v = self.n_contexts, self.n_symbols
    cdf = np.cumsum(prob, axis=1)
    cdf[:, -1] = 1.0
    rng = np.random.default_rng([self.seed, 0xda7a, stream])
    steps = -(-int(n_tokens) // n_chains) + int(4 * self.mean_utterance)
    ctx = rng.choice(c, size=n_chains, p=self.stationary / self.stationary.sum())
    out = np.empty((n_chains, steps), np.int32)
    u = rng.random((steps, n_chains))
    for t in range(steps):
      j = (cdf[ctx] < u[t][:, None]).sum(axis=1)
      x = sym[ctx, j]
      out[:, t] = x
      ctx = (ctx * v + x) % c
    pieces, lengths = [], []
    for ch in out:
      eos = np.flatnonzero(ch == self.eos_id)
      if eos.size < 2:
        continue
      pieces.append(ch[eos[0] + 1:eos[-1] + 1])  # whole utterances only
      lengths.append(np.diff(eos))
    tokens = np.concatenate(pieces)
    lengths = np.concatenate(lengths).astype(np.int64)
    keep = int(np.searchsorted(np.cumsum(lengths), n_tokens, side="left")) + 1
    lengths = lengths[:keep]
    return tokens[:int(lengths.sum())], lengths


@dataclasses.dataclass
class SyntheticDataset:
  """A dataset-like object (same attributes as manifest.UnitDataset) over an n-gram stream."""

  name: str
  vocab_size: int
  eos_id: int
  pad_id: int
  splits: dict
  model: NGramModel
  synthetic: bool = True

  @property
  def info(self) -> dict:
    return {"kind": "synthetic", "order": self.model.order, "n_units": self.model.n_units,
            "support": min(self.model.support, self.model.n_units),
            "entropy_rate": self.model.entropy_rate(),
            "unigram_entropy": self.model.unigram_entropy(),
            "tokens": {k: s.n_tokens for k, s in self.splits.items()}}


def synthetic_dataset(vocab_size: int, *, train_tokens: int, test_tokens: int, order: int = 1,
                      support: int = 16, concentration: float = 0.5,
                      mean_utterance: float = 50.0, seed: int = 0,
                      n_shards: int = 4) -> SyntheticDataset:
  """An n-gram stream with ids laid out as docs/interfaces.md (EOS = K, PAD = K+1)."""
  model = NGramModel(n_units=vocab_size - 2, order=order, support=support,
                     concentration=concentration, mean_utterance=mean_utterance, seed=seed)
  splits = {}
  for i, (name, n) in enumerate((("train", train_tokens), ("test", test_tokens))):
    tokens, lengths = model.sample(n, stream=i)
    bounds = np.linspace(0, lengths.size, min(n_shards, lengths.size) + 1).astype(np.int64)
    splits[name] = MemorySplit(name, tokens, lengths, bounds)
  return SyntheticDataset(name="synthetic", vocab_size=vocab_size, eos_id=vocab_size - 2,
                          pad_id=vocab_size - 1, splits=splits, model=model)

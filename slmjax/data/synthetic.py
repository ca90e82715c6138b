"""Synthetic unit streams from a fixed random n-gram (Markov) model with a known entropy rate.

Symbols are units `0..K-1` and EOS `K` (PAD `K+1` never occurs). The stream is one stationary
Markov chain of order `order` over the K+1 symbols; utterances are the pieces between EOS symbols.
Because the generating model is known, its entropy rate (the best achievable test loss, nats per
token) and its unigram entropy (what a model that ignores context achieves) are exact, so tests
can check that training learns the structure.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from slmjax.data.splits import MemorySplit


@dataclasses.dataclass(frozen=True)
class NGramModel:
  """A random order-n Markov model over K units + EOS.

  Attributes:
    n_units: K, the number of units (vocab_size - 2).
    order: how many previous symbols the next one depends on (1 = bigram; at most 3).
    concentration: Dirichlet concentration of each next-unit distribution (small = peaky).
    mean_utterance: mean utterance length in units (EOS probability 1/mean after a unit).
    seed: seeds the transition tables.
  """

  n_units: int
  order: int = 2
  concentration: float = 0.1
  mean_utterance: float = 50.0
  seed: int = 0

  def __post_init__(self):
    if not 1 <= self.order <= 3:
      raise ValueError(f"synthetic order must be 1..3, got {self.order}")
    if (self.n_units + 1) ** (self.order + 1) > 2**26:
      raise ValueError(f"synthetic model too large: {self.n_units} units at order {self.order}")

  @property
  def eos_id(self) -> int:
    return self.n_units

  @property
  def n_symbols(self) -> int:
    return self.n_units + 1

  def probs(self) -> np.ndarray:
    """float64 [V**order, V]: next-symbol distribution for each context (flat, base-V)."""
    v, k = self.n_symbols, self.n_units
    rng = np.random.default_rng([self.seed, 0x5eed])
    n_ctx = v ** self.order
    p = np.zeros((n_ctx, v))
    p[:, :k] = rng.dirichlet(np.full(k, self.concentration), size=n_ctx)
    p_eos = np.full(n_ctx, 1.0 / self.mean_utterance)
    p_eos[np.arange(n_ctx) % v == self.eos_id] = 0.0  # no empty utterances
    p[:, :k] *= (1.0 - p_eos)[:, None]
    p[:, k] = p_eos
    return p

  def stationary(self) -> np.ndarray:
    """float64 [V**order]: stationary distribution over contexts (power iteration)."""
    v, p = self.n_symbols, self.probs()
    pi = np.full(v ** self.order, 1.0 / v ** self.order)
    for _ in range(10000):
      # Context (a, rest) emits x and moves to context (rest, x).
      new = (pi[:, None] * p).reshape(v, -1).sum(axis=0)
      if np.abs(new - pi).sum() < 1e-13:
        return new
      pi = new
    return pi

  def entropy_rate(self) -> float:
    """Nats per symbol of the stream: the lowest achievable mean NLL."""
    p = self.probs()
    h = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=1)
    return float(self.stationary() @ h)

  def unigram(self) -> np.ndarray:
    """float64 [V]: marginal symbol frequencies."""
    v = self.n_symbols
    return self.stationary().reshape(-1, v).sum(axis=0)

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
    v, p = self.n_symbols, self.probs()
    cdf = np.cumsum(p, axis=1)
    cdf[:, -1] = 1.0
    rng = np.random.default_rng([self.seed, 0xda7a, stream])
    steps = -(-int(n_tokens) // n_chains) + int(4 * self.mean_utterance)
    ctx = rng.choice(v ** self.order, size=n_chains, p=self.stationary())
    out = np.empty((n_chains, steps), np.int32)
    u = rng.random((steps, n_chains))
    rows = np.arange(n_chains)
    for t in range(steps):
      c = cdf[ctx]
      x = (c < u[t][:, None]).sum(axis=1)
      out[rows, t] = x
      ctx = (ctx * v + x) % (v ** self.order)
    pieces, lengths = [], []
    for ch in out:
      eos = np.flatnonzero(ch == self.eos_id)
      if eos.size < 2:
        continue
      body = ch[eos[0] + 1:eos[-1] + 1]  # whole utterances only
      pieces.append(body)
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
            "entropy_rate": self.model.entropy_rate(),
            "unigram_entropy": self.model.unigram_entropy(),
            "tokens": {k: s.n_tokens for k, s in self.splits.items()}}


def synthetic_dataset(vocab_size: int, *, train_tokens: int, test_tokens: int, order: int = 2,
                      concentration: float = 0.1, mean_utterance: float = 50.0, seed: int = 0,
                      n_shards: int = 4) -> SyntheticDataset:
  """An n-gram stream with ids laid out as docs/interfaces.md (EOS = K, PAD = K+1)."""
  model = NGramModel(n_units=vocab_size - 2, order=order, concentration=concentration,
                     mean_utterance=mean_utterance, seed=seed)
  splits = {}
  for i, (name, n) in enumerate((("train", train_tokens), ("test", test_tokens))):
    tokens, lengths = model.sample(n, stream=i)
    bounds = np.linspace(0, lengths.size, min(n_shards, lengths.size) + 1).astype(np.int64)
    splits[name] = MemorySplit(name, tokens, lengths, bounds)
  return SyntheticDataset(name="synthetic", vocab_size=vocab_size, eos_id=vocab_size - 2,
                          pad_id=vocab_size - 1, splits=splits, model=model)

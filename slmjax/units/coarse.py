"""Coarse tokens: a SentencePiece unigram (or BPE) model trained over collapsed unit sequences.

Each unit u becomes one character (U+4E00 + u, a single Unicode script so SentencePiece never splits
between units); pieces are runs of units. Piece ids 0..P-1 are the coarse vocabulary (0 is
SentencePiece's required <unk>, never produced because every unit is a required character).
"""

from __future__ import annotations

import hashlib
import io

import numpy as np

from slmjax.units.errors import UnitsError

BASE = 0x4E00
MAX_UNITS = 0x9FFF - BASE + 1


def units_to_text(units) -> str:
    return "".join(chr(BASE + int(u)) for u in units)


def text_to_units(text: str) -> np.ndarray:
    return np.fromiter((ord(c) - BASE for c in text), np.int32, count=len(text))


def check_coarse_args(k: int, vocab_size: int, model_type: str) -> None:
    """One UnitsError naming the first coarse setting that cannot work with ``k`` units."""
    if k > MAX_UNITS:
        raise UnitsError(f"coarse tokens support k <= {MAX_UNITS}, got {k}")
    if model_type not in ("unigram", "bpe"):
        raise UnitsError(f"--coarse must be unigram or bpe, got {model_type!r}")
    if vocab_size <= k + 1:
        raise UnitsError(f"--coarse_vocab={vocab_size} must exceed k + 1 = {k + 1} (all units plus <unk>)")


def train_coarse(sequences, k: int, vocab_size: int, model_type: str = "unigram") -> bytes:
    """Train on an iterable of collapsed unit arrays; returns the serialized model."""
    import sentencepiece as spm

    check_coarse_args(k, vocab_size, model_type)
    texts = [units_to_text(s) for s in sequences if len(s)]
    if not texts:
        raise UnitsError("no unit sequences to train coarse tokens on")
    # every unit as a one-character sentence: units absent from the sample still get a piece
    # (required_chars alone does not add characters the corpus lacks), with no cross-unit bias
    texts += [units_to_text([u]) for u in range(k)]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=buf, vocab_size=vocab_size, model_type=model_type,
        character_coverage=1.0, add_dummy_prefix=False,
        normalization_rule_name="identity", remove_extra_whitespaces=False, split_by_whitespace=False,
        max_sentence_length=1 << 24, bos_id=-1, eos_id=-1, pad_id=-1, unk_id=0, hard_vocab_limit=False,
        num_threads=1, minloglevel=2,
    )
    return buf.getvalue()


class Coarse:
    """A trained coarse model: ``encode(units) -> piece ids``, ``decode(ids) -> units``."""

    def __init__(self, model_bytes: bytes):
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor(model_proto=model_bytes)
        self.vocab_size = self.sp.get_piece_size()
        self.sha256 = hashlib.sha256(model_bytes).hexdigest()
        self.model_type = "bpe" if _is_bpe(model_bytes) else "unigram"

    def encode(self, units) -> np.ndarray:
        if len(units) == 0:
            return np.zeros(0, np.int32)
        return np.asarray(self.sp.encode(units_to_text(units), out_type=int), np.int32)

    def check_units(self, k: int) -> None:
        """UnitsError unless the pieces are runs of exactly the units 0..k-1: every unit has its own
        piece, and no piece holds anything else (a model from another tokenizer or a text model
        would otherwise turn units into <unk> or pieces that decode to no unit)."""
        for i in range(self.vocab_size):
            if self.sp.is_unknown(i) or self.sp.is_control(i):
                continue
            codes = [ord(c) - BASE for c in self.sp.id_to_piece(i)]
            if not codes or min(codes) < 0 or max(codes) >= k:
                raise UnitsError(f"coarse model piece {i} ({self.sp.id_to_piece(i)!r}) is not a run of units 0..{k - 1}: "
                                 "the coarse model does not belong to these centroids; refit the tokenizer")
        missing = [u for u in range(k) if self.sp.piece_to_id(chr(BASE + u)) == self.sp.unk_id()]
        if missing:
            raise UnitsError(f"coarse model has no piece for unit {missing[0]} ({len(missing)} of {k} units lack one): "
                             "the coarse model does not belong to these centroids; refit the tokenizer")

    def decode(self, ids) -> np.ndarray:
        return text_to_units("".join(self.sp.id_to_piece(int(i)) for i in ids))


def _is_bpe(model_bytes: bytes) -> bool:
    from sentencepiece import sentencepiece_model_pb2 as pb

    m = pb.ModelProto()
    m.ParseFromString(model_bytes)
    return m.trainer_spec.model_type == pb.TrainerSpec.BPE

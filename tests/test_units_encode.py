"""Unit dataset encoding at its edges: unit runs longer than 16 bits, and reruns retrying skipped inputs."""

import json

import numpy as np

from slmjax.units.encode import encode_dataset
from slmjax.units.sources import Utterance
from slmjax.units.tokenizer import Tokenizer
from slmjax.units.writer import read_dataset, read_durations

HOP = 16


class _Level:
    """A cheap 1-dim feature: one frame per ``HOP`` samples, the first sample of each."""

    kind, frame_rate, min_samples, dim = "level", 16000.0 / HOP, HOP, 1

    def __call__(self, wave):
        return wave[: wave.size // HOP * HOP : HOP, None]

    def fingerprint(self):
        return "level"


def _tok():
    return Tokenizer(_Level(), np.array([[0.1], [0.9]], np.float32))  # unit 0: low level, unit 1: high


def _utt(uid, load):
    return Utterance(uid, f"mem:{uid}", "train", load=load)


def test_durations_past_16_bits_are_stored_whole(tmp_path):
    frames = [70_000, 3]  # one run beyond uint16
    wave = np.concatenate([np.full(frames[0] * HOP, 0.9, np.float32), np.full(frames[1] * HOP, 0.1, np.float32)])
    m = encode_dataset(_tok(), [_utt("long", lambda: wave)], str(tmp_path / "ds"), durations=True, progress=False)
    assert m["splits"]["train"]["frames"] == sum(frames)
    [units] = read_dataset(str(tmp_path / "ds"), "train")
    [durs] = read_durations(str(tmp_path / "ds"), "train")
    assert units.tolist() == [1, 0, 2] and durs.tolist() == frames + [0]  # EOS: duration 0

"""Unit dataset encoding at its edges: unit runs longer than 16 bits, and reruns retrying skipped inputs."""

import filecmp
import functools
import json
import os

import numpy as np
import pytest

from slmjax.units.audio import BadAudio
from slmjax.units.encode import encode_dataset
from slmjax.units.errors import UnitsError
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


class _Input:
    """An in-memory input that is unreadable until ``fixed``; counts its loads."""

    def __init__(self, uid, level, fixed=True):
        self.uid, self.level, self.fixed, self.loads = uid, level, fixed, 0

    def load(self):
        self.loads += 1
        if not self.fixed:
            raise BadAudio("unreadable: truncated file")
        return np.full(40 * HOP, self.level, np.float32)

    def utt(self):
        return _utt(self.uid, self.load)


def test_rerun_retries_skipped_inputs_only(tmp_path):
    bad, good, other = _Input("a", 0.9, fixed=False), _Input("b", 0.1), _Input("c", 0.9)
    utts = [bad.utt(), good.utt(), other.utt()]  # shards [a, b] and [c]
    ds = str(tmp_path / "ds")
    run = functools.partial(encode_dataset, _tok(), utts, ds, shard_utterances=2, durations=True, progress=False)
    assert run()["skipped"] == 1 and bad.loads == 1
    assert run()["skipped"] == 1 and bad.loads == 2  # tried again, still unreadable: still listed
    bad.fixed = True
    m = run()
    assert (bad.loads, good.loads, other.loads) == (3, 1, 1)  # the encoded inputs were not encoded again
    assert m["skipped"] == 0 and (tmp_path / "ds" / "skipped.jsonl").read_text() == ""
    assert [s.tolist() for s in read_dataset(ds, "train")] == [[1, 2], [0, 2], [1, 2]]  # source order
    assert [d.tolist() for d in read_durations(ds, "train")] == [[40, 0]] * 3
    fresh = encode_dataset(_tok(), utts, str(tmp_path / "fresh"), shard_utterances=2, durations=True, progress=False)
    assert m == fresh
    for name in sorted(os.listdir(ds)):
        if name.endswith(".array_record"):
            assert filecmp.cmp(os.path.join(ds, name), tmp_path / "fresh" / name, shallow=False), name


def test_retry_killed_before_its_part_file_encodes_the_shard_again(tmp_path, monkeypatch):
    import slmjax.units.writer as writer

    bad, good = _Input("a", 0.9, fixed=False), _Input("b", 0.1)
    ds = str(tmp_path / "ds")
    run = functools.partial(encode_dataset, _tok(), [bad.utt(), good.utt()], ds, progress=False)
    run()
    bad.fixed = True
    real = writer._atomic_json
    monkeypatch.setattr(writer, "_atomic_json", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):  # killed after the shard was rewritten, before its part file
        run()
    # the manifest of the first run (one utterance in the shard, now two) is not left to be read
    assert not os.path.exists(os.path.join(ds, "manifest.json"))
    with pytest.raises(FileNotFoundError):
        read_dataset(ds, "train")
    monkeypatch.setattr(writer, "_atomic_json", real)
    m = run()
    assert good.loads == 2 and m["skipped"] == 0  # the shard was not complete: encoded whole again
    assert [s.tolist() for s in read_dataset(ds, "train")] == [[1, 2], [0, 2]]


def _retry_beside_a_merge(tmp_path, monkeypatch, during_merge):
    """Workers 0 and 1 of two one-input shards; worker 1's input was unreadable and is fixed. Worker 0
    reruns (nothing to retry: it merges) and ``during_merge(run, part_file)`` runs the moment its merge
    reaches shard 1's part file, as worker 1 retrying at that time would. Returns worker 0's result."""
    import slmjax.units.writer as writer

    good, bad = _Input("a", 0.1), _Input("b", 0.9, fixed=False)
    ds = str(tmp_path / "ds")
    run = functools.partial(encode_dataset, _tok(), [good.utt(), bad.utt()], ds, num_workers=2, shard_utterances=1,
                            progress=False)
    assert run(worker_index=0) is None and run(worker_index=1)["skipped"] == 1
    bad.fixed = True
    real, hooked = writer.read_part, []

    def read_part(out, shard):
        if shard.index == 1 and not hooked:
            hooked.append(shard)
            return during_merge(run, lambda: real(out, shard), writer.part_path(out, shard))
        return real(out, shard)

    monkeypatch.setattr(writer, "read_part", read_part)
    return run(worker_index=0), ds


def test_merge_while_a_retry_rewrites_a_shard_leaves_the_merge_to_it(tmp_path, monkeypatch):
    def retry_begins(run, read, part_file):
        os.remove(part_file)  # worker 1 took its part file back to rewrite the shard
        return read()

    m, ds = _retry_beside_a_merge(tmp_path, monkeypatch, retry_begins)
    assert m is None  # not merged: worker 1 merges once its shard is written
    m = encode_dataset(_tok(), [_Input("a", 0.1).utt(), _Input("b", 0.9).utt()], ds, num_workers=2, worker_index=1,
                       shard_utterances=1, progress=False)
    assert m["skipped"] == 0 and m["splits"]["train"]["utterances"] == 2


def test_merge_that_read_a_part_file_before_a_retry_does_not_leave_it_stale(tmp_path, monkeypatch):
    def retry_ends(run, read, part_file):
        part = read()  # the part file as it was before worker 1's retry
        assert run(worker_index=1)["skipped"] == 0  # worker 1 retried, rewrote and merged meanwhile
        return part

    m, ds = _retry_beside_a_merge(tmp_path, monkeypatch, retry_ends)
    with open(os.path.join(ds, "manifest.json")) as f:
        on_disk = json.load(f)
    assert m == on_disk and on_disk["skipped"] == 0 and on_disk["splits"]["train"]["utterances"] == 2
    assert (tmp_path / "ds" / "skipped.jsonl").read_text() == ""
    assert [s.tolist() for s in read_dataset(ds, "train")] == [[0, 2], [1, 2]]


def test_durations_dataset_of_16_bit_code_is_refused_by_name(tmp_path):
    """A --durations dataset begun before durations_dtype (16-bit records, plan pinned without it)
    is not resumed or merged with 32-bit records, and the refusal says so rather than blaming the flags."""
    from slmjax.units.encode import merge_dataset
    from slmjax.units.writer import plan_fingerprint, plan_shards

    utts = [_Input("a", 0.9).utt()]
    ds = tmp_path / "ds"
    ds.mkdir()
    old = {"min_seconds": 0.0, "synthetic": False, "durations": True, "shard_utterances": 2000}
    pinned = plan_fingerprint(plan_shards(utts, 2000), _tok().identity, old, sources=False)
    (ds / "plan.json").write_text(json.dumps({"fingerprint": pinned}))
    for go in (lambda: encode_dataset(_tok(), utts, str(ds), durations=True, progress=False),
               lambda: merge_dataset(_tok(), utts, str(ds), durations=True)):
        with pytest.raises(UnitsError, match="16-bit durations of an older slmjax"):
            go()


def test_retry_of_a_shard_that_cannot_be_read_is_one_line(tmp_path):
    bad = _Input("a", 0.9, fixed=False)
    ds = tmp_path / "ds"
    run = functools.partial(encode_dataset, _tok(), [bad.utt(), _Input("b", 0.1).utt()], str(ds), progress=False)
    run()
    bad.fixed = True
    (ds / "train-00000-of-00001.array_record").write_bytes(b"truncated")
    with pytest.raises(UnitsError, match=r"train-00000-of-00001.array_record cannot be read \(RuntimeError: .*\); "
                                         r"remove .*train-00000-of-00001.array_record.json to encode the shard again"):
        run()

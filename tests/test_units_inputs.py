"""Inputs at the edges: in-memory PCM dtypes and HuBERT chunk settings that cannot produce frames."""

import os

import numpy as np
import pytest

from slmjax.units.audio import as_wave
from slmjax.units.errors import UnitsError


def test_in_memory_pcm_dtypes_scale_to_unit_range():
    # 8-bit WAV is unsigned with silence at 128; 16/32-bit are signed with silence at 0
    np.testing.assert_allclose(as_wave(np.array([0, 128, 255], np.uint8)), [-1.0, 0.0, 127 / 128])
    np.testing.assert_allclose(as_wave(np.array([-32768, 0, 16384], np.int16)), [-1.0, 0.0, 0.5])
    np.testing.assert_allclose(as_wave(np.array([-(2**31), 2**30], np.int32)), [-1.0, 0.5])
    np.testing.assert_allclose(as_wave(np.array([0.25, -0.5], np.float64)), [0.25, -0.5])
    with pytest.raises(UnitsError, match="1-D mono"):
        as_wave(np.zeros((10, 2), np.int16))


@pytest.mark.parametrize("chunk_seconds", [0.0, -1.0, 0.01])
def test_hubert_chunk_shorter_than_one_frame_is_one_clear_error(chunk_seconds):
    from slmjax.units.hubert import HubertConfig, HubertEncoder
    from slmjax.units.hubert_features import HubertFeatures

    cfg = HubertConfig(conv_dim=(8,) * 7, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=16, num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)
    with pytest.raises(UnitsError, match="--chunk_seconds must be at least 0.025"):
        HubertFeatures(HubertEncoder(cfg), layer=1, chunk_seconds=chunk_seconds)


@pytest.mark.parametrize("wave,message", [
    (np.zeros(0, np.float32), "empty"),
    (np.full(400, 0.1, np.float32) * np.r_[np.ones(399), np.nan].astype(np.float32), "non-finite"),
    (np.full(8000, np.inf, np.float32), "non-finite"),
    (0.1 * np.ones(399, np.float32), "too short: 399 samples < 400"),
])
def test_encode_wave_rejects_unusable_waves_in_one_line(wave, message):
    # a NaN wave gave units [0] (argmin over NaN distances); one shorter than a frame a numpy traceback
    from slmjax.units.features import MfccFeatures
    from slmjax.units.tokenizer import Tokenizer

    tok = Tokenizer(MfccFeatures(), np.random.default_rng(0).normal(size=(4, 39)).astype(np.float32))
    with pytest.raises(UnitsError, match=message):
        tok.encode_wave(wave)


def test_encode_wave_keeps_quiet_waves():
    # silence is skipped in datasets, but an in-memory wave (a benchmark's pause) still encodes
    from slmjax.units.features import MfccFeatures
    from slmjax.units.tokenizer import Tokenizer

    tok = Tokenizer(MfccFeatures(), np.random.default_rng(0).normal(size=(4, 39)).astype(np.float32))
    assert tok.encode_wave(np.zeros(560, np.float32)).size >= 1


def test_jsonl_id_zero_is_an_id(tmp_path):
    from slmjax.units.sources import list_utterances

    (tmp_path / "m.jsonl").write_text('{"path": "a.wav", "id": 0}\n{"path": "b.wav", "id": 7}\n{"path": "c.wav"}\n')
    assert [u.uid for u in list_utterances(str(tmp_path / "m.jsonl"))] == ["0", "7", "c"]


def test_file_name_not_utf8_is_listed_and_encoded(tmp_path):
    # a latin-1 file name (old archives) crashed the listing: its id could not be hashed for the holdout
    import soundfile as sf

    from slmjax.units.sources import list_utterances

    wave = (0.3 * np.sin(np.arange(1600) / 3.0)).astype(np.float32)
    sf.write(tmp_path / "ok.wav", wave, 16000)
    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9.wav")
    with open(raw, "wb") as f:
        f.write((tmp_path / "ok.wav").read_bytes())
    utts = list_utterances(str(tmp_path), holdout=0.0)
    assert [u.uid for u in utts] == ["caf\\xe9", "ok"]
    np.testing.assert_array_equal(utts[0].load(), utts[1].load())


@pytest.mark.parametrize("name", ["m.tsv", "m.jsonl"])
def test_manifest_not_utf8_is_one_line(tmp_path, name):
    from slmjax.units.sources import list_utterances

    body = b"/audio\ncaf\xe9.wav\t100\n" if name.endswith(".tsv") else b'{"path": "caf\xe9.wav"}\n'
    (tmp_path / name).write_bytes(body)
    with pytest.raises(UnitsError, match=f"{name} is not UTF-8 text"):
        list_utterances(str(tmp_path / name))


def test_folder_symlink_loop_lists_each_file_once(tmp_path):
    # followed links are kept (a split folder linked in from elsewhere) but a link back up the tree
    # listed every file again at each depth until the OS refused the path
    import soundfile as sf

    from slmjax.units.sources import list_utterances

    (tmp_path / "c" / "train").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    sf.write(tmp_path / "c" / "train" / "a.wav", np.zeros(800, np.float32), 16000)
    sf.write(tmp_path / "elsewhere" / "b.wav", np.zeros(800, np.float32), 16000)
    os.symlink(tmp_path / "elsewhere", tmp_path / "c" / "test")
    os.symlink(tmp_path / "c", tmp_path / "c" / "train" / "up")
    assert [(u.uid, u.split) for u in list_utterances(str(tmp_path / "c"))] == [("test/b", "test"), ("train/a", "train")]


def test_manifests_saved_by_windows_tools(tmp_path):
    # a byte-order mark and CRLF line ends: the BOM made the TSV root relative (every file then
    # missing) and JSONL line 1 not JSON; a CR stayed in a TSV path without the size column
    import soundfile as sf

    from slmjax.units.sources import list_utterances

    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "a.wav", (0.3 * np.sin(np.arange(1600) / 3.0)).astype(np.float32), 16000)
    bom = "\ufeff".encode()
    (tmp_path / "valid.tsv").write_bytes(bom + f"{tmp_path / 'audio'}\r\na.wav\r\n".encode())
    (tmp_path / "m.jsonl").write_bytes(bom + b'{"path": "audio/a.wav", "id": "j"}\r\n')
    utts = list_utterances(f"{tmp_path / 'valid.tsv'},{tmp_path / 'm.jsonl'}", holdout=0.0)
    assert [(u.uid, u.source, u.split) for u in utts] == [
        ("a", str(tmp_path / "audio" / "a.wav"), "valid"), ("j", str(tmp_path / "audio" / "a.wav"), "train")]
    assert utts[0].load().shape == (1600,)


def test_source_path_with_a_comma(tmp_path):
    # --audio is split on commas: a folder named "take 1, take 2" was two missing sources
    import soundfile as sf

    from slmjax.units.sources import list_utterances

    folder = tmp_path / "take 1, take 2"
    folder.mkdir()
    sf.write(folder / "a.wav", np.zeros(800, np.float32), 16000)
    assert [u.uid for u in list_utterances(str(folder))] == ["a"]
    with pytest.raises(UnitsError, match="audio source not found: "):
        list_utterances(f"{folder},{tmp_path / 'missing'}")


def test_broken_hubert_checkpoint_files_are_one_line(tmp_path):
    """A truncated model.safetensors (an interrupted download) or a broken config.json /
    preprocessor_config.json stopped `fit --features=hubert` with a safetensors or json traceback."""
    from safetensors.numpy import save_file

    from slmjax.units.hubert_import import read_checkpoint

    ckpt = tmp_path / "hf"
    ckpt.mkdir()
    save_file({"w": np.ones((64, 64), np.float32)}, str(ckpt / "model.safetensors"))
    (ckpt / "config.json").write_text("{}")
    assert read_checkpoint(str(ckpt))[2] is None  # readable files: no error from reading them
    data = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(UnitsError, match=r"cannot read HuBERT checkpoint .*model\.safetensors: SafetensorError"):
        read_checkpoint(str(ckpt))
    (ckpt / "model.safetensors").write_bytes(data)
    for name, text in (("config.json", '{"hidden_size": 32,'), ("preprocessor_config.json", "")):
        (ckpt / name).write_text(text)
        with pytest.raises(UnitsError, match=rf"cannot read .*{name}: JSONDecodeError"):
            read_checkpoint(str(ckpt))
        (ckpt / name).write_text("{}")


def test_int64_pcm_is_read_at_its_sample_width():
    """int64 arrays (TFDS Audio's default dtype, np.array of Python ints) hold 16-bit samples, or
    24/32-bit ones when larger; they were divided by 2**63."""
    np.testing.assert_allclose(as_wave(np.array([-32768, 0, 16384], np.int64)), [-1.0, 0.0, 0.5])
    np.testing.assert_allclose(as_wave(np.array([2**22, -(2**23)], np.int64)), [0.5, -1.0])
    np.testing.assert_allclose(as_wave(np.array([2**30, -(2**31)], np.int64)), [0.5, -1.0])

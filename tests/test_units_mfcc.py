"""MFCC against an independent computation: librosa's mel spectrogram, float64 DCT and HTK deltas."""

import numpy as np
import scipy.fft

from slmjax.units.mfcc import MfccConfig, mfcc, n_frames


def _reference(wave, cfg):
    import librosa

    # librosa centres the 400-sample window inside each 512-sample frame: shift by 56 to align frames
    y = np.concatenate([np.zeros(56), wave.astype(np.float64)])
    mel = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, hop_length=160, win_length=400,
                                         window="hann", center=False, power=2.0, n_mels=cfg.n_mels, fmin=cfg.fmin,
                                         fmax=cfg.fmax)
    c = scipy.fft.dct(np.log(mel + 1e-6), type=2, norm="ortho", axis=0)[: cfg.n_mfcc].T  # [T, 13]

    def delta(x):
        t = len(x)
        out = np.zeros_like(x)
        for i in range(t):
            acc = 0.0
            for n in (1, 2):
                acc = acc + n * (x[min(i + n, t - 1)] - x[max(i - n, 0)])
            out[i] = acc / 10.0
        return out

    d1 = delta(c)
    return np.concatenate([c, d1, delta(d1)], axis=1)


def test_mfcc_matches_reference():
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 2) / 16000
    wave = (0.3 * np.sin(2 * np.pi * 220 * t * (1 + t)) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    cfg = MfccConfig()
    ours = mfcc(wave, cfg)
    ref = _reference(wave, cfg)
    assert ours.shape == ref.shape == (n_frames(wave.size), 39) == (198, 39)
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=2e-3)


def test_mfcc_frames_local_and_normalisation():
    rng = np.random.default_rng(1)
    wave = rng.standard_normal(16000).astype(np.float32)
    assert n_frames(399) == 0 and n_frames(400) == 1 and n_frames(560) == 2
    base = mfcc(wave, MfccConfig(deltas=False))
    head = mfcc(wave[:8000], MfccConfig(deltas=False))  # no centre padding: a prefix gives a prefix
    np.testing.assert_allclose(base[: len(head)], head, atol=1e-4)
    normed = mfcc(wave, MfccConfig(normalize=True))
    np.testing.assert_allclose(normed.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(normed.std(0), 1, atol=1e-3)

"""The placeholder videos' soundtrack: a quiet, deterministic tone."""

from __future__ import annotations

import random

import numpy as np
import numpy.typing as npt

__all__ = ["tone"]

_LEVEL = 0.12  # peak amplitude, of full scale 1.0
_FADE_S = 0.02  # fade in and out, so neither end clicks


def tone(*, samples: int, sample_rate: int, seed: int) -> npt.NDArray[np.float32]:
    """`samples` mono samples in [-1, 1]: a tone gliding up a fifth over the clip and pulsing
    once a second (a listener hears time pass), faded at both ends. Its pitch, a semitone of
    the octave above A3 (220 Hz), comes from `seed`. Computed from sample indices alone."""
    t = np.arange(samples, dtype=np.float64) / sample_rate
    length = samples / sample_rate
    start_hz = 220.0 * 2 ** (random.Random(f"tone {seed}").randrange(12) / 12)
    glide = (2 ** (7 / 12) - 1) / (2 * length)  # frequency: start_hz * (1 + 2 * glide * t)
    phase = 2 * np.pi * start_hz * (t + glide * t * t)
    pulse = 0.55 + 0.45 * np.exp(-6.0 * (t % 1.0))
    fade = np.clip(np.minimum(t, length - t) / _FADE_S, 0.0, 1.0)
    wave: npt.NDArray[np.float32] = (_LEVEL * pulse * fade * np.sin(phase)).astype(np.float32)
    return wave

"""Chunking: voice-activity detection, then speech grouped into 6-12 s chunks split at silences."""
from __future__ import annotations

import os
from abc import ABC, abstractmethod

from .types import Chunk


class SpeechDetector(ABC):
    version: str

    @abstractmethod
    def speech_regions(self, wav16k_path: str | os.PathLike) -> list[tuple[float, float]]:
        """Speech (start, end) in seconds from a 16 kHz mono WAV, sorted, non-overlapping."""

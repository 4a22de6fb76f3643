"""Diarization: who speaks when, with an automatic speaker count."""
from __future__ import annotations

import os
from abc import ABC, abstractmethod

from .types import SpeakerTurn


class Diarizer(ABC):
    version: str

    @abstractmethod
    def diarize(self, wav16k_path: str | os.PathLike) -> list[SpeakerTurn]:
        """Speaker turns from a 16 kHz mono WAV; labels are stable strings such as 'SPEAKER_00'."""

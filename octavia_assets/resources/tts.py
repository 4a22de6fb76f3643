"""Speech synthesis: shipped voices, one chosen per source speaker."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


@dataclass
class VoiceInfo:
    id: str
    gender: str          # "female" | "male"
    languages: list[str]  # ISO 639-1 codes it speaks intelligibly


class Synthesizer(ABC):
    version: str
    name: str
    sample_rate: int

    @abstractmethod
    def voices(self) -> list[VoiceInfo]: ...

    @abstractmethod
    def supports_language(self, language: str) -> bool: ...

    @abstractmethod
    def synthesize(self, text: str, voice: str, language: str, speed: float = 1.0) -> np.ndarray:
        """float32 mono samples at ``self.sample_rate``; ``speed`` > 1 speaks faster natively."""

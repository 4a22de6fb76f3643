"""Separation: split the soundtrack into vocals and background (music + effects)."""
from __future__ import annotations

import os
from abc import ABC, abstractmethod


class Separator(ABC):
    """Writes two WAV files at the input's sample rate: the vocals and everything else."""

    #: model id + weights hash + parameters; becomes the stems asset's code_version.
    version: str

    @abstractmethod
    def separate(self, audio_path: str | os.PathLike, vocals_path: str | os.PathLike,
                 background_path: str | os.PathLike) -> dict:
        """Returns metadata (for example model id and timings)."""

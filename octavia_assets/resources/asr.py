"""Transcription: words with timestamps, per chunk, with language identification."""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass

from .types import Chunk, Word


@dataclass
class ChunkTranscript:
    chunk: int
    text: str
    words: list[Word]        # absolute times (seconds from the start of the file)
    language: str


class Transcriber(ABC):
    version: str

    @abstractmethod
    def detect_language(self, wav16k_path: str | os.PathLike) -> tuple[str, float]:
        """(ISO 639-1 code, probability) of the spoken language."""

    @abstractmethod
    def transcribe(self, wav16k_path: str | os.PathLike, chunks: list[Chunk],
                   language: str | None = None) -> list[ChunkTranscript]:
        """Transcribe each chunk of a 16 kHz mono WAV."""

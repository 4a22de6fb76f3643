"""Translation: per-line text from the source language to a target language."""
from __future__ import annotations

from abc import ABC, abstractmethod


class UnsupportedLanguagePair(ValueError):
    pass


class Translator(ABC):
    version: str
    name: str

    @abstractmethod
    def supports(self, source: str, target: str) -> bool: ...

    @abstractmethod
    def translate(self, texts: list[str], source: str, target: str) -> list[str]:
        """Translate each text; the result has the same length and order."""

"""Plain data passed between stages; every type round-trips through JSON (``to_dict``/``from_dict``)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


class _Json:
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class Chunk(_Json):
    """A stretch of speech, the unit of transcription, translation and synthesis (seconds)."""
    index: int
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class SpeakerTurn(_Json):
    start: float
    end: float
    speaker: str


@dataclass
class Word(_Json):
    start: float
    end: float
    text: str
    probability: float = 1.0


@dataclass
class Line(_Json):
    """One transcribed chunk: what was said, when, and by whom."""
    index: int
    start: float
    end: float
    speaker: str
    text: str
    words: list[dict] = field(default_factory=list)
    confidence: float = 1.0   # mean word probability
    language: str = ""        # spoken language of this line ("": the transcript's main language)


@dataclass
class VoiceChoice(_Json):
    """The synthetic voice chosen for one source speaker."""
    speaker: str
    engine: str
    voice: str                 # engine-specific voice id (or a blend spec)
    pitch_shift_semitones: float = 0.0
    reason: str = ""

"""Shortening a translated line so it can be spoken in its time slot without speeding it up.

Two condensers behind one interface (:class:`Condenser`):

* :class:`RuleCondenser` - deterministic and offline. Per language it applies, one level at a time and
  only as far as needed: (1) drop parentheticals and filler words, (2) shorter equivalents of wordy
  phrases, (3) drop discourse markers and intensifiers. It never drops content words, so a line it
  cannot shorten enough comes back as short as it could make it (the fit then speeds it up).
* :class:`LlmCondenser` - an OpenAI-compatible chat endpoint, configured by environment
  (``OCTAVIA_LLM_URL``, ``OCTAVIA_LLM_MODEL``, ``OCTAVIA_LLM_API_KEY``); it falls back to the rules
  when the endpoint fails or answers something longer. Never needed by tests or the offline pipeline.

:func:`default_condenser` picks the LLM when ``OCTAVIA_LLM_URL`` is set, the rules otherwise.
"""
from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod

from .translation import split_code

# Word lists per language, matched case-insensitively on word boundaries; replacements keep the case
# of the first letter. Level 1 (fillers) loses nothing a viewer needs, level 2 swaps in shorter
# equivalents, level 3 drops openers, markers and intensifiers; dropping asides is the last resort.
_FILLERS = {
    "es": ["bueno", "pues", "o sea", "en realidad", "realmente", "básicamente", "simplemente",
           "la verdad es que", "de hecho", "obviamente", "literalmente", "digamos"],
    "pt": ["bem", "então", "ou seja", "na verdade", "realmente", "basicamente", "simplesmente",
           "de fato", "obviamente", "literalmente", "digamos", "tipo"],
    "fr": ["bon", "alors", "en fait", "vraiment", "simplement", "essentiellement", "franchement",
           "disons", "en réalité"],
    "it": ["beh", "allora", "in realtà", "davvero", "semplicemente", "praticamente", "diciamo",
           "sostanzialmente"],
    "ca": ["bé", "doncs", "en realitat", "realment", "simplement", "bàsicament"],
    "en": ["well", "you know", "i mean", "actually", "basically", "really", "simply", "literally",
           "kind of", "sort of"],
}
_SHORTER = {
    "es": [("por supuesto", "claro"), ("sin embargo", "pero"), ("en este momento", "ahora"),
           ("a pesar de que", "aunque"), ("con el fin de", "para"), ("a fin de", "para"),
           ("muchas gracias", "gracias"), ("en cuanto a", "sobre"), ("de la misma manera", "igual"),
           ("tiene que", "debe"), ("tienen que", "deben"),
           ("tengo que", "debo"), ("tenemos que", "debemos"), ("en la actualidad", "hoy"),
           ("la mayoría de", "casi todos"), ("no solamente", "no solo"),
           ("solamente", "solo"), ("únicamente", "solo"), ("así como", "y"), ("debido a", "por"),
           ("excepto", "salvo"), ("aproximadamente", "unos"), ("cualquier cosa", "algo"),
           ("en el que", "donde"), ("en la que", "donde"),
           ("nosotros ", ""), ("yo ", ""), ("usted ", "")],
    "pt": [("com certeza", "claro"), ("no entanto", "mas"), ("contudo", "mas"), ("neste momento", "agora"),
           ("apesar de que", "embora"), ("a fim de", "para"), ("com o objetivo de", "para"),
           ("muito obrigado", "obrigado"), ("muito obrigada", "obrigada"), ("em relação a", "sobre"),
           ("tem que", "deve"), ("temos que", "devemos"), ("tenho que", "devo"), ("atualmente", "hoje"),
           ("a maioria de", "quase todos"), ("somente", "só"), ("apenas", "só"), ("devido a", "por"),
           ("aproximadamente", "cerca de"), ("qualquer coisa", "algo"), ("no qual", "onde"),
           ("na qual", "onde"), ("nos quais", "onde"), ("nas quais", "onde"),
           ("nós ", ""), ("eu ", "")],
    "fr": [("bien sûr", "certes"), ("cependant", "mais"), ("en ce moment", "là"), ("afin de", "pour"),
           ("merci beaucoup", "merci"), ("en ce qui concerne", "sur")],
    "it": [("naturalmente", "certo"), ("tuttavia", "ma"), ("in questo momento", "ora"),
           ("al fine di", "per"), ("grazie mille", "grazie"), ("per quanto riguarda", "su"),
           ("solamente", "solo"), ("soltanto", "solo"), ("a causa di", "per")],
    "ca": [("per descomptat", "clar"), ("no obstant això", "però"), ("en aquest moment", "ara"),
           ("moltes gràcies", "gràcies"), ("solament", "només")],
    "en": [("of course", "sure"), ("however", "but"), ("at this moment", "now"), ("right now", "now"),
           ("in order to", "to"), ("thank you very much", "thanks"), ("with regard to", "on"),
           ("a lot of", "many"), ("approximately", "about"), ("due to", "by"), ("is not", "isn't"),
           ("do not", "don't"), ("will not", "won't"), ("cannot", "can't"), ("we are", "we're"),
           ("it is", "it's"), ("i am", "i'm"), ("you are", "you're")],
}
# Level 3: interjections dropped only where they open a sentence before a comma ("Sí, ..." but not
# "creo que sí"), and intensifiers/additives dropped anywhere.
_OPENERS = {
    "es": ["sí", "vale", "claro", "mira", "oye", "entonces", "y"],
    "pt": ["sim", "ok", "claro", "olha", "então", "e"],
    "fr": ["oui", "ok", "écoute", "donc", "et"],
    "it": ["sì", "ok", "senti", "quindi", "e"],
    "ca": ["sí", "mira", "i"],
    "en": ["yes", "okay", "ok", "look", "so", "and"],
}
_MARKERS = {
    "es": ["muy", "también", "además"],
    "pt": ["muito", "também", "além disso"],
    "fr": ["très", "aussi"],
    "it": ["molto", "anche"],
    "ca": ["molt", "també"],
    "en": ["very", "also", "just"],
}
# Words that open an aside (a prepositional or relative clause between commas): only those are dropped.
_ASIDE_OPENERS = {
    "es": ["ni", "en", "con", "sin", "por", "para", "según", "como", "que", "quien", "cuyo", "cuya", "el cual",
           "la cual", "sobre", "desde", "aunque", "si", "incluso", "sobre todo"],
    "pt": ["nem", "em", "no", "na", "nos", "nas", "com", "sem", "por", "para", "segundo", "como", "que", "quem",
           "cujo", "cuja", "o qual", "a qual", "sobre", "desde", "embora", "se", "mesmo", "sobretudo"],
    "fr": ["ni", "en", "dans", "avec", "sans", "par", "pour", "selon", "comme", "qui", "que", "dont", "sur",
           "depuis", "bien que", "si", "même"],
    "it": ["né", "in", "nel", "nella", "con", "senza", "per", "secondo", "come", "che", "cui", "il quale",
           "la quale", "su", "da", "sebbene", "se", "anche"],
    "ca": ["ni", "en", "amb", "sense", "per", "segons", "com", "que", "qui", "el qual", "la qual", "sobre", "des de"],
    "en": ["nor", "in", "with", "without", "by", "for", "as", "which", "who", "whose", "on", "since", "although",
           "if", "even", "especially"],
}
_PARENTHETICAL = re.compile(r"\s*(\([^()]*\)|\[[^\[\]]*\]|\s[—–]\s[^—–]*\s[—–](?=\s))")


def _phrase(p: str) -> re.Pattern:
    return re.compile(rf"(?<!\w){re.escape(p.strip())}(?!\w)" + (r"\s*" if p.endswith(" ") else ""),
                      re.IGNORECASE)


def _keep_case(src: str, repl: str) -> str:
    return repl[:1].upper() + repl[1:] if src[:1].isupper() and repl else repl


def _tidy(text: str) -> str:
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    text = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", text)       # ", ," left by a dropped word
    text = re.sub(r"^[\s,;:]+", "", text)
    text = re.sub(r"([.!?¿¡])\s*[,;:]\s*", r"\1 ", text)
    text = re.sub(r"([¿¡])\s+", r"\1", text)
    text = " ".join(text.split())
    return text[:1].upper() + text[1:] if text else text


def _drop(text: str, words: list[str]) -> str:
    """Remove each word/phrase together with the comma that sets it off."""
    for w in sorted(words, key=len, reverse=True):
        pat = re.compile(rf"(?<!\w){re.escape(w)}(?!\w),?", re.IGNORECASE)
        text = pat.sub("", text)
    return _tidy(text)


def _drop_openers(text: str, words: list[str]) -> str:
    for w in sorted(words, key=len, reverse=True):
        text = re.sub(rf"(^|[.!?¿¡]\s*)(?:{re.escape(w)})\s*,\s*", r"\1", text, flags=re.IGNORECASE)
    return _tidy(text)


def _swap(text: str, pairs: list[tuple[str, str]]) -> str:
    for long, short in pairs:
        text = _phrase(long).sub(lambda m, s=short: _keep_case(m.group(0), s), text)
    return _tidy(text)


class Condenser(ABC):
    name: str
    version: str

    @abstractmethod
    def shorten(self, text: str, language: str, max_chars: int) -> str:
        """A version of ``text`` meaning the same, at most ``max_chars`` long when it can; else the
        shortest it can make. Returns ``text`` unchanged when it already fits."""


def drop_asides(text: str, language: str) -> list[str]:
    """Successively shorter versions of ``text`` without its comma-delimited asides: segments strictly
    inside a sentence that open with a preposition or a relative (", in the only sense we care about,"),
    the shortest first."""
    openers = _ASIDE_OPENERS.get(split_code(language)[0], [])
    is_aside = re.compile(rf"^(?:{'|'.join(re.escape(w) for w in openers)})(?!\w)", re.IGNORECASE)
    out, current = [], text
    while openers:
        sentences = re.split(r"(?<=[.!?])\s+", current)
        best = None
        for si, sentence in enumerate(sentences):
            parts = sentence.split(", ")
            for pi in range(1, len(parts) - 1):
                if is_aside.match(parts[pi]) and (best is None or len(parts[pi]) < best[2]):
                    best = (si, pi, len(parts[pi]))
        if best is None:
            break
        si, pi, _ = best
        parts = sentences[si].split(", ")
        sentences[si] = ", ".join(parts[:pi] + parts[pi + 1:])
        current = _tidy(" ".join(sentences))
        out.append(current)
    return out


class RuleCondenser(Condenser):
    """Deterministic per-language shortening in levels (see the module docstring).

    Levels 1-3 lose nothing a viewer needs and are used as far as ``max_chars`` asks. Dropping asides
    (level 4) loses a detail, so it is the last resort: only when levels 1-3 leave the line more than
    ``aside_ratio`` over ``max_chars`` (more than the speed-up the fit may still apply would absorb)."""

    name = "rules"
    version = "rules-v3"
    languages = frozenset(_FILLERS)

    def __init__(self, aside_ratio: float = 1.15):
        self.aside_ratio = aside_ratio

    def levels(self, text: str, language: str) -> list[str]:
        """Successively shorter versions of ``text`` (levels 1, 2, 3), without repeats."""
        lang = split_code(language)[0]
        steps = [
            lambda t: _drop(_PARENTHETICAL.sub("", t), _FILLERS.get(lang, [])),
            lambda t: _swap(t, _SHORTER.get(lang, [])),
            lambda t: _drop(_drop_openers(t, _OPENERS.get(lang, [])), _MARKERS.get(lang, [])),
        ]
        out, current = [], text
        for step in steps:
            shorter = step(current)
            # A level that would leave nothing to say (a line that was only fillers) is skipped.
            if shorter and any(ch.isalnum() for ch in shorter) and len(shorter) < len(current):
                current = shorter
                out.append(current)
        return out

    def shorten(self, text: str, language: str, max_chars: int) -> str:
        if len(text) <= max_chars:
            return text
        best = text
        for candidate in self.levels(text, language):
            best = candidate
            if len(candidate) <= max_chars:
                return best
        if len(best) > max_chars * self.aside_ratio:
            for candidate in drop_asides(best, language):
                best = candidate
                if len(candidate) <= max_chars * self.aside_ratio:
                    break
        return best


class LlmCondenser(Condenser):
    """Shortening by an OpenAI-compatible chat completion endpoint (production; optional).

    ``base_url`` is the API root (``https://host/v1``). Any failure, or an answer that is empty or not
    shorter, falls back to ``fallback`` (the rules), so a flaky endpoint never stops a dub."""

    name = "llm"

    def __init__(self, base_url: str, model: str, api_key: str = "", timeout_s: float = 30.0,
                 fallback: Condenser | None = None):
        if not base_url or not model:
            raise ValueError("LlmCondenser needs a base URL and a model name")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.fallback = fallback or RuleCondenser()
        self.version = f"llm:{model}+{self.fallback.version}"

    def _ask(self, text: str, language: str, max_chars: int) -> str:
        import requests
        prompt = (f"Shorten this {language} line of film dialogue to at most {max_chars} characters so it can "
                  f"be spoken in the same time. Keep the meaning, the register and the language. "
                  f"Answer with the shortened line only.\n\n{text}")
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        r = requests.post(f"{self.base_url}/chat/completions", timeout=self.timeout_s, headers=headers,
                          json={"model": self.model, "temperature": 0,
                                "messages": [{"role": "user", "content": prompt}]})
        r.raise_for_status()
        return " ".join(r.json()["choices"][0]["message"]["content"].strip().strip('"').split())

    def shorten(self, text: str, language: str, max_chars: int) -> str:
        if len(text) <= max_chars:
            return text
        try:
            answer = self._ask(text, language, max_chars)
        except Exception:      # noqa: BLE001 - any endpoint trouble: the offline rules still shorten
            answer = ""
        if answer and any(ch.isalnum() for ch in answer) and len(answer) < len(text):
            return answer
        return self.fallback.shorten(text, language, max_chars)


def default_condenser() -> Condenser:
    url = os.environ.get("OCTAVIA_LLM_URL", "").strip()
    if url:
        return LlmCondenser(url, os.environ.get("OCTAVIA_LLM_MODEL", "").strip() or "gpt-4o-mini",
                            os.environ.get("OCTAVIA_LLM_API_KEY", ""))
    return RuleCondenser()

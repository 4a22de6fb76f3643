"""Text normalisation before synthesis, and splitting long lines for the TTS input limit.

:func:`normalize_for_speech` expands, per language, the abbreviations and symbols a TTS engine reads
wrongly or letter by letter ("Dr." -> "doctor", "%" -> "por ciento", "&" -> "y"), writes numbers in
the form the engine's phonemizer reads in that language (decimal comma, no thousands separator:
espeak-ng, which Kokoro phonemizes with, reads "1.500" as "one point five"), and tidies punctuation
(ellipses, repeated marks, quotes). Digits themselves are left to the phonemizer, which speaks them
in the target language.

:func:`split_sentences` cuts a long line at sentence (then clause) boundaries, never inside a word,
so each piece stays under the engine's input limit and the last word is always spoken.
"""
from __future__ import annotations

import re

from .translation import split_code

_ABBREVIATIONS = {
    "es": {"Sr.": "señor", "Sra.": "señora", "Srta.": "señorita", "Dr.": "doctor", "Dra.": "doctora",
           "Ud.": "usted", "Uds.": "ustedes", "etc.": "etcétera", "p. ej.": "por ejemplo", "EE. UU.": "Estados Unidos",
           "EE.UU.": "Estados Unidos", "núm.": "número", "aprox.": "aproximadamente"},
    "pt": {"Sr.": "senhor", "Sra.": "senhora", "Dr.": "doutor", "Dra.": "doutora", "etc.": "etcétera",
           "p. ex.": "por exemplo", "EUA": "Estados Unidos", "nº": "número", "aprox.": "aproximadamente",
           "V. Sa.": "Vossa Senhoria"},
    "fr": {"M.": "monsieur", "Mme": "madame", "Mlle": "mademoiselle", "Dr": "docteur", "etc.": "et cetera",
           "p. ex.": "par exemple", "n°": "numéro"},
    "it": {"Sig.": "signor", "Sig.ra": "signora", "Dott.": "dottor", "ecc.": "eccetera", "es.": "esempio",
           "n.": "numero"},
    "ca": {"Sr.": "senyor", "Sra.": "senyora", "Dr.": "doctor", "etc.": "etcètera"},
    "en": {"Mr.": "mister", "Mrs.": "missus", "Ms.": "miz", "Dr.": "doctor", "St.": "saint", "etc.": "et cetera",
           "e.g.": "for example", "i.e.": "that is", "vs.": "versus", "No.": "number"},
}
_SYMBOLS = {
    "es": {"%": " por ciento", "&": " y ", "€": " euros", "$": " dólares", "+": " más ", "=": " igual a ", "°": " grados"},
    "pt": {"%": " por cento", "&": " e ", "€": " euros", "$": " dólares", "+": " mais ", "=": " igual a ", "°": " graus"},
    "fr": {"%": " pour cent", "&": " et ", "€": " euros", "$": " dollars", "+": " plus ", "=": " égal ", "°": " degrés"},
    "it": {"%": " per cento", "&": " e ", "€": " euro", "$": " dollari", "+": " più ", "=": " uguale ", "°": " gradi"},
    "ca": {"%": " per cent", "&": " i ", "€": " euros", "$": " dòlars", "+": " més ", "°": " graus"},
    "en": {"%": " percent", "&": " and ", "€": " euros", "$": " dollars", "+": " plus ", "=": " equals ", "°": " degrees"},
}
# Languages writing decimals with a comma: espeak-ng reads "3,5" as "tres coma cinco" there.
_DECIMAL_COMMA = {"es", "pt", "fr", "it", "ca", "de"}


def _numbers(text: str, lang: str) -> str:
    # Thousands separators out ("1.500" / "1,500" / "1 500" -> "1500"): phonemizers read them as decimals.
    sep = r"[.\s\u00a0\u202f]" if lang in _DECIMAL_COMMA else r"[,\s\u00a0\u202f]"
    text = re.sub(rf"(?<![\d.,])(\d{{1,3}})((?:{sep}\d{{3}})+)(?![\d]|[.,]\d)",
                  lambda m: m.group(1) + re.sub(r"\D", "", m.group(2)), text)
    if lang in _DECIMAL_COMMA:
        text = re.sub(r"(\d)\.(\d)", r"\1,\2", text)       # a translated "3.5" keeps the English point
    return text


# European Portuguese spellings (MT models trained on both variants mix them in) -> Brazilian, for a
# pt / pt-BR target: the silent consonant is dropped, as the pt-BR voice and listeners expect.
_PT_BR_SPELLING = [(r"\bactua(?=l|ç|r|d|m|v)", "atua"), (r"\bActua(?=l|ç|r|d|m|v)", "Atua"),
                   (r"(?<=[aeiou])c(?=ção|ções|tivo|tiva|tual)", ""), (r"\bóptim", "ótim"), (r"\bÓptim", "Ótim"),
                   (r"\bdirec(?=ção|ções|tor|tora|to|ta)", "dire"), (r"\bprojec(?=to|tos|ção|ções)", "proje")]


def normalize_for_speech(text: str, language: str) -> str:
    """``text`` as the TTS engine should read it in ``language`` (see the module docstring)."""
    lang, region = split_code(language)
    text = " ".join((text or "").replace("\u2026", "...").split())
    if lang == "pt" and region in (None, "BR"):
        for pattern, repl in _PT_BR_SPELLING:
            text = re.sub(pattern, repl, text)
    for abbr, full in sorted(_ABBREVIATIONS.get(lang, {}).items(), key=lambda kv: -len(kv[0])):
        text = re.sub(rf"(?<!\w){re.escape(abbr)}(?!\w)", full, text)
    text = _numbers(text, lang)
    for sym, word in _SYMBOLS.get(lang, {}).items():
        if sym == "$":
            text = re.sub(r"\$\s?(\d[\d.,]*)", rf"\1{word}", text)
        elif sym == "+":
            text = re.sub(r"(?<=\w)\s*\+\s*(?=\w)", word, text)
        else:
            text = text.replace(sym, word)
    text = re.sub(r"[\"“”«»„]", "", text)
    text = re.sub(r"([!?])[!?]+", r"\1", text)
    text = re.sub(r"\.{2,}", ",", text)                     # a trailing-off "..." is a pause, not "dot dot"
    return " ".join(text.split()).strip(" ,")


_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
_CLAUSE_END = re.compile(r"(?<=,)\s+")


def split_sentences(text: str, max_chars: int) -> list[str]:
    """Pieces of at most ``max_chars`` (when a single word is not longer), cut at sentence ends, then
    at commas, then between words; joining them with spaces gives back the words of ``text``."""
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return [text] if text else []
    pieces: list[str] = []
    for splitter in (_SENTENCE_END, _CLAUSE_END, re.compile(r"\s+")):
        parts = splitter.split(text)
        if len(parts) > 1:
            break
    else:
        return [text]                                       # one word longer than the limit
    current = ""
    for part in parts:
        candidate = f"{current} {part}".strip()
        if len(candidate) <= max_chars or not current:
            current = candidate
        else:
            pieces.append(current)
            current = part
    if current:
        pieces.append(current)
    out: list[str] = []
    for p in pieces:
        out.extend(split_sentences(p, max_chars) if len(p) > max_chars else [p])
    return out

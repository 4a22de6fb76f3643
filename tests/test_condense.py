"""Text shortening (rules, LLM endpoint with fallback) and text normalisation before synthesis."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from octavia_assets.resources.condense import LlmCondenser, RuleCondenser, default_condenser
from octavia_assets.resources.textnorm import normalize_for_speech, split_sentences

ES = "Bueno, la verdad es que, sin embargo, nosotros tenemos que terminar (como ya dije) el trabajo muy pronto."


def test_rules_shorten_in_levels_and_keep_content():
    r = RuleCondenser()
    levels = r.levels(ES, "es")
    assert len(levels) == 3 and all(len(b) < len(a) for a, b in zip([ES] + levels, levels))
    assert levels[0] == "Sin embargo, nosotros tenemos que terminar el trabajo muy pronto."   # fillers, aside
    assert levels[1] == "Pero, debemos terminar el trabajo muy pronto."                       # shorter phrasing
    assert levels[2] == "Pero, debemos terminar el trabajo pronto."                           # intensifier
    for word in ("terminar", "trabajo", "pronto"):
        assert all(word in lv for lv in levels)


def test_rules_stop_at_the_first_level_that_fits():
    r = RuleCondenser()
    assert r.shorten(ES, "es", 1000) == ES                      # fits: untouched
    assert r.shorten(ES, "es", 70) == "Sin embargo, nosotros tenemos que terminar el trabajo muy pronto."
    assert r.shorten(ES, "es", 5) == "Pero, debemos terminar el trabajo pronto."  # as short as it gets
    assert r.shorten("Bem, na verdade eu acho que sim.", "pt", 10) == "Acho que sim."
    assert r.shorten("Well, I mean, it is done.", "en-US", 5) == "It's done."


def test_rules_never_leave_nothing_to_say():
    assert RuleCondenser().shorten("Bueno.", "es", 1) == "Bueno."
    assert RuleCondenser().shorten("Texto sin reglas.", "xx", 3) == "Texto sin reglas."


class _Chat(BaseHTTPRequestHandler):
    answer = "Debemos acabar pronto."
    seen: list = []

    def do_POST(self):  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Chat.seen.append((self.path, self.headers.get("Authorization"), body))
        if _Chat.answer is None:
            self.send_response(500)
            self.end_headers()
            return
        data = json.dumps({"choices": [{"message": {"content": _Chat.answer}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def chat_server():
    server = HTTPServer(("127.0.0.1", 0), _Chat)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


def test_llm_condenser_uses_the_endpoint_then_falls_back(chat_server, monkeypatch):
    _Chat.seen.clear()
    _Chat.answer = "Debemos acabar pronto."
    llm = LlmCondenser(chat_server, "some-model", api_key="k")
    assert llm.shorten(ES, "es", 40) == "Debemos acabar pronto."
    path, auth, body = _Chat.seen[-1]
    assert path == "/v1/chat/completions" and auth == "Bearer k" and body["model"] == "some-model"
    assert ES in body["messages"][0]["content"] and "40 characters" in body["messages"][0]["content"]
    _Chat.answer = None                                          # endpoint down: the rules shorten
    assert llm.shorten(ES, "es", 40) == RuleCondenser().shorten(ES, "es", 40)
    _Chat.answer = ES + " Y más."                                # not shorter: the rules shorten
    assert llm.shorten(ES, "es", 40) == RuleCondenser().shorten(ES, "es", 40)
    monkeypatch.setenv("OCTAVIA_LLM_URL", chat_server)
    monkeypatch.setenv("OCTAVIA_LLM_MODEL", "m")
    assert isinstance(default_condenser(), LlmCondenser)
    monkeypatch.delenv("OCTAVIA_LLM_URL")
    assert isinstance(default_condenser(), RuleCondenser)


@pytest.mark.parametrize("lang,text,expected", [
    ("es", "El Dr. García pagó 1.500 € (un 20 %) en EE. UU.",
     "El doctor García pagó 1500 euros (un 20 por ciento) en Estados Unidos"),
    ("pt", "O Sr. Silva tem 3.5 kg & 2 filhos...", "O senhor Silva tem 3,5 kg e 2 filhos"),
    ("en", "Mr. Smith paid $1,200 for \"it\"!!", "mister Smith paid 1200 dollars for it!"),
    ("fr", "M. Dupont a 1 500 livres.", "monsieur Dupont a 1500 livres."),
])
def test_normalize_for_speech(lang, text, expected):
    assert normalize_for_speech(text, lang) == expected


def test_split_sentences_keeps_every_word():
    text = ("Primera frase bastante larga. Segunda frase, con una coma en medio, también larga! "
            "Y una tercera sin puntuación que sigue y sigue hasta el final")
    for limit in (200, 60, 30, 12):
        parts = split_sentences(text, limit)
        assert " ".join(parts).split() == text.split()
        assert all(len(p) <= limit or " " not in p for p in parts)
    assert split_sentences(text, 60)[0] == "Primera frase bastante larga."
    assert split_sentences("corto", 100) == ["corto"] and split_sentences("", 10) == []


def test_asides_are_the_last_resort():
    line = ("La impresión, en el único sentido que nos ocupa, difiere de casi todas las artes, "
            "sin excepción, representadas en la exposición.")
    r = RuleCondenser()
    assert r.shorten(line, "es", len(line) - 5) == line.replace(" muy", "")    # nothing safe to cut: kept
    short = r.shorten(line, "es", 80)
    assert short == "La impresión, difiere de casi todas las artes, representadas en la exposición."
    assert RuleCondenser(aside_ratio=10).shorten(line, "es", 80) == line      # asides off


def test_european_portuguese_spellings_become_brazilian_for_a_pt_target():
    from octavia_assets.resources.textnorm import normalize_for_speech
    text = "Actualmente a direcção do projecto é óptima."
    assert normalize_for_speech(text, "pt") == "Atualmente a direção do projeto é ótima."
    assert normalize_for_speech(text, "pt-BR") == "Atualmente a direção do projeto é ótima."
    assert normalize_for_speech(text, "pt-PT") == text                   # European target: untouched
    assert normalize_for_speech("o facto e a acta", "pt") == "o facto e a acta"   # words, not spellings

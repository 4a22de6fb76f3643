"""Remote TTS (OpenAI-compatible /v1/audio/speech) against a local HTTP server started here."""
import http.server
import io
import json
import struct
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from octavia_assets.resources.prod_tts_remote import RemoteSpeechSynthesizer, RemoteTtsError, decode_wav

KEY = "sk-test-secret-0123456789"
SERVER_RATE = 22050


def _sine_wav(seconds: float = 0.5, streamed: int | None = None) -> bytes:
    t = np.arange(int(seconds * SERVER_RATE)) / SERVER_RATE
    buf = io.BytesIO()
    sf.write(buf, (0.5 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), SERVER_RATE, subtype="PCM_16",
             format="WAV")
    data = bytearray(buf.getvalue())
    if streamed is not None:     # what streaming servers send: sizes unknown when the header went out
        data[4:8] = struct.pack("<I", streamed)
        pos = data.index(b"data")
        data[pos + 4:pos + 8] = struct.pack("<I", streamed)
    return bytes(data)


@pytest.fixture
def server():
    """Answers /v1/audio/speech with the scripted (status, body, delay) replies, then with a WAV."""
    state = {"script": [], "requests": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state["requests"].append({"path": self.path, "headers": dict(self.headers), "json": json.loads(body)})
            status, payload, delay = state["script"].pop(0) if state["script"] else (200, _sine_wav(), 0)
            time.sleep(delay)
            self.send_response(status)
            self.send_header("Content-Type", "audio/wav" if status == 200 else "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    yield state
    httpd.shutdown()
    httpd.server_close()


def _synth(server, **kw) -> RemoteSpeechSynthesizer:
    kw.setdefault("backoff_s", 0.01)
    return RemoteSpeechSynthesizer(url=server["url"], api_key=KEY, model="vibevoice-1.5b",
                                   voices="alice:female:210,bob:male", **kw)


def test_speech_request_and_wav_decoding(server):
    synth = _synth(server)
    audio = synth.synthesize("Olá, tudo bem?", "alice", "pt", speed=1.2)
    req = server["requests"][0]
    assert req["path"] == "/v1/audio/speech"
    assert req["json"] == {"model": "vibevoice-1.5b", "input": "Olá, tudo bem?", "voice": "alice",
                           "response_format": "wav", "speed": 1.2}
    assert req["headers"]["Authorization"] == f"Bearer {KEY}"
    # 0.5 s of a 22.05 kHz sine, resampled to the engine's 24 kHz, peak-limited.
    assert audio.dtype == np.float32 and len(audio) == pytest.approx(12000, abs=2)
    assert 0.4 < np.abs(audio).max() <= 0.95
    spectrum = np.abs(np.fft.rfft(audio))
    assert np.argmax(spectrum) * 24000 / len(audio) == pytest.approx(200, abs=3)
    assert KEY not in synth.version and KEY not in repr(synth)
    assert synth.version == "openai-speech:vibevoice-1.5b@127.0.0.1/v1+24000"


def test_servers_without_speed_get_no_speed_field(server, monkeypatch):
    monkeypatch.setenv("OCTAVIA_TTS_NATIVE_SPEED", "0")
    synth = _synth(server)
    assert synth.supports_speed is False and synth.version.endswith("-nospeed")
    synth.synthesize("Hello.", "bob", "en")
    assert "speed" not in server["requests"][0]["json"]
    with pytest.raises(ValueError, match="not asked for other speeds"):
        synth.synthesize("Hello.", "bob", "en", speed=1.3)
    assert len(server["requests"]) == 1


def test_voices_languages_and_input_checks(server):
    synth = _synth(server, languages="en,pt")
    voices = {v.id: v for v in synth.voices()}
    assert voices["alice"].gender == "female" and voices["alice"].f0_hz == 210.0
    assert voices["bob"].f0_hz is None and voices["bob"].languages == ["en", "pt"]
    assert synth.supports_language("pt-BR") and not synth.supports_language("fr")
    with pytest.raises(ValueError, match="unknown remote voice"):
        synth.synthesize("Hello", "carol", "en")
    with pytest.raises(ValueError, match="not 'fr'"):
        synth.synthesize("Bonjour", "bob", "fr")
    with pytest.raises(ValueError, match="nothing to synthesize"):
        synth.synthesize(" ... ", "bob", "en")
    assert server["requests"] == []
    with pytest.raises(ValueError, match=r"voice:male\|female"):
        RemoteSpeechSynthesizer(url=server["url"], voices="alice")
    with pytest.raises(ValueError, match="must not carry credentials"):
        RemoteSpeechSynthesizer(url="https://user:pw@example.com/v1")


def test_server_errors_and_rate_limits_are_retried_with_backoff(server):
    server["script"] = [(503, b'{"error": "warming up"}', 0), (429, b'{"error": "slow down"}', 0)]
    synth = _synth(server)
    started = time.perf_counter()
    audio = synth.synthesize("Hello there.", "bob", "en")
    assert len(server["requests"]) == 3 and synth.requests_made == 3 and len(audio) > 0
    assert time.perf_counter() - started < 5


def test_client_errors_fail_at_once_with_the_servers_message(server, caplog):
    server["script"] = [(400, b'{"error": {"message": "voice bob is not loaded"}}', 0)]
    synth = _synth(server)
    with pytest.raises(RemoteTtsError, match="HTTP 400.*voice bob is not loaded") as e:
        synth.synthesize("Hello there.", "bob", "en")
    assert len(server["requests"]) == 1
    assert KEY not in str(e.value) and KEY not in caplog.text


def test_persistent_failures_timeouts_and_dead_servers_give_up_after_the_retries(server):
    server["script"] = [(500, b"boom", 0)] * 3
    with pytest.raises(RemoteTtsError, match="failed after 3 attempts: HTTP 500"):
        _synth(server, retries=2).synthesize("Hello.", "bob", "en")
    assert len(server["requests"]) == 3
    server["script"] = [(200, _sine_wav(), 1.0)] * 2
    with pytest.raises(RemoteTtsError, match="failed after 2 attempts.*timed out"):
        _synth(server, retries=1, timeout_s=0.2).synthesize("Hello.", "bob", "en")
    dead = RemoteSpeechSynthesizer(url="http://127.0.0.1:9/v1", retries=1, backoff_s=0.01)
    with pytest.raises(RemoteTtsError, match="failed after 2 attempts.*Connection refused"):
        dead.synthesize("Hello.", "alloy", "en")


def test_streamed_wav_headers_are_decoded(server):
    server["script"] = [(200, _sine_wav(0.25, streamed=0), 0), (200, _sine_wav(0.25, streamed=0xFFFFFFFF), 0)]
    for _ in range(2):
        audio = _synth(server).synthesize("Hello.", "bob", "en")
        assert len(audio) == pytest.approx(6000, abs=2)
    for size in (0, 0xFFFFFFFF):
        samples, sr = decode_wav(_sine_wav(0.25, streamed=size))
        assert sr == SERVER_RATE and len(samples) == int(0.25 * SERVER_RATE)
        np.testing.assert_allclose(samples, decode_wav(_sine_wav(0.25))[0])
    with pytest.raises(RemoteTtsError, match="not a WAV"):
        decode_wav(b"ID3\x03mp3 bytes instead")


def test_engine_registry_reads_the_environment(server, monkeypatch):
    from octavia_assets.resources import engines
    engines._synthesizer.cache_clear()
    monkeypatch.delenv("OCTAVIA_TTS_URL", raising=False)
    monkeypatch.setenv("OCTAVIA_TTS_ENGINE", "openai-speech")
    try:
        assert engines.engine_version("tts") == "openai-speech@unavailable"   # no URL: fails at run time
        engines._synthesizer.cache_clear()
        monkeypatch.setenv("OCTAVIA_TTS_URL", server["url"])
        monkeypatch.setenv("OCTAVIA_TTS_API_KEY", KEY)
        monkeypatch.setenv("OCTAVIA_TTS_MODEL", "tts-1-hd")
        assert engines.engine_version("tts") == "openai-speech:tts-1-hd@127.0.0.1/v1+24000"
        synth = engines.TtsEngine(engine="openai-speech").get("es")
        assert isinstance(synth, RemoteSpeechSynthesizer)
        synth.synthesize("Hola.", "nova", "es")
        assert server["requests"][-1]["json"]["model"] == "tts-1-hd"
    finally:
        engines._synthesizer.cache_clear()

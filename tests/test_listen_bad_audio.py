"""The listening stages (pre_analysis -> stems -> speaker_map -> chunks -> transcript) on bad audio:
each case gives a sensible result, never a crash in a later stage."""
import subprocess

import dagster as dg
import pytest

from octavia_assets.audio import audio
from octavia_assets.chunks import chunks
from octavia_assets.definitions import resources_for_env
from octavia_assets.pre_analysis import pre_analysis
from octavia_assets.registry import register_upload
from octavia_assets.source import source_video
from octavia_assets.speakers import speaker_map
from octavia_assets.stems import stems
from octavia_assets.transcript import transcript
from tests.conftest import make_media

pytestmark = [pytest.mark.slow, pytest.mark.media]
LISTEN = [source_video, audio, pre_analysis, stems, speaker_map, chunks, transcript]


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-y", "-loglevel", "error", *args], check=True)


def _input(case: str, media, tmp_path):
    out = tmp_path / f"{case}.mkv"
    if case == "silence":
        make_media(out, "-f", "lavfi", "-i", "anullsrc=r=44100:cl=stereo", "-t", "4", "-c:a", "pcm_s16le")
    elif case == "music_only":
        _ffmpeg("-i", str(media / "music" / "sorohanro_solo_trumpet_06.ogg"), "-c:a", "pcm_s16le", str(out))
    elif case == "one_second":
        _ffmpeg("-i", str(media / "speech" / "en_ljspeech_LJ001-0002.wav"), "-t", "1", "-c:a", "pcm_s16le", str(out))
    elif case == "telephone_8k":
        # narrow band (300-3400 Hz), 8 kHz, mu-law: what a phone line delivers
        _ffmpeg("-i", str(media / "speech" / "en_jfk_inaugural_1961.wav"), "-af", "highpass=f=300,lowpass=f=3400",
                "-ar", "8000", "-ac", "1", "-c:a", "pcm_mulaw", str(out))
    elif case == "surround_5_1":
        out = media / "video" / "bbb_5s_5.1.mp4"
    return out


@pytest.mark.parametrize("case", ["silence", "music_only", "one_second", "telephone_8k", "surround_5_1"])
def test_listening_stages_on_bad_audio(case, shared_media, media_store, tmp_path):
    src = _input(case, shared_media, tmp_path)
    resources = {**resources_for_env(), "media_store": media_store}
    with dg.instance_for_test() as instance:
        info = media_store.put_file(src, f"uploads/{case}{src.suffix}")
        video = register_upload(media_store, info)
        instance.add_dynamic_partitions("videos", [video])
        result = dg.materialize(LISTEN, partition_key=video, instance=instance, resources=resources)
        assert result.success
    analysis = media_store.read_json(f"derived/{video}/pre_analysis/pre_analysis.json")
    chunk_doc = media_store.read_json(f"derived/{video}/chunks/chunks.json")
    lines = media_store.read_json(f"derived/{video}/transcript/transcript.json")["lines"]
    speakers = media_store.read_json(f"derived/{video}/speaker_map/speaker_map.json")["speakers"]
    print(f"\n{case}: speech {analysis['speech_s']} s, background score {analysis['background_score']}, "
          f"separate {analysis['separate']}, language {analysis['language']} {analysis['language_probability']}, "
          f"{len(chunk_doc['chunks'])} chunks, {len(speakers)} speakers, lines {[ln['text'] for ln in lines]}")
    if case in ("silence", "music_only", "surround_5_1"):
        # no speech (the 5.1 clip is film sound: music and effects): nothing to say, no one to voice
        assert analysis["speech_s"] < 1.0
        assert lines == [] or all(len(ln["text"].split()) <= 3 for ln in lines)
    if case == "silence":
        assert chunk_doc["chunks"] == [] and speakers == {} and lines == []
    if case == "surround_5_1":
        assert analysis["source"]["channels"] == 6
    if case == "telephone_8k":
        assert analysis["language"] == "en"
        text = " ".join(ln["text"] for ln in lines).lower()
        assert "ask not what your country can do for you" in text
        assert len(speakers) == 1
    if case == "one_second":
        assert len(chunk_doc["chunks"]) <= 1
    for c in chunk_doc["chunks"]:
        assert c["speaker"] in speakers or not speakers

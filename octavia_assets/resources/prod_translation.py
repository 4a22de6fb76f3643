"""Production translation: NLLB-200 (Meta, CC-BY-NC-4.0) through ``transformers``, chain name ``nllb``.

Weights and tokenizer come only from the model directory (``$OCTAVIA_MODEL_DIR/nllb-200-distilled-600M``,
filled by ``octavia models fetch``), loaded with ``local_files_only=True`` after the hub is switched
off. Lines are translated in batches sorted by length (little padding), on CUDA in fp16 when present.

Context: a subtitle line is often half a sentence. When the previous line does not end a sentence, the
line is translated again as the continuation of the two lines together: the source is
``previous + current`` and the decoder is forced to start with the previous line's translation, so
the model sees the whole sentence but only the new part is kept. Lines that start a sentence are
translated on their own (batched).
"""
from __future__ import annotations

import re
import threading

from .model_dir import require, weights_fingerprint
from .translation import _Base, split_code

TRANSFORMERS_INSTALL_HINT = "pip install transformers==5.23.0"

#: ISO 639-1 -> FLORES-200 codes NLLB uses (a subset; add more as targets grow).
NLLB_CODES = {
    "en": "eng_Latn", "pt": "por_Latn", "es": "spa_Latn", "fr": "fra_Latn", "de": "deu_Latn",
    "it": "ita_Latn", "ca": "cat_Latn", "nl": "nld_Latn", "pl": "pol_Latn", "ro": "ron_Latn",
    "gl": "glg_Latn", "sv": "swe_Latn", "da": "dan_Latn", "ru": "rus_Cyrl", "uk": "ukr_Cyrl",
    "tr": "tur_Latn", "ja": "jpn_Jpan", "ko": "kor_Hang", "zh": "zho_Hans", "ar": "arb_Arab",
    "hi": "hin_Deva",
}

_SENTENCE_END = re.compile(r"""[.!?…。！？]["'”’»)\]]*\s*$""")


def nllb_code(language: str) -> str | None:
    return NLLB_CODES.get(split_code(language)[0])


class NllbTranslator(_Base):
    """NLLB-200 (or any M2M100-family seq2seq checkpoint with FLORES codes) from the model directory."""

    name = "nllb"

    def __init__(self, model_id: str = "nllb-200-distilled-600M", batch_size: int = 16, num_beams: int = 4,
                 max_new_tokens: int = 256, context: bool = True, device: str | None = None):
        self.model_id = model_id
        self.batch_size, self.num_beams, self.max_new_tokens = int(batch_size), int(num_beams), int(max_new_tokens)
        self.context = bool(context)
        self._device = device
        fp = weights_fingerprint(model_id, ("*.json", "*.safetensors", "*.bin", "*.model"))
        self.version = f"nllb:{model_id}@{fp}+beam{self.num_beams}" + ("-ctx" if self.context else "")
        self._loaded = None
        self._lock = threading.Lock()

    def supports(self, source: str, target: str) -> bool:
        return nllb_code(source) is not None and nllb_code(target) is not None

    def pairs(self) -> list[tuple[str, str]]:
        return [(a, b) for a in NLLB_CODES for b in NLLB_CODES if a != b]

    def _load(self):
        with self._lock:
            if self._loaded is None:
                root = require(self.model_id, ["config.json", "model.safetensors|pytorch_model.bin",
                                               "tokenizer.json"])
                try:
                    import torch
                    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
                    from transformers.utils import logging as hf_logging
                except ImportError as e:
                    raise RuntimeError(f"transformers is not installed ({e}): {TRANSFORMERS_INSTALL_HINT}") from None
                hf_logging.disable_progress_bar()          # no tqdm bars in run logs
                device = self._device or ("cuda" if torch.cuda.is_available() else "cpu")
                dtype = torch.float16 if device.startswith("cuda") else torch.float32
                tok = AutoTokenizer.from_pretrained(str(root), local_files_only=True)
                model = AutoModelForSeq2SeqLM.from_pretrained(str(root), local_files_only=True, dtype=dtype)
                model.to(device).eval()
                self._loaded = (tok, model, device)
            return self._loaded

    def _lang_id(self, tok, code: str) -> int:
        token_id = tok.convert_tokens_to_ids(code)
        if token_id is None or token_id == tok.unk_token_id:
            raise ValueError(f"{self.model_id}: its tokenizer has no language token {code}")
        return token_id

    def _generate(self, tok, model, device, sources: list[str], src: str, tgt_id: int,
                  prefixes: list[list[int]] | None = None) -> list[str]:
        import torch
        tok.src_lang = src
        enc = tok(sources, return_tensors="pt", padding=True, truncation=True, max_length=512).to(device)
        kwargs = {"num_beams": self.num_beams, "max_new_tokens": self.max_new_tokens}
        start = 0
        if prefixes is None:
            kwargs["forced_bos_token_id"] = tgt_id
        else:                             # one source per call: decoder prefixes differ in length
            start_id = model.config.decoder_start_token_id
            ids = [start_id, tgt_id] + prefixes[0]
            kwargs["decoder_input_ids"] = torch.tensor([ids], device=device)
            start = len(ids)
        with torch.inference_mode():
            out = model.generate(**enc, **kwargs)
        return [t.strip() for t in tok.batch_decode(out[:, start:], skip_special_tokens=True)]

    def _translate(self, texts: list[str], source: str, target: str) -> list[str]:
        tok, model, device = self._load()
        src, tgt = nllb_code(source), nllb_code(target)
        tgt_id = self._lang_id(tok, tgt)
        self._lang_id(tok, src)
        # Each line alone, batched by length (lines are non-blank here: _Base removed the blank ones).
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = [""] * len(texts)
        for b in range(0, len(order), self.batch_size):
            idx = order[b:b + self.batch_size]
            for i, t in zip(idx, self._generate(tok, model, device, [texts[i] for i in idx], src, tgt_id)):
                out[i] = t
        if not self.context:
            return out
        # A line continuing the previous one's sentence: translate both, keep the new part.
        for i in range(1, len(texts)):
            if _SENTENCE_END.search(texts[i - 1]) or not out[i - 1]:
                continue
            prefix = tok(text_target=out[i - 1], add_special_tokens=False)["input_ids"]
            joined = texts[i - 1].rstrip() + " " + texts[i].lstrip()
            cont = self._generate(tok, model, device, [joined], src, tgt_id, prefixes=[prefix])[0]
            if cont:
                out[i] = cont
        return out

"""NLLB translation engine on a tiny randomly initialised M2M100 model with a tiny NLLB tokenizer,
saved in the Hugging Face layout in a temp model directory (loading, language codes, batching,
context and the chain; not translation quality)."""
import pytest

pytest.importorskip("transformers", reason="transformers==5.23.0 not installed (dev extra)")
torch = pytest.importorskip("torch")

from octavia_assets.resources.model_dir import ModelMissing
from octavia_assets.resources.prod_translation import NllbTranslator
from octavia_assets.resources.translation import TranslatorChain

MODEL_ID = "nllb-200-distilled-600M"


@pytest.fixture(scope="module")
def model_root(tmp_path_factory):
    from transformers import M2M100Config, M2M100ForConditionalGeneration, NllbTokenizer
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for ch in list("abcdefghijklmnopqrstuvwxyz.,!?'") + ["▁"]:
        vocab[ch] = len(vocab)
    tok = NllbTokenizer(vocab=vocab, merges=[])          # + the 202 FLORES language tokens
    torch.manual_seed(0)
    cfg = M2M100Config(vocab_size=len(tok), d_model=16, encoder_layers=1, decoder_layers=1,
                       encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                       decoder_ffn_dim=32, max_position_embeddings=256, pad_token_id=1, bos_token_id=0,
                       eos_token_id=2, decoder_start_token_id=2)
    root = tmp_path_factory.mktemp("models")
    tok.save_pretrained(root / MODEL_ID)
    M2M100ForConditionalGeneration(cfg).save_pretrained(root / MODEL_ID)
    return root


@pytest.fixture
def engine(model_root, monkeypatch):
    monkeypatch.setenv("OCTAVIA_MODEL_DIR", str(model_root))
    eng = NllbTranslator(MODEL_ID, batch_size=2, num_beams=2, max_new_tokens=8)
    tok, model, _ = eng._load()
    calls = []
    real = model.generate
    model.generate = lambda **kw: calls.append(kw) or real(**kw)
    return eng, tok, calls


def test_lines_are_batched_with_flores_codes_and_keep_their_order(engine):
    eng, tok, calls = engine
    eng.context = False
    texts = ["Hello there.", "", "A much longer line to translate here.", "Yes.", "Fine, thanks!", "Go."]
    out = eng.translate(texts, "en", "pt-BR")
    assert len(out) == len(texts) and out[1] == "" and all(t for i, t in enumerate(out) if i != 1)
    assert len(calls) == 3                                   # 5 non-blank lines in batches of 2
    por, eng_id = tok.convert_tokens_to_ids("por_Latn"), tok.convert_tokens_to_ids("eng_Latn")
    assert {c["forced_bos_token_id"] for c in calls} == {por}
    assert all((c["input_ids"][:, 0] == eng_id).all() for c in calls)        # source language token
    # Sorted by length: the first batch holds the two shortest lines.
    assert calls[0]["input_ids"].shape[1] < calls[-1]["input_ids"].shape[1]
    # Same input, same output (greedy/beam search on fixed weights), whatever the batch position.
    assert eng.translate(["Fine, thanks!"], "en", "pt") == [out[4]]
    es = eng.translate(["Hello there."], "en", "es")
    assert calls[-1]["forced_bos_token_id"] == tok.convert_tokens_to_ids("spa_Latn") and len(es) == 1


def test_a_line_continuing_a_sentence_is_decoded_after_the_previous_translation(engine):
    eng, tok, calls = engine
    texts = ["so when we got", "to the station.", "Then we left."]
    out = eng.translate(texts, "en", "fr")
    prefixed = [c for c in calls if "decoder_input_ids" in c]
    assert len(calls) == 3 and len(prefixed) == 1            # 2 batched + line 2 again in context
    ids = prefixed[0]["decoder_input_ids"][0].tolist()
    first = eng.translate([texts[0]], "en", "fr")[0]          # line 1 alone is also line 1 in the batch
    assert ids[:2] == [2, tok.convert_tokens_to_ids("fra_Latn")]
    assert ids[2:] == tok(text_target=first, add_special_tokens=False)["input_ids"]
    assert tok.decode(prefixed[0]["input_ids"][0], skip_special_tokens=True).startswith("so when we got to")
    assert len(out) == 3 and out[0] == first


def test_supported_pairs_and_version_without_loading(model_root, monkeypatch):
    monkeypatch.setenv("OCTAVIA_MODEL_DIR", str(model_root))
    eng = NllbTranslator(MODEL_ID)
    assert eng.supports("en", "pt") and eng.supports("pt-PT", "de") and not eng.supports("en", "xx")
    assert eng.version.startswith(f"nllb:{MODEL_ID}@") and "absent" not in eng.version and eng._loaded is None
    assert NllbTranslator(MODEL_ID, context=False).version != eng.version
    monkeypatch.setenv("OCTAVIA_MODEL_DIR", str(model_root / "nowhere"))
    assert "@absent" in NllbTranslator(MODEL_ID).version
    with pytest.raises(ModelMissing, match=f"octavia models fetch {MODEL_ID}"):
        NllbTranslator(MODEL_ID).translate(["Hello."], "en", "pt")


def test_the_chain_uses_nllb_first_and_reports_a_missing_model(model_root, monkeypatch):
    from octavia_assets.resources import engines
    monkeypatch.setenv("OCTAVIA_MODEL_DIR", str(model_root))
    engines._translator.cache_clear()
    try:
        chain = engines.TranslationEngine(chain="nllb").get()
        assert isinstance(chain, TranslatorChain) and "en->it" in chain.available_pairs()
        monkeypatch.setattr(chain.engines[0], "max_new_tokens", 4)
        out = chain.translate(["Good morning.", "See you."], "en", "it")
        assert len(out) == 2 and chain.last_engine is chain.engines[0]
        monkeypatch.setenv("OCTAVIA_MODEL_DIR", str(model_root / "nowhere"))
        engines._translator.cache_clear()
        with pytest.raises(RuntimeError, match=f"nllb: model '{MODEL_ID}' is not in the model directory"):
            engines.TranslationEngine(chain="nllb").get().translate(["Hello."], "en", "pt")
    finally:
        engines._translator.cache_clear()


@pytest.mark.slow
def test_real_nllb_weights_when_the_model_directory_has_them(monkeypatch):
    from octavia_assets.resources.model_dir import missing_files, model_path
    if not model_path(MODEL_ID).is_dir() or missing_files(MODEL_ID):
        pytest.skip(f"no {MODEL_ID} weights in the model directory (run `octavia models fetch {MODEL_ID}`)")
    out = NllbTranslator(MODEL_ID).translate(["Good morning, my friend.", "Where is the train station?"], "en", "pt")
    assert "bom dia" in out[0].lower() and "estação" in out[1].lower()

"""The model directory: require() errors, `octavia models list`, and atomic `octavia models fetch`
against a local HTTP server (no network) and a stand-in Hugging Face snapshot downloader."""
import dataclasses
import hashlib
import http.server
import json
import os
import threading

import pytest

from octavia_assets.cli import main as cli_main
from octavia_assets.resources import model_dir, model_fetch
from octavia_assets.resources.model_dir import MODELS, ModelMissing, ModelSpec


@pytest.fixture
def models_root(tmp_path, monkeypatch):
    root = tmp_path / "models"
    monkeypatch.setenv("OCTAVIA_MODEL_DIR", str(root))
    return root


def test_model_dir_follows_the_setting_and_defaults_to_the_home(models_root, monkeypatch, tmp_path):
    assert model_dir.model_dir() == models_root.resolve()
    assert model_dir.model_path("htdemucs_ft") == models_root.resolve() / "htdemucs_ft"
    monkeypatch.delenv("OCTAVIA_MODEL_DIR")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    assert model_dir.model_dir() == (tmp_path / "home" / "models").resolve()
    with pytest.raises(ValueError, match="plain folder name"):
        model_dir.model_path("../etc")


def test_require_names_the_missing_file_and_the_fetch_command(models_root, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with pytest.raises(ModelMissing, match=r"htdemucs_ft.*does not exist.*octavia models fetch htdemucs_ft"):
        model_dir.require("htdemucs_ft")
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    folder = models_root / "nllb-200-distilled-600M"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    with pytest.raises(ModelMissing) as e:
        model_dir.require("nllb-200-distilled-600M")
    msg = str(e.value)
    assert "model.safetensors is missing (model.safetensors or pytorch_model.bin and 1 more)" in msg
    assert "`octavia models fetch nllb-200-distilled-600M`" in msg
    (folder / "pytorch_model.bin").write_bytes(b"x")        # either weights file will do
    (folder / "tokenizer.json").write_text("{}")
    assert model_dir.require("nllb-200-distilled-600M") == folder.resolve()
    # An engine's own file list; unknown model ids get a copy-it-there hint.
    with pytest.raises(ModelMissing, match="extra.bin"):
        model_dir.require("nllb-200-distilled-600M", ["extra.bin"])
    with pytest.raises(ModelMissing, match="copy the model's files there"):
        model_dir.require("my-own-model")


def test_weights_fingerprint_changes_with_files_without_reading_them(models_root):
    assert model_dir.weights_fingerprint("htdemucs") == "absent"
    folder = models_root / "htdemucs"
    folder.mkdir(parents=True)
    (folder / "a.th").write_bytes(b"1234")
    first = model_dir.weights_fingerprint("htdemucs")
    (folder / "a.th").write_bytes(b"12345")
    assert model_dir.weights_fingerprint("htdemucs") != first
    (folder / "a.th").write_bytes(b"4321")                   # same name and size: same version
    assert model_dir.weights_fingerprint("htdemucs") == first


def test_models_list(models_root, capsys):
    folder = models_root / "htdemucs"
    folder.mkdir(parents=True)
    (folder / "htdemucs.yaml").write_text("models: ['955717e8']\n")
    assert cli_main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert str(models_root.resolve()) in out
    rows = {r["model"]: r for r in model_fetch.list_models()}
    assert rows["htdemucs"]["state"] == "incomplete (missing 955717e8-8726e21a.th)"
    assert rows["htdemucs_ft"]["state"] == "absent"
    assert rows["nllb-200-distilled-600M"]["licence"].startswith("CC-BY-NC-4.0")
    assert "incomplete (missing 955717e8-8726e21a.th)" in out and "xtts_v2" in out


def _checkpoint(payload: bytes, sig: str) -> tuple[str, bytes]:
    return f"{sig}-{hashlib.sha256(payload).hexdigest()[:8]}.th", payload


@pytest.fixture
def file_server():
    """A local HTTP server of in-memory files; records the paths asked for."""
    files: dict[str, bytes] = {}
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            body = files.get(self.path.lstrip("/"))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", files, hits
    server.shutdown()
    server.server_close()


def test_fetch_downloads_verifies_and_renames_into_place(models_root, file_server, monkeypatch, capsys):
    base, files, hits = file_server
    name_a, body_a = _checkpoint(b"weights-a" * 1000, "aaaa1111")
    name_b, body_b = _checkpoint(b"weights-b" * 1000, "bbbb2222")
    files.update({name_a: body_a, name_b: body_b})
    spec = ModelSpec(repo=None, files=("tiny.yaml", name_a, name_b), licence="MIT", stage="separation",
                     urls={name_a: base + name_a, name_b: base + name_b},
                     inline={"tiny.yaml": "models: ['aaaa1111', 'bbbb2222']\n"})
    monkeypatch.setitem(MODELS, "tiny", spec)
    assert cli_main(["models", "fetch", "tiny"]) == 0
    folder = models_root / "tiny"
    assert (folder / name_a).read_bytes() == body_a and (folder / name_b).read_bytes() == body_b
    assert (folder / "tiny.yaml").read_text().startswith("models:")
    manifest = json.loads((folder / model_fetch.MANIFEST).read_text())
    assert manifest["files"][name_a] == len(body_a)
    assert "licence MIT" in capsys.readouterr().out
    assert [p.name for p in models_root.iterdir()] == ["tiny"]          # no temp folder left behind
    assert model_dir.require("tiny") == folder.resolve()
    # Present: a second fetch downloads nothing.
    hits.clear()
    assert cli_main(["models", "fetch", "tiny"]) == 0
    assert hits == []


def test_a_corrupt_or_missing_download_leaves_the_previous_copy_intact(models_root, file_server, monkeypatch,
                                                                        capsys):
    base, files, _ = file_server
    name, body = _checkpoint(b"good" * 500, "cccc3333")
    files[name] = body
    spec = ModelSpec(repo=None, files=(name,), licence="MIT", stage="separation", urls={name: base + name})
    monkeypatch.setitem(MODELS, "tiny", spec)
    assert cli_main(["models", "fetch", "tiny"]) == 0
    files[name] = b"tampered" * 500                                     # checksum in the name no longer holds
    assert cli_main(["models", "fetch", "--force", "tiny"]) == 1
    assert "corrupt download" in capsys.readouterr().err
    assert (models_root / "tiny" / name).read_bytes() == body
    del files[name]                                                     # 404
    assert cli_main(["models", "fetch", "--force", "tiny"]) == 1
    assert "HTTP Error 404" in capsys.readouterr().err
    assert sorted(p.name for p in models_root.iterdir()) == ["tiny"]
    assert (models_root / "tiny" / name).read_bytes() == body


def test_fetch_from_the_hub_uses_allow_patterns_and_checks_the_files(models_root, monkeypatch, capsys):
    calls = []

    def fake_snapshot(spec, dest):
        calls.append((spec.repo, spec.allow_patterns, os.environ["HF_HUB_OFFLINE"]))
        (dest / "config.json").write_text("{}")
        (dest / "model.safetensors").write_bytes(b"\0" * 64)
        (dest / ".cache" / "huggingface").mkdir(parents=True)          # local_dir bookkeeping: dropped

    monkeypatch.setattr(model_fetch, "_hf_snapshot", fake_snapshot)
    spec = ModelSpec(repo="someone/tiny-mt", files=("config.json", "model.safetensors", "tokenizer.json"),
                     licence="CC-BY-NC-4.0", stage="translation", allow_patterns=("*.json", "*.safetensors"))
    monkeypatch.setitem(MODELS, "tiny-mt", spec)
    assert cli_main(["models", "fetch", "tiny-mt"]) == 1                # tokenizer.json never arrived
    assert "the download lacks tokenizer.json" in capsys.readouterr().err
    assert not (models_root / "tiny-mt").exists() and list(models_root.iterdir()) == []

    monkeypatch.setitem(MODELS, "tiny-mt", dataclasses.replace(spec, files=("config.json", "model.safetensors")))
    assert cli_main(["models", "fetch", "tiny-mt"]) == 0
    assert calls[-1] == ("someone/tiny-mt", ("*.json", "*.safetensors"), "1")
    assert not (models_root / "tiny-mt" / ".cache").exists()
    assert model_dir.require("tiny-mt") == (models_root / "tiny-mt").resolve()


def test_hub_downloads_run_online_in_the_fetch_process(monkeypatch, tmp_path):
    """The real downloader flips the offline switch that model_dir set, before huggingface_hub runs."""
    import huggingface_hub
    seen = {}

    def fake_snapshot_download(**kw):
        import huggingface_hub.constants as c
        seen.update(kw, offline_env=os.environ["HF_HUB_OFFLINE"], offline_const=c.HF_HUB_OFFLINE)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    import huggingface_hub.constants as c
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    model_fetch._hf_snapshot(MODELS["nllb-200-distilled-600M"], tmp_path)
    assert seen["repo_id"] == "facebook/nllb-200-distilled-600M" and seen["local_dir"] == str(tmp_path)
    assert seen["offline_env"] == "0" and seen["offline_const"] is False
    model_dir.go_offline()
    assert c.HF_HUB_OFFLINE is True and os.environ["HF_HUB_OFFLINE"] == "1"


def test_fetch_rejects_unknown_models(models_root, capsys):
    assert cli_main(["models", "fetch", "no-such-model"]) == 1
    assert "unknown model(s) ['no-such-model']" in capsys.readouterr().err

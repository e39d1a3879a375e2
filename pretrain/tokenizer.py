"""`ladder tokenizer`: train a byte-level BPE tokenizer on the corpus, with a chat template.

Digits are split one per token (arithmetic is learnt digit by digit, and a BPE merge like "408"
would hide the digits from a small model). The chat template marks assistant turns with
`{% generation %}` so TRL can compute the loss on assistant tokens only.
"""

from __future__ import annotations

from dataclasses import dataclass

from ladder.config import load_config, option, to_dict
from ladder.errors import LadderError
from ladder.manifest import atomic_dir, write_manifest
from ladder.models import CHAT_TEMPLATE, EOS, FORMAT_TOKENS, PAD, ROLE_TOKENS

@dataclass
class TokenizerConfig:
    data: str = option("runs/tiny/data", "corpus: built-in data dir, a .jsonl/.parquet file with `text`, or hub id")
    output_dir: str = option("runs/tiny/tokenizer", "where the tokenizer (with ladder's chat template) is written")
    vocab_size: int = option(512, "tokens in the vocabulary, bytes and special tokens included")
    min_frequency: int = option(2, "a merge must occur at least this often")
    max_texts: int | None = option(50000, "enough to learn merges; keeps `ladder tokenizer` to seconds")

    def __post_init__(self):
        if self.vocab_size < 300:
            raise LadderError(f"vocab_size must be at least 300 (256 bytes + specials), got {self.vocab_size}")


def train_tokenizer(texts, vocab_size: int = 512, min_frequency: int = 2):
    """A `PreTrainedTokenizerFast` trained on an iterable of strings."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        # one digit per piece, keeping a leading space with it (" 408" -> " 4", "0", "8")
        pre_tokenizers.Split(Regex(r" ?[0-9]"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS, PAD, *ROLE_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD,
                                   additional_special_tokens=ROLE_TOKENS)
    fast.add_tokens(FORMAT_TOKENS)
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = 2048
    return fast


def main(argv=None) -> int:
    from ladder.data.loaders import load_split

    cfg = load_config(TokenizerConfig, argv)
    ds = load_split(cfg.data, "corpus", "train", limit=cfg.max_texts)
    tok = train_tokenizer(iter(ds["text"]), cfg.vocab_size, cfg.min_frequency)
    sample = ds[0]["text"][:80]
    with atomic_dir(cfg.output_dir) as tmp:
        tok.save_pretrained(tmp)
        write_manifest(tmp, stage="tokenizer", config=to_dict(cfg), parent=cfg.data,
                       metrics={"vocab_size": len(tok), "chars_per_token":
                                round(len(sample) / max(1, len(tok(sample)["input_ids"])), 2)})
    print(f"tokenizer: {len(tok)} tokens -> {cfg.output_dir}")
    return 0


if __name__ == "__main__":
    from ladder.runtime import stage_entry

    stage_entry(main)

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ladder import sft
from ladder.errors import LadderError
from ladder.eval import evaluate_model, load_rows
from ladder.manifest import read_manifest


def test_sft_teaches_the_answer_format_and_lowers_heldout_loss(tiny_run, tiny_sft):
    rows = load_rows(str(tiny_run / "data"), limit=32)
    tok = AutoTokenizer.from_pretrained(tiny_run / "base")
    base = evaluate_model(AutoModelForCausalLM.from_pretrained(tiny_run / "base"), tok, rows, chat=True)
    m = read_manifest(tiny_sft)
    print(f"format rate: base {base['format_rate']:.2f} -> sft {m['metrics']['format_rate']:.2f}")
    assert base["format_rate"] <= 0.1
    assert m["metrics"]["format_rate"] >= 0.6
    assert m["stage"] == "sft" and m["parent"] == str(tiny_run / "base")
    # held-out loss of the SFT model on held-out chats is below the base model's
    chats = [json.loads(line) for line in (tiny_run / "data" / "sft_test.jsonl").open()][:32]

    def loss(path):
        model = AutoModelForCausalLM.from_pretrained(path)
        text = "".join(tok.apply_chat_template(c["messages"], tokenize=False) for c in chats)
        ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"][:, :512]
        with torch.no_grad():
            return model(input_ids=ids, labels=ids).loss.item()

    assert loss(tiny_sft) < 0.8 * loss(tiny_run / "base")


def test_only_assistant_tokens_carry_loss(tiny_run):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling  # noqa: F401  (TRL's own collator)

    tok = AutoTokenizer.from_pretrained(tiny_run / "tokenizer")
    msgs = [{"role": "user", "content": "What is 2 + 3?"},
            {"role": "assistant", "content": "<think>2 + 3 = 5</think><answer>5</answer>"}]
    enc = tok.apply_chat_template(msgs, return_dict=True, return_assistant_tokens_mask=True)
    labels = [i if m else -100 for i, m in zip(enc["input_ids"], enc["assistant_masks"])]
    user_part = tok.apply_chat_template(msgs[:1], tokenize=False, add_generation_prompt=True)
    n_user = len(tok(user_part, add_special_tokens=False)["input_ids"])
    assert all(x == -100 for x in labels[:n_user])
    assert tok.decode([x for x in labels if x != -100]) == msgs[1]["content"] + tok.eos_token


def test_lora_trains_only_adapters_and_merge_matches(tiny_run, tmp_path):
    """Only adapter weights move, and the merged checkpoint gives the adapter model's outputs."""
    from trl import SFTTrainer

    out, captured, x = tmp_path / "lora", {}, torch.tensor([[5, 6, 7, 8, 9]])
    before = AutoModelForCausalLM.from_pretrained(tiny_run / "base").state_dict()
    orig_train = SFTTrainer.train

    def train_and_check(self, *a, **kw):
        frozen = {n: p.detach().clone() for n, p in self.model.named_parameters() if "lora_" not in n}
        result = orig_train(self, *a, **kw)
        trainable = [n for n, p in self.model.named_parameters() if p.requires_grad]
        captured["trainable"] = trainable
        captured["frozen_same"] = all(torch.equal(p, frozen[n]) for n, p in self.model.named_parameters()
                                      if n in frozen)
        self.model.eval()  # no LoRA dropout when comparing outputs
        with torch.no_grad():
            captured["adapter_logits"] = self.model(input_ids=x).logits
        return result

    SFTTrainer.train = train_and_check
    try:
        assert sft.main(["--model", str(tiny_run / "base"), "--data", str(tiny_run / "data"), "--output_dir",
                         str(out), "--use_lora", "true", "--lora_r", "4", "--max_train_samples", "64",
                         "--eval_samples", "0", "--report_to", "none", "--save_strategy", "no",
                         "--num_train_epochs", "1", "--learning_rate", "1e-2"]) == 0
    finally:
        SFTTrainer.train = orig_train
    assert captured["trainable"] and all("lora_" in n for n in captured["trainable"])
    assert captured["frozen_same"]
    merged = AutoModelForCausalLM.from_pretrained(out)
    with torch.no_grad():
        merged_logits = merged(input_ids=x).logits
    torch.testing.assert_close(merged_logits, captured["adapter_logits"], atol=1e-4, rtol=1e-4)
    after = merged.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the adapter really changed the model


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize("rows, msg", [
    ([{"messages": []}], "row 0: empty messages"),
    ([{"messages": [{"role": "human", "content": "hi"}, {"role": "assistant", "content": "x"}]}], "row 0: role 'human'"),
    ([{"messages": [{"role": "user", "content": "hi"}]}], "row 0: no assistant turn"),
    ([{"question": "q", "reply": "a"}], "unrecognised chat data layout"),
])
def test_bad_chat_data_fails_with_one_line_naming_the_row(tiny_run, tmp_path, rows, msg):
    f = _write(tmp_path / "chat.jsonl", rows)
    with pytest.raises(LadderError) as e:
        sft.main(["--model", str(tiny_run / "base"), "--data", f, "--output_dir", str(tmp_path / "o"),
                  "--report_to", "none"])
    assert msg in str(e.value) and f in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "o" / "ladder.json").exists()


def test_prompt_longer_than_max_length_is_refused(tiny_run, tmp_path):
    f = _write(tmp_path / "long.jsonl", [{"messages": [{"role": "user", "content": "1 " * 400},
                                                       {"role": "assistant", "content": "ok"}]}])
    with pytest.raises(LadderError, match="row 0: prompt is .* tokens, not shorter than max_length=128"):
        sft.main(["--model", str(tiny_run / "base"), "--data", f, "--max_length", "128",
                  "--output_dir", str(tmp_path / "o"), "--report_to", "none"])


def test_qlora_on_cpu_is_a_clear_error(tiny_run, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("QLoRA can run here")
    with pytest.raises(LadderError, match="QLoRA\\) needs a CUDA GPU"):
        sft.main(["--model", str(tiny_run / "base"), "--use_lora", "true", "--load_in_4bit", "true",
                  "--output_dir", str(tmp_path / "o")])

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ladder import sft
from ladder.errors import LadderError
from ladder.evaluation import evaluate_model, load_rows
from ladder.models import plain_model
from ladder.rewards import math_accuracy
from ladder.generation import generate
from ladder.manifest import read_manifest


def test_sft_teaches_the_format_is_sometimes_right_and_lowers_heldout_loss(tiny_run, tiny_sft):
    rows = load_rows(str(tiny_run / "data"), limit=32)
    tok = AutoTokenizer.from_pretrained(tiny_run / "base")
    base = evaluate_model(AutoModelForCausalLM.from_pretrained(tiny_run / "base"), tok, rows, chat=True)
    m = read_manifest(tiny_sft)
    print(f"format rate: base {base['format_rate']:.2f} -> sft {m['metrics']['format_rate']:.2f}")
    assert base["format_rate"] <= 0.1
    assert m["metrics"]["format_rate"] >= 0.6
    assert m["stage"] == "sft" and m["parent"] == str(tiny_run / "base")
    # sampled as RL samples it (the tiny GRPO recipe's temperature), the SFT model is sometimes right:
    # successes for PPO/GRPO to reinforce
    chats = [json.loads(line) for line in (tiny_run / "data" / "sft_test.jsonl").open()]
    chats = [c for c in chats if c["answer"]]
    model, prompts = AutoModelForCausalLM.from_pretrained(tiny_sft), [c["messages"][:1] for c in chats]
    # ~1% of this small fixture model's samples are right: 16 x 58 samples make ~10 expected, so that
    # "sometimes" does not hang on the luck of one random stream (4 x 58 at T=1 once came out 0)
    seeds = 16
    texts = [t for seed in range(seeds) for t in generate(model, tok, prompts, temperature=0.7, seed=seed)]
    right = sum(s or 0.0 for s in math_accuracy(texts, answer=[c["answer"] for c in chats] * seeds))
    formatted = sum("<answer>" in t for t in texts)
    print(f"sampled: {formatted / len(texts):.2f} formatted, {int(right)}/{len(texts)} right; "
          f"greedy accuracy {m['metrics']['accuracy']:.3f}")
    assert right > 0 and formatted / len(texts) >= 0.5
    # held-out loss on the answers (the tokens SFT trains) falls well below the base model's
    held_out = [c["messages"] for c in chats[:32]]

    def answer_loss(path):
        model, losses = AutoModelForCausalLM.from_pretrained(path), []
        for msgs in held_out:
            enc = tok.apply_chat_template(msgs, return_dict=True, return_assistant_tokens_mask=True)
            ids = torch.tensor([enc["input_ids"]])
            labels = torch.where(torch.tensor([enc["assistant_masks"]]) == 1, ids, -100)
            with torch.no_grad():
                losses.append(model(input_ids=ids, labels=labels).loss.item())
        return sum(losses) / len(losses)

    base_loss, sft_loss = answer_loss(tiny_run / "base"), answer_loss(tiny_sft)
    print(f"held-out answer loss: base {base_loss:.3f} -> sft {sft_loss:.3f}")
    assert sft_loss < 0.5 * base_loss


CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.mark.parametrize("template", ["ladder", "chatml without generation markers"])
def test_only_assistant_tokens_carry_loss(tiny_run, tmp_path, template):
    """Through TRL's own tokenisation and collator: the user's tokens are -100, the answer's are not."""
    from datasets import Dataset
    from trl import SFTTrainer

    tok = AutoTokenizer.from_pretrained(tiny_run / "base")
    if template != "ladder":
        tok.chat_template = CHATML
    msgs = [{"role": "user", "content": "What is 2 + 3?"},
            {"role": "assistant", "content": "<think>2 + 3 = 5</think><answer>5</answer>"}]
    cfg = sft.SFTStageConfig(output_dir=str(tmp_path), report_to="none")
    train_ds, _ = sft.loss_on_answers(cfg, tok, Dataset.from_list([{"messages": msgs}]))
    assert cfg.assistant_only_loss == (template == "ladder")
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_run / "base"), args=cfg,
                         train_dataset=train_ds, processing_class=tok)
    batch = trainer.data_collator([trainer.train_dataset[0]])
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    n_prompt = len(tok(tok.apply_chat_template(msgs[:1], tokenize=False, add_generation_prompt=True),
                       add_special_tokens=False)["input_ids"])
    assert all(x == -100 for x in labels[:n_prompt])
    trained = [i for i, x in zip(ids, labels) if x != -100]
    assert trained == ids[n_prompt:] and tok.decode(trained).startswith(msgs[1]["content"])


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


def test_qlora_style_merge_into_a_full_precision_copy_matches_the_adapter(tiny_run, tmp_path):
    """QLoRA saves by putting the adapter into a full-precision copy of the parent (merging into
    4-bit weights would re-quantise them). The same path, minus the quantisation, runs on CPU."""
    from peft import get_peft_model

    from ladder.lora import lora_config

    cfg = sft.SFTStageConfig(model=str(tiny_run / "base"), output_dir=str(tmp_path), use_lora=True, lora_r=4,
                             report_to="none")
    tok = AutoTokenizer.from_pretrained(tiny_run / "base")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_run / "base"), lora_config(cfg))
    torch.manual_seed(0)
    for n, p in model.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.05)  # a trained-looking adapter (B starts at zero)
    model.eval()
    x = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        expected = model(input_ids=x).logits
    cfg.load_in_4bit = True  # take the QLoRA branch; the copy itself is loaded unquantised
    merged = plain_model(model, cfg, tok, resized=False)
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=x).logits, expected, atol=1e-4, rtol=1e-4)


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize("rows, msg", [
    ([{"messages": []}], "line 1: empty messages"),
    ([{"messages": [{"role": "human", "content": "hi"}, {"role": "assistant", "content": "x"}]}], "line 1: role 'human'"),
    ([{"messages": [{"role": "user", "content": "hi"}]}], "line 1: no assistant turn"),
    ([{"question": "q", "reply": "a"}], "unrecognised chat data layout"),
    ([{"conversations": [{"from": "bot", "value": "hi"}]}], "line 1: role 'bot'"),
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
    with pytest.raises(LadderError, match="line 1: prompt is .* tokens, not shorter than max_length=128"):
        sft.main(["--model", str(tiny_run / "base"), "--data", f, "--max_length", "128",
                  "--output_dir", str(tmp_path / "o"), "--report_to", "none"])


def test_qlora_on_cpu_is_a_clear_error(tiny_run, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("QLoRA can run here")
    with pytest.raises(LadderError, match="QLoRA\\) needs a CUDA GPU"):
        sft.main(["--model", str(tiny_run / "base"), "--use_lora", "true", "--load_in_4bit", "true",
                  "--output_dir", str(tmp_path / "o")])


def test_unknown_recipe_key_is_a_one_line_error_naming_it(tiny_run, tmp_path):
    recipe = tmp_path / "sft.yaml"
    recipe.write_text(f"model: {tiny_run / 'base'}\nlearning_rat: 1.0e-3\n")
    with pytest.raises(LadderError) as e:
        sft.main(["--config", str(recipe), "--output_dir", str(tmp_path / "o")])
    assert "learning_rat" in str(e.value) and "\n" not in str(e.value)


def test_user_files_train_with_separate_held_out_file_and_any_layout(tiny_run, tmp_path):
    """A single file has no test split (no 'held-out' loss on training rows); test_data gives one."""
    rows = [json.loads(line) for line in (tiny_run / "data" / "sft_train.jsonl").open()][:32]
    alpaca = _write(tmp_path / "alpaca.jsonl", [{"instruction": r["messages"][0]["content"], "input": "",
                                                 "output": r["messages"][1]["content"]} for r in rows])
    args = ["--model", str(tiny_run / "base"), "--data", alpaca, "--max_steps", "2", "--report_to", "none",
            "--save_strategy", "no", "--per_device_train_batch_size", "8"]
    assert sft.main([*args, "--output_dir", str(tmp_path / "a")]) == 0
    assert "eval_loss" not in read_manifest(tmp_path / "a")["metrics"]
    assert sft.main([*args, "--output_dir", str(tmp_path / "b"), "--test_data", str(tiny_run / "data"),
                     "--eval_samples", "4"]) == 0
    m = read_manifest(tmp_path / "b")["metrics"]
    assert "eval_loss" in m and m["n"] == 4


def test_resume_continues_from_the_last_trainer_checkpoint(tiny_run, tmp_path, monkeypatch):
    from trl import SFTTrainer

    args = ["--model", str(tiny_run / "base"), "--data", str(tiny_run / "data"), "--output_dir", str(tmp_path / "o"),
            "--max_train_samples", "64", "--per_device_train_batch_size", "8", "--save_steps", "4",
            "--eval_samples", "0", "--test_split", "null", "--report_to", "none"]
    assert sft.main([*args, "--max_steps", "4"]) == 0
    steps, orig = [], SFTTrainer.training_step
    monkeypatch.setattr(SFTTrainer, "training_step", lambda self, *a, **kw: steps.append(1) or orig(self, *a, **kw))
    assert sft.main([*args, "--max_steps", "6", "--resume", "true"]) == 0
    assert len(steps) == 2 and read_manifest(tmp_path / "o")["metrics"]["steps"] == 6


def test_trls_lm_head_projects_only_the_answers_tokens_in_training_and_evaluation(tiny_run, tmp_path, lm_head_calls):
    """SFT trains and evaluates inside ladder.padding.scored_positions_only: every call of TRL's fused LM head
    takes its compact path (the labelled positions alone, tests/test_padding.py) on a CPU too."""
    import trl.trainer.utils as trl_utils

    assert sft.main(["--model", str(tiny_run / "base"), "--data", str(tiny_run / "data"), "--output_dir",
                     str(tmp_path / "o"), "--max_train_samples", "16", "--per_device_train_batch_size", "8",
                     "--max_steps", "2", "--eval_samples", "0", "--report_to", "none", "--save_strategy", "no"]) == 0
    assert "eval_loss" in read_manifest(tmp_path / "o")["metrics"]
    assert len(lm_head_calls) >= 3 and all(compact for _, compact in lm_head_calls)  # 2 steps, held-out loss
    assert not trl_utils._use_triton(torch.device("cpu"))  # and TRL's own choice is back afterwards

"""`ladder dpo`: TRL's DPOTrainer on the preference pairs the reward model learns from, from the SFT model."""

import json

import pytest

from ladder import dpo
from ladder.manifest import read_manifest


@pytest.fixture(scope="module")
def tiny_dpo(tiny_sft, tmp_path_factory):
    """4 steps of plain DPO (the sigmoid loss alone: the margin it moves is the one its loss is about) from
    tiny_sft on 64 of tiny_data's pairs, scored on its 64 held-out pairs and 16 held-out problems (the
    hidden human as judge). Seeded. Measured on the project's CPU: margin -2.4 -> +1.1 nats, pref accuracy
    0.42 -> 0.61, implicit reward accuracy 0.64; the bounds below leave room for other kernels."""
    out = tmp_path_factory.mktemp("dpo") / "dpo"
    assert dpo.main(["--model", str(tiny_sft), "--data", str(tiny_sft.parent / "data"), "--output_dir", str(out),
                     "--max_train_samples", "64", "--per_device_train_batch_size", "16", "--max_steps", "4",
                     "--learning_rate", "1e-3", "--beta", "0.1", "--loss_type", "[sigmoid]", "--eval_pairs", "64",
                     "--eval_samples", "16",
                     "--max_new_tokens", "48", "--judge", "[ladder.data.human:human_style]", "--seed", "0",
                     "--report_to", "none", "--save_strategy", "no"]) == 0
    return out


def test_dpo_raises_the_chosen_over_rejected_margin_on_heldout_pairs(tiny_dpo, tiny_sft):
    m = read_manifest(tiny_dpo)
    assert m["stage"] == "dpo" and m["parent"] == str(tiny_sft)
    x = m["metrics"]
    print({k: round(v, 3) for k, v in x.items() if isinstance(v, float)})
    assert x["steps"] == 4 and x["before/pairs"] == x["after/pairs"] == 64
    # before training the policy is its reference: DPO moves the margin, not the reference
    assert x["after/logp_margin"] > x["before/logp_margin"] + 1.0
    assert x["after/pref_accuracy"] >= x["before/pref_accuracy"]
    assert x["after/reward_margin"] == pytest.approx(0.1 * (x["after/logp_margin"] - x["before/logp_margin"]))
    assert x["after/reward_accuracy"] > 0.55
    # the greedy held-out answers are recorded before and after, judged by the hidden human
    for when in ("before", "after"):
        assert x[f"{when}/n"] == 16 and 0 <= x[f"{when}/accuracy"] <= 1 and f"{when}/judge/human_style" in x


def test_saved_model_is_the_one_measured(tiny_dpo):
    """The checkpoint is a plain causal LM (no adapter left), and scoring the held-out pairs again from
    disk, tokenised here (prompt with the generation prompt, then the answer), gives the recorded margin:
    what after/ measured is what was saved, on the answer's tokens as TRL tokenises them."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    assert not (tiny_dpo / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(tiny_dpo)
    tokenizer = AutoTokenizer.from_pretrained(tiny_dpo)

    def ids(messages, **kw):
        out = tokenizer.apply_chat_template(messages, **kw)
        return list(out["input_ids"] if hasattr(out, "keys") else out)

    data = read_manifest(tiny_dpo)["config"]["data"]
    encoded = []
    for line in open(f"{data}/prefs_test.jsonl"):
        r = json.loads(line)
        prompt = ids(r["prompt"], add_generation_prompt=True)
        chosen, rejected = ids(r["prompt"] + r["chosen"]), ids(r["prompt"] + r["rejected"])
        assert chosen[:len(prompt)] == prompt and rejected[:len(prompt)] == prompt
        encoded.append({"prompt_ids": prompt, "chosen_ids": chosen[len(prompt):],
                        "rejected_ids": rejected[len(prompt):]})
    chosen, rejected = dpo.answer_logps(model, encoded[:64], DataCollatorForPreference(tokenizer.pad_token_id), 16)
    margin = sum(c - r for c, r in zip(chosen, rejected)) / len(chosen)
    assert margin == pytest.approx(read_manifest(tiny_dpo)["metrics"]["after/logp_margin"], abs=1e-4)


def test_dpo_help_lists_every_dpo_config_option(capsys):
    import dataclasses

    from ladder.cli import main

    assert main(["--help"]) == 0 and "dpo" in capsys.readouterr().out
    assert main(["dpo", "--help"]) == 0
    out = capsys.readouterr().out
    options = [ln.split()[0][2:] for ln in out.splitlines() if ln.startswith("  --")]
    assert sorted(options) == sorted(f.name for f in dataclasses.fields(dpo.DPOStageConfig)
                                     if f.init and not f.name.startswith("_"))
    lines = {ln.split()[0][2:]: ln for ln in out.splitlines() if ln.startswith("  --")}
    assert "Parameter controlling the deviation from the reference model" in lines["beta"]
    assert "loss_type" in lines and "precompute_ref_log_probs" in lines and "eval_pairs" in lines


def test_trls_lm_head_projects_only_the_answers_tokens(tiny_sft, tmp_path, lm_head_calls):
    """DPO trains inside ladder.padding.scored_positions_only: every call of TRL's fused LM head (policy and
    reference) takes its compact path, the labelled positions alone, on a CPU too."""
    import torch
    import trl.trainer.utils as trl_utils

    assert dpo.main(["--model", str(tiny_sft), "--data", str(tiny_sft.parent / "data"), "--output_dir",
                     str(tmp_path / "o"), "--max_train_samples", "16", "--per_device_train_batch_size", "8",
                     "--max_steps", "1", "--eval_pairs", "8", "--eval_samples", "0", "--report_to", "none",
                     "--save_strategy", "no"]) == 0
    # the policy's and the reference's log-probs of one step
    assert len(lm_head_calls) >= 2 and all(compact for _, compact in lm_head_calls)
    assert not trl_utils._use_triton(torch.device("cpu"))

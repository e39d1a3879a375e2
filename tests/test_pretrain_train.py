import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ladder import checkpoint
from ladder.errors import LadderError
from ladder.manifest import read_manifest
from ladder.pretrain import train
from ladder.pretrain.model import build_model


def _heldout_loss(model, tokenizer, texts):
    enc = tokenizer("\n\n".join(texts) + tokenizer.eos_token, return_tensors="pt")
    with torch.no_grad():
        return model(input_ids=enc["input_ids"][:, :512], labels=enc["input_ids"][:, :512]).loss.item()


def test_pretraining_lowers_heldout_loss_by_a_clear_margin(tiny_run):
    tok = AutoTokenizer.from_pretrained(tiny_run / "tokenizer")
    texts = [json.loads(line)["text"] for line in (tiny_run / "data" / "corpus_test.jsonl").open()][:20]
    before = _heldout_loss(build_model("tiny", tok, seed=0), tok, texts)
    after = _heldout_loss(AutoModelForCausalLM.from_pretrained(tiny_run / "base"), tok, texts)
    assert after < 0.6 * before, (before, after)
    m = read_manifest(tiny_run / "base")
    assert m["stage"] == "pretrain" and m["metrics"]["steps"] == 150 and m["metrics"]["eval_loss"] < before


def test_checkpoint_loads_in_transformers_and_generates(tiny_base):
    tok = AutoTokenizer.from_pretrained(tiny_base)
    model = AutoModelForCausalLM.from_pretrained(tiny_base)
    enc = tok("Q: What is 12 + 5?\nA:", return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=12, do_sample=False)
    text = tok.decode(out[0, enc["input_ids"].shape[1]:])
    assert out.shape[1] > enc["input_ids"].shape[1] and text.strip()
    assert tok.chat_template and "generation" in tok.chat_template


def _args(tiny_run, out, steps):
    return ["--data", str(tiny_run / "data"), "--tokenizer", str(tiny_run / "tokenizer"), "--output_dir", str(out),
            "--model", "tiny", "--max_steps", str(steps), "--batch_size", "8", "--warmup_steps", "5",
            "--eval_every", "1000", "--save_every", "10", "--report_to", "none", "--logging_steps", "10"]


@pytest.mark.slow
def test_resume_after_kill_reaches_the_same_final_model(tiny_run, tmp_path):
    steps = 120
    straight = tmp_path / "straight"
    assert train.main(_args(tiny_run, straight, steps)) == 0

    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ladder.pretrain", *_args(tiny_run, killed, steps)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list((killed / "checkpoints").glob("step-*")) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = checkpoint.saved_states(killed)
    assert saved and not (killed / "ladder.json").exists(), "the kill must land mid-run"
    assert all((c / "progress.json").is_file() for c in saved)  # every visible checkpoint is complete

    assert train.main([*_args(tiny_run, killed, steps), "--resume"]) == 0
    assert read_manifest(killed)["metrics"]["steps"] == steps
    a = AutoModelForCausalLM.from_pretrained(straight).state_dict()
    b = AutoModelForCausalLM.from_pretrained(killed).state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)


def test_bad_inputs_fail_fast_with_one_line(tiny_run, tmp_path):
    bad = tmp_path / "corpus.jsonl"
    bad.write_text(json.dumps({"content": "no text column"}) + "\n")
    cases = [
        (["--data", str(bad)], "missing column 'text'"),
        (["--data", str(tmp_path / "missing.jsonl")], "not found"),
        (["--tokenizer", str(tmp_path / "nope")], "no such folder"),
        (["--learning_rat", "1"], "did you mean 'learning_rate'"),
        (["--save_every", "0"], "save_every must be >= 1"),  # was a ZeroDivisionError at the first step
        (["--eval_every", "0"], "eval_every must be >= 1"),
    ]
    for extra, msg in cases:
        with pytest.raises(LadderError) as e:
            train.main([*_args(tiny_run, tmp_path / "out", 5), *extra])
        assert msg in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out" / "ladder.json").exists()


def test_tensorboard_logs_are_written(tiny_run, tmp_path):
    args = _args(tiny_run, tmp_path / "tb", 4)
    args[args.index("--report_to") + 1] = "tensorboard"
    args[args.index("--logging_steps") + 1] = "2"
    assert train.main(args) == 0
    assert list((tmp_path / "tb" / "logs").rglob("events.out.tfevents.*"))

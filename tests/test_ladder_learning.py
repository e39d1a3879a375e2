"""The default ladder's lessons, on a smaller RL budget: RL teaches a model to use the steps it can do,
and RLHF teaches it what the hidden human likes.

The tiny recipes (as `make ladder` runs them, ~8 CPU-minutes here) pretrain a model on worked exercises and quizzes; SFT on chat replies that
mostly answer at once leaves it answering at once (and mostly wrong) on held-out two-digit problems,
though it can work them out in steps. GRPO with a verifiable reward must find that working pays:
held-out greedy accuracy rises by a margin of about three standard errors, and the answers grow
longer (the thinking), as in the DeepSeek-R1 paper, while the answer format stays as it was. A reward
model learnt from the hidden human's preference pairs, and PPO against it, must raise the human's own
score of held-out answers (a judge PPO never sees) without losing accuracy.
"""

from __future__ import annotations

import pytest

from ladder.manifest import read_manifest

pytestmark = pytest.mark.slow
R = "recipes/tiny"


@pytest.fixture(scope="module")
def steps_sft(tmp_path_factory):
    from ladder import sft
    from ladder.data import build
    from ladder.pretrain import tokenizer, train

    root = tmp_path_factory.mktemp("steps")
    assert build.main(["--config", f"{R}/data.yaml", "--output_dir", str(root / "data"), "--test_size", "100"]) == 0
    assert tokenizer.main(["--config", f"{R}/tokenizer.yaml", "--data", str(root / "data"),
                           "--output_dir", str(root / "tokenizer")]) == 0
    assert train.main(["--config", f"{R}/pretrain.yaml", "--data", str(root / "data"), "--tokenizer",
                       str(root / "tokenizer"), "--output_dir", str(root / "base"), "--eval_every", "600",
                       "--save_every", "100000", "--report_to", "none"]) == 0
    assert sft.main(["--config", f"{R}/sft.yaml", "--model", str(root / "base"), "--data", str(root / "data"),
                     "--output_dir", str(root / "sft"), "--eval_samples", "0",
                     "--report_to", "none", "--save_strategy", "no"]) == 0
    return root


def test_grpo_raises_heldout_accuracy_by_working_in_steps(steps_sft, tmp_path):
    from ladder import grpo

    out = tmp_path / "grpo"
    assert grpo.main(["--config", f"{R}/grpo.yaml", "--model", str(steps_sft / "sft"), "--data",
                      str(steps_sft / "data"), "--output_dir", str(out), "--max_steps", "20", "--eval_samples", "100",
                      "--heldout_every", "0", "--report_to", "none", "--save_strategy", "no"]) == 0
    m = read_manifest(out)["metrics"]
    print({k: round(v, 3) for k, v in m.items() if isinstance(v, float)})
    # 100 held-out problems: one standard error is at most 5 points
    assert m["after/accuracy"] >= m["before/accuracy"] + 0.15
    assert m["after/think_length"] > 1.3 * m["before/think_length"]  # it writes the steps out
    assert m["after/format_rate"] >= m["before/format_rate"] - 0.02  # gains are not from the answer's form
    assert m["reward_last"] > m["reward_first"]


def test_rlhf_raises_the_hidden_humans_score_without_losing_accuracy(steps_sft, tmp_path):
    from ladder import ppo, rm

    assert rm.main(["--config", f"{R}/rm.yaml", "--model", str(steps_sft / "sft"), "--data", str(steps_sft / "data"),
                    "--output_dir", str(tmp_path / "rm"), "--report_to", "none", "--save_strategy", "no"]) == 0
    assert read_manifest(tmp_path / "rm")["metrics"]["pairwise_accuracy"] >= 0.7  # it learnt the human's pairs
    out = tmp_path / "ppo"
    assert ppo.main(["--config", f"{R}/ppo.yaml", "--model", str(steps_sft / "sft"), "--reward_model",
                     str(tmp_path / "rm"), "--data", str(steps_sft / "data"), "--output_dir", str(out),
                     "--heldout_every", "0", "--eval_generations", "0", "--report_to", "none",
                     "--save_steps", "1000"]) == 0
    m = read_manifest(out)["metrics"]
    print({k: round(v, 3) for k, v in m.items() if isinstance(v, float)})
    # greedy answers to 100 held-out prompts; the human's tone score is in [-1, 1]
    assert m["after/judge/human_style"] >= m["before/judge/human_style"] + 0.3
    assert m["after/rm_score"] > m["before/rm_score"]
    assert m["after/accuracy"] >= m["before/accuracy"] - 0.05  # one standard error at most
    assert m["after/format_rate"] >= m["before/format_rate"] - 0.02

"""Every mistake a new user makes with files and recipes is one line naming the file, row or field,
before any model loads, and leaves a finished checkpoint in the output directory as it was.

Each test runs the stage as the user would (`ladder <stage> --config recipe.yaml`, through ladder.cli)
with the model loaders replaced by a trap: reaching one fails the test, so every error here is
raised before any model is loaded.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml

from ladder import cli


class ModelLoaded(Exception):
    pass


@pytest.fixture(autouse=True)
def no_model_loads(monkeypatch):
    """Loading any model is a failure here: the mistake must be caught before."""
    import transformers

    def trap(*args, **kwargs):
        raise ModelLoaded("a model was loaded before the bad input was noticed")

    for name in ("AutoModelForCausalLM", "AutoModelForSequenceClassification"):
        monkeypatch.setattr(getattr(transformers, name), "from_pretrained", trap)


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


CHAT = {"messages": [{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "5"}]}
RL = {"prompt": [{"role": "user", "content": "What is 2 + 3?"}], "answer": "5"}


def run(stage, tmp_path, capsys, **recipe) -> str:
    """`ladder <stage> --config <recipe>`: returns the error line (exit code 2, exactly one line)."""
    path = tmp_path / f"{stage}.yaml"
    path.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "out"), "report_to": "none", **recipe}))
    capsys.readouterr()
    rc = cli.main([stage, "--config", str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err and err[-1].startswith("error: "), err[-5:]
    return err[-1]


def sft(tiny_run, tmp_path, capsys, **recipe):
    return run("sft", tmp_path, capsys, **{"model": str(tiny_run / "base"), **recipe})


def rm(tiny_run, tmp_path, capsys, **recipe):
    return run("rm", tmp_path, capsys, **{"model": str(tiny_run / "base"), "test_split": None, **recipe})


def dpo(tiny_run, tmp_path, capsys, **recipe):
    return run("dpo", tmp_path, capsys, **{"model": str(tiny_run / "base"), "test_split": None, **recipe})


def grpo(tiny_run, tmp_path, capsys, **recipe):
    if "data" not in recipe:
        recipe["data"] = str(_jsonl(tmp_path / "rl.jsonl", [RL] * 8))
    return run("grpo", tmp_path, capsys, **{"model": str(tiny_run / "base"), "per_device_train_batch_size": 8,
                                            "num_generations": 4, "eval_samples": 0, **recipe})


# ------------------------------------------------------------------------------- files

def test_missing_data_file(tiny_run, tmp_path, capsys):
    line = sft(tiny_run, tmp_path, capsys, data=str(tmp_path / "chats.jsonl"))
    assert f"{tmp_path / 'chats.jsonl'}: data file not found" in line


def test_missing_data_folder(tiny_run, tmp_path, capsys):
    line = sft(tiny_run, tmp_path, capsys, data=str(tmp_path / "my" / "data"))
    assert f"{tmp_path / 'my' / 'data'}: no such file or directory" in line


def test_empty_data_file(tiny_run, tmp_path, capsys):
    (tmp_path / "chats.jsonl").write_text("")
    assert f"{tmp_path / 'chats.jsonl'}: empty file" in sft(tiny_run, tmp_path, capsys, data=str(tmp_path / "chats.jsonl"))
    (tmp_path / "blank.jsonl").write_text("\n\n")
    assert f"{tmp_path / 'blank.jsonl'}: empty file" in sft(tiny_run, tmp_path, capsys, data=str(tmp_path / "blank.jsonl"))


def test_malformed_jsonl_names_the_line(tiny_run, tmp_path, capsys, caplog):
    """One line, ladder's: not also datasets' own logged 'Failed to load JSON ... in row 2' before it."""
    f = tmp_path / "chats.jsonl"
    f.write_text(json.dumps(CHAT) + "\n" + json.dumps(CHAT) + "\n" + '{"messages": [oops\n')
    line = sft(tiny_run, tmp_path, capsys, data=str(f))
    assert f"{f}: line 3: not valid JSON" in line
    assert not [r.getMessage() for r in caplog.records if "Failed to load JSON" in r.getMessage()]


def test_unsupported_file_type(tiny_run, tmp_path, capsys):
    f = tmp_path / "chats.txt"
    f.write_text("hello\n")
    assert f"{f}: unsupported data file type '.txt'" in sft(tiny_run, tmp_path, capsys, data=str(f))


# ------------------------------------------------------------------------------- shapes

def test_messages_not_a_list_names_the_row(tiny_run, tmp_path, capsys):
    f = _jsonl(tmp_path / "chats.jsonl", [CHAT, {"messages": "What is 2 + 3?"}])
    line = sft(tiny_run, tmp_path, capsys, data=str(f))
    assert f"{f}: line 2: messages must be a list of {{role, content}}, got str" in line


def test_messages_of_plain_strings_names_the_row(tiny_run, tmp_path, capsys):
    f = _jsonl(tmp_path / "chats.jsonl", [{"messages": ["What is 2 + 3?", "5"]}])
    line = sft(tiny_run, tmp_path, capsys, data=str(f))
    assert f"{f}: line 1: each message must be a {{role, content}} mapping, got str" in line


def test_chat_data_without_a_known_layout(tiny_run, tmp_path, capsys):
    f = _jsonl(tmp_path / "chats.jsonl", [{"question": "q", "reply": "a"}])
    line = sft(tiny_run, tmp_path, capsys, data=str(f))
    assert str(f) in line and "unrecognised chat data layout (columns: question, reply)" in line


@pytest.mark.parametrize("missing", ["chosen", "rejected"])
def test_preference_pairs_without_chosen_or_rejected(tiny_run, tmp_path, capsys, missing):
    row = {"prompt": "What is 2 + 3?", "chosen": "5", "rejected": "6"}
    del row[missing]
    f = _jsonl(tmp_path / "pairs.jsonl", [row])
    line = rm(tiny_run, tmp_path, capsys, data=str(f))
    assert f"{f}: missing column '{missing}' needed for prefs data" in line


def test_preference_answer_of_the_wrong_shape_names_row_and_column(tiny_run, tmp_path, capsys):
    f = _jsonl(tmp_path / "pairs.jsonl", [{"prompt": "q", "chosen": 5, "rejected": "6"}])
    line = rm(tiny_run, tmp_path, capsys, data=str(f))
    assert f"{f}: line 1: 'chosen' must be text or a list of {{role, content}} messages, got int" in line
    answer = [{"role": "assistant", "content": "5"}]
    f = _jsonl(tmp_path / "pairs.jsonl", [{"prompt": "q", "chosen": answer, "rejected": [{"role": "assistant", "content": "6"}]},
                                          {"prompt": "q", "chosen": answer, "rejected": [{"role": "assistant"}]}])
    line = rm(tiny_run, tmp_path, capsys, data=str(f))
    assert f"{f}: line 2: 'rejected' turn 0 (assistant) has no text content" in line


def test_dpo_pairs_missing_a_column_or_identical_name_file_and_row(tiny_run, tmp_path, capsys):
    """DPO reads the pairs the reward model reads, checked the same way (ladder.data.prefs)."""
    f = _jsonl(tmp_path / "pairs.jsonl", [{"prompt": "What is 2 + 3?", "chosen": "5"}])
    assert f"{f}: missing column 'rejected' needed for prefs data" in dpo(tiny_run, tmp_path, capsys, data=str(f))
    f = _jsonl(tmp_path / "pairs.jsonl", [{"prompt": "q", "chosen": "5", "rejected": "6"},
                                          {"prompt": "q", "chosen": "5", "rejected": "5"}])
    assert f"{f}: line 2: chosen and rejected are identical" in dpo(tiny_run, tmp_path, capsys, data=str(f))
    f = _jsonl(tmp_path / "pairs.jsonl", [{"prompt": "q", "chosen": [{"role": "assistant"}], "rejected": "6"}])
    line = dpo(tiny_run, tmp_path, capsys, data=str(f))
    assert f"{f}: line 1: 'chosen' turn 0 (assistant) has no text content" in line


def test_rl_prompt_of_the_wrong_shape_names_the_row(tiny_run, tmp_path, capsys):
    f = _jsonl(tmp_path / "rl.jsonl", [RL, {"prompt": 5, "answer": "5"}])
    line = grpo(tiny_run, tmp_path, capsys, data=str(f), rewards=["format_reward"])
    assert f"{f}: line 2: prompt must be text or a list of {{role, content}} messages" in line


def test_bad_rows_are_named_by_the_line_a_jsonl_file_shows(tiny_run, tmp_path, capsys):
    """A JSON Lines file's bad row is named by its line as an editor numbers it, blank lines counted
    (datasets skips them: its row 1 here is line 3), as a line that is not JSON is named."""
    f = tmp_path / "chats.jsonl"
    human = {"messages": [{"role": "human", "content": "hi"}, {"role": "assistant", "content": "5"}]}
    f.write_text(json.dumps(CHAT) + "\n\n" + json.dumps(human) + "\n")
    line = sft(tiny_run, tmp_path, capsys, data=str(f))
    assert line == f"error: {f}: line 3: role 'human' is not one of system, user, assistant, tool (turn 0)"
    f = _jsonl(tmp_path / "rl.jsonl", [RL, RL, {"prompt": "  ", "answer": "5"}])
    assert f"{f}: line 3: empty prompt" in grpo(tiny_run, tmp_path, capsys, data=str(f), rewards=["format_reward"])


def test_bad_rows_of_other_files_are_named_by_datasets_row_index(tmp_path):
    """Not lines (parquet, csv, a JSON array): `row N`, the index datasets gives the row (ds[N])."""
    from datasets import Dataset

    from ladder.data.loaders import load_split
    from ladder.errors import LadderError

    f = tmp_path / "rl.parquet"
    Dataset.from_list([{"prompt": "What is 2 + 3?"}, {"prompt": "  "}]).to_parquet(str(f))
    with pytest.raises(LadderError, match=f"^{f} row 1: empty prompt$"):
        load_split(str(f), "rl")
    a = tmp_path / "rl.json"
    a.write_text(json.dumps([{"prompt": "What is 2 + 3?"}, {"prompt": "  "}], indent=1))
    with pytest.raises(LadderError, match=f"^{a} row 1: empty prompt$"):
        load_split(str(a), "rl")


@pytest.mark.parametrize("reward, column", [("math_accuracy", "answer"), ("code_accuracy", "tests"),
                                            ("countdown_accuracy", "numbers")])
def test_gold_column_a_reward_needs_is_missing(tiny_run, tmp_path, capsys, reward, column):
    """Without it the reward is None for every row: TRL trains on zero rewards, silently."""
    f = _jsonl(tmp_path / "rl.jsonl", [{"prompt": "What is 2 + 3?", "solution": "5"}] * 8)
    line = grpo(tiny_run, tmp_path, capsys, data=str(f), rewards=[reward])
    assert f"reward '{reward}' needs column '{column}'" in line and "(columns: prompt, solution)" in line


def test_custom_reward_column_is_missing(tiny_run, tmp_path, capsys):
    plugin = tmp_path / "my_rewards.py"
    plugin.write_text("def by_level(completions, level, **kwargs):\n    return [1.0] * len(completions)\n")
    line = grpo(tiny_run, tmp_path, capsys, rewards=[f"{plugin}:by_level"])
    assert f"reward 'by_level' ({plugin}:by_level) needs column 'level'" in line


# ------------------------------------------------------------------------------- rewards and recipes

@pytest.mark.parametrize("spec, says", [
    ("my_reward", "reward 'my_reward': unknown built-in"),
    ("no_such_module:score", "reward 'no_such_module:score': cannot import module 'no_such_module'"),
    ("{tmp}/missing.py:score", "reward '{tmp}/missing.py:score': file {tmp}/missing.py not found"),
    ("{tmp}/plugin.py:THRESHOLD", "reward '{tmp}/plugin.py:THRESHOLD': 'THRESHOLD' is not callable"),
    ("{tmp}/plugin.py:nothing", "no function 'nothing' in {tmp}/plugin.py"),
    ("{tmp}/broken.py:score", "importing {tmp}/broken.py failed (SyntaxError"),
])
def test_bad_reward_plugin(tiny_run, tmp_path, capsys, spec, says):
    (tmp_path / "plugin.py").write_text("THRESHOLD = 3\n")
    (tmp_path / "broken.py").write_text("def score(:\n")
    line = grpo(tiny_run, tmp_path, capsys, rewards=[spec.format(tmp=tmp_path)])
    assert says.format(tmp=tmp_path) in line


def test_grpo_batch_that_does_not_split_into_groups(tiny_run, tmp_path, capsys):
    line = grpo(tiny_run, tmp_path, capsys, rewards=["format_reward"], per_device_train_batch_size=30,
                num_generations=8)
    assert str(tmp_path / "grpo.yaml") in line and "num_generations (8)" in line and "30" in line


def test_group_check_names_the_options_the_recipe_sets():
    """ladder.config.check_generation_groups: what GRPOStageConfig runs before TRL's own check."""
    from types import SimpleNamespace

    from ladder.config import check_generation_groups
    from ladder.errors import LadderError

    cfg = SimpleNamespace(num_generations=8, per_device_train_batch_size=6, gradient_accumulation_steps=2,
                          generation_batch_size=None, steps_per_generation=None)
    with pytest.raises(LadderError, match=r"per_device_train_batch_size \(6\) x 2 gradient_accumulation_steps = 12 "
                                          r"completions must split into groups of num_generations \(8\)"):
        check_generation_groups(cfg)
    cfg.per_device_train_batch_size = 4
    check_generation_groups(cfg)
    cfg.num_generations = 1
    with pytest.raises(LadderError, match="num_generations must be at least 2"):
        check_generation_groups(cfg)


def rloo(tiny_run, tmp_path, capsys, **recipe):
    """`ladder rloo`: GRPO's prompts, rewards and groups, checked by the same code (ladder.online_rl)."""
    if "data" not in recipe:
        recipe["data"] = str(_jsonl(tmp_path / "rl.jsonl", [RL] * 8))
    return run("rloo", tmp_path, capsys, **{"model": str(tiny_run / "base"), "per_device_train_batch_size": 8,
                                            "num_generations": 4, "eval_samples": 0, **recipe})


def test_rloo_rewards_and_groups_are_checked_before_any_model_loads(tiny_run, tmp_path, capsys):
    no_gold = _jsonl(tmp_path / "rl.jsonl", [{"prompt": "What is 2 + 3?", "solution": "5"}] * 8)
    line = rloo(tiny_run, tmp_path, capsys, data=str(no_gold), rewards=["math_accuracy"])
    assert "reward 'math_accuracy' needs column 'answer'" in line and "(columns: prompt, solution)" in line
    (tmp_path / "broken.py").write_text("def score(:\n")
    line = rloo(tiny_run, tmp_path, capsys, rewards=[f"{tmp_path}/broken.py:score"])
    assert f"importing {tmp_path}/broken.py failed (SyntaxError" in line
    line = rloo(tiny_run, tmp_path, capsys, rewards=["my_reward"])
    assert "reward 'my_reward': unknown built-in" in line
    line = rloo(tiny_run, tmp_path, capsys, rewards=["format_reward"], per_device_train_batch_size=30,
                num_generations=8)
    assert str(tmp_path / "rloo.yaml") in line and "num_generations (8)" in line and "30" in line
    line = rloo(tiny_run, tmp_path, capsys, rewards=["format_reward"], rollout_backend="sglang")
    assert "rollout_backend must be one of hf, vllm, got 'sglang'" in line


def test_model_path_that_does_not_exist(tiny_run, tmp_path, capsys):
    line = run("sft", tmp_path, capsys, model=str(tmp_path / "runs" / "base"), data=str(tiny_run / "data"))
    assert f"model '{tmp_path / 'runs' / 'base'}': no such checkpoint folder" in line
    line = grpo(tiny_run, tmp_path, capsys, rewards=["format_reward"], model=str(tmp_path / "nope"))
    assert f"model '{tmp_path / 'nope'}': no such checkpoint folder" in line


def test_model_name_that_is_neither_a_folder_nor_a_hub_model(tiny_run, tmp_path, capsys, monkeypatch):
    """`--model sftt`, a typo of the local folder `sft`: taken as a hub id, it fails as one, and the line
    says both readings (and how to fail fast when there is no network)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sft").mkdir()
    line = run("sft", tmp_path, capsys, model="sftt", data=str(tiny_run / "data"))
    assert line.startswith("error: model 'sftt' is neither a local folder nor a reachable hub model (")
    assert "HF_HUB_OFFLINE is set" in line  # conftest sets it: the hub is never tried

    import transformers
    from huggingface_hub import constants

    def unreachable(*args, **kwargs):  # what transformers raises once huggingface_hub gives up retrying
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find "
                      "them in the cached files.")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", unreachable)
    line = run("grpo", tmp_path, capsys, model="sftt", data=str(_jsonl(tmp_path / "rl.jsonl", [RL] * 8)),
               rewards=["format_reward"], per_device_train_batch_size=8, num_generations=4, eval_samples=0)
    assert line.startswith("error: model 'sftt' is neither a local folder nor a reachable hub model "
                           "(offline? set HF_HUB_OFFLINE=1 to fail fast): We couldn't connect")


def pretrain(tiny_run, tmp_path, capsys, **recipe):
    """`ladder pretrain` on a corpus that is not there: a mistake in the model or tokenizer must be
    reported before the corpus is read (let alone packed)."""
    return run("pretrain", tmp_path, capsys, **{"data": str(tmp_path / "corpus.jsonl"),
                                                "tokenizer": str(tiny_run / "tokenizer"), "model": "tiny", **recipe})


@pytest.mark.parametrize("model, says", [
    ("nosuchpreset", "model 'nosuchpreset': not a preset (tiny, mini, small, gpt2-124m), and is neither a local "
                     "folder nor a reachable hub model"),
    ("./nosuchdir", "model './nosuchdir': no such folder (and not a preset: tiny, mini, small, gpt2-124m)"),
    ("{tmp}/no/such/dir", "model '{tmp}/no/such/dir': no such folder"),
    ("{tmp}", "model '{tmp}': not a preset (tiny, mini, small, gpt2-124m), and no model config could be loaded"),
])
def test_pretrain_model_that_is_no_preset_folder_or_hub_model(tiny_run, tmp_path, capsys, model, says):
    line = pretrain(tiny_run, tmp_path, capsys, model=model.format(tmp=tmp_path))
    assert says.format(tmp=tmp_path) in line
    assert "\n" not in line


def test_pretrain_tokenizer_folder_that_does_not_exist(tiny_run, tmp_path, capsys):
    line = pretrain(tiny_run, tmp_path, capsys, tokenizer=str(tmp_path / "tokenizer"))
    assert f"tokenizer '{tmp_path / 'tokenizer'}': no such folder (run `ladder tokenizer` first" in line


def test_model_path_that_is_not_a_checkpoint(tiny_run, tmp_path, capsys):
    line = run("rm", tmp_path, capsys, model=str(tiny_run), data=str(tiny_run / "data"))
    assert f"model '{tiny_run}': not a checkpoint folder (no config.json" in line


def test_recipe_path_that_does_not_exist(tmp_path, capsys):
    capsys.readouterr()
    assert cli.main(["sft", "--config", str(tmp_path / "sft.yaml")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'sft.yaml'}: recipe file not found"


def test_recipe_value_of_the_wrong_type_names_the_file(tiny_run, tmp_path, capsys):
    line = sft(tiny_run, tmp_path, capsys, data=str(tiny_run / "data"), learning_rate="fast")
    assert line == f"error: {tmp_path / 'sft.yaml'}: config key 'learning_rate': expected a number, got 'fast'"


def test_recipe_given_without_config_says_did_you_mean(capsys):
    capsys.readouterr()
    assert cli.main(["sft", "recipes/tiny/sft.yaml"]) == 2
    assert capsys.readouterr().err.strip() == ("error: command line: expected --key value, got 'recipes/tiny/sft.yaml' "
                                               "(did you mean --config recipes/tiny/sft.yaml?)")
    assert cli.main(["sft", "my.yml", "--max_steps", "3"]) == 2
    assert "(did you mean --config my.yml?)" in capsys.readouterr().err
    assert cli.main(["sft", "fast"]) == 2
    assert capsys.readouterr().err.strip() == "error: command line: expected --key value, got 'fast'"


@pytest.mark.parametrize("args, says", [
    (["--ops", "+/"], "ops: a string of operations from + - * (e.g. '+-*'), got '+/'"),
    (["--ops", ""], "ops: a string of operations from + - * (e.g. '+-*'), got ''"),
    (["--levels", "2"], "levels: a list of levels from [1, 2, 3] (e.g. [1, 2]), got 2"),
    (["--test_levels", "[2, 4]"], "test_levels: unknown level 4 (known: [1, 2, 3])"),
    (["--countdown_numbers", "1"], "countdown_numbers must be at least 2, got 1"),
])
def test_data_choices_list_the_allowed_values(tmp_path, capsys, args, says):
    """`ladder data` checks its choices up front, instead of a KeyError or IndexError mid-draw."""
    capsys.readouterr()
    assert cli.main(["data", "--output_dir", str(tmp_path / "data"), *args]) == 2
    assert capsys.readouterr().err.strip() == f"error: command line: {says}"
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("stage", ["grpo", "rloo"])
def test_rl_temperature_and_learning_rate_are_checked_before_loading(tiny_run, tmp_path, capsys, stage):
    """TRL's generation config and torch's optimizer refuse these only after the model has loaded."""
    stage_run = grpo if stage == "grpo" else rloo
    line = stage_run(tiny_run, tmp_path, capsys, rewards=["format_reward"], temperature=-1)
    assert line.endswith("temperature must be > 0 (the policy samples its completions), got -1.0")
    line = stage_run(tiny_run, tmp_path, capsys, rewards=["format_reward"], temperature=0)
    assert line.endswith("temperature must be > 0 (the policy samples its completions), got 0.0")
    line = stage_run(tiny_run, tmp_path, capsys, rewards=["format_reward"], learning_rate=-1)
    assert line.endswith("learning_rate must be >= 0, got -1.0")


@pytest.mark.parametrize("steps, says", [
    ({"num_train_epochs": 0}, "no training steps (num_train_epochs=0, max_steps=-1)"),
    ({"num_train_epochs": -1}, "no training steps (num_train_epochs=-1, max_steps=-1)"),
    # transformers reads the epochs only when max_steps is negative: max_steps 0 is 0 steps at any epochs
    ({"max_steps": 0}, "no training steps (num_train_epochs=2, max_steps=0)"),
    ({"learning_rate": -1}, "learning_rate must be >= 0, got -1.0"),
])
def test_sft_that_would_not_train_is_refused(tiny_run, tmp_path, capsys, steps, says):
    """Else it saves a 'finished' checkpoint with train_loss=0.000 from zero steps (or fails in torch)."""
    line = sft(tiny_run, tmp_path, capsys, data=str(tiny_run / "data"), **steps)
    assert says in line


def test_sft_steps_from_epochs_or_max_steps_pass_the_check():
    """The default (max_steps -1: count from num_train_epochs) and max_steps alone both train."""
    from ladder.config import build_config
    from ladder.sft import SFTStageConfig

    assert build_config(SFTStageConfig, {"report_to": "none"}).max_steps == -1
    assert build_config(SFTStageConfig, {"report_to": "none", "max_steps": 3, "num_train_epochs": 0}).max_steps == 3


def test_rewards_that_are_not_a_list(tiny_run, tmp_path, capsys):
    line = grpo(tiny_run, tmp_path, capsys, rewards=5)
    assert "rewards: expected a list of reward names" in line


# ------------------------------------------------------------------------------- the finished checkpoint

def _snapshot(folder) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, hashlib.sha1(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_failing_runs_leave_a_finished_checkpoint_untouched(tiny_run, tmp_path, capsys):
    """A finished checkpoint (ladder.json) sits in output_dir; every mistake above, made with that
    output_dir, leaves each of its files as it was and adds none."""
    import shutil

    out = tmp_path / "finished"
    shutil.copytree(tiny_run / "base", out)
    before = _snapshot(out)
    assert "ladder.json" in before
    bad_chat = _jsonl(tmp_path / "chats.jsonl", [{"messages": "hi"}])
    bad_pairs = _jsonl(tmp_path / "pairs.jsonl", [{"prompt": "q", "rejected": "b"}])
    no_gold = _jsonl(tmp_path / "rl.jsonl", [{"prompt": "q"}] * 8)
    for stage, recipe in [
        ("sft", {"data": str(tmp_path / "missing.jsonl")}),
        ("sft", {"data": str(bad_chat)}),
        ("sft", {"model": str(tmp_path / "nope"), "data": str(tiny_run / "data")}),
        ("sft", {"data": str(tiny_run / "data"), "learning_rate": "fast"}),
        ("sft", {"data": str(tiny_run / "data"), "num_train_epochs": 0}),
        ("rm", {"data": str(bad_pairs), "test_split": None}),
        ("dpo", {"data": str(bad_pairs), "test_split": None}),
        ("grpo", {"data": str(no_gold), "rewards": ["math_accuracy"], "per_device_train_batch_size": 8,
                  "num_generations": 4}),
        ("grpo", {"data": str(no_gold), "rewards": [f"{tmp_path}/missing.py:f"], "per_device_train_batch_size": 8,
                  "num_generations": 4}),
        ("grpo", {"data": str(no_gold), "rewards": ["format_reward"], "per_device_train_batch_size": 30,
                  "num_generations": 8}),
        ("rloo", {"data": str(no_gold), "rewards": ["math_accuracy"], "per_device_train_batch_size": 8,
                  "num_generations": 4}),
    ]:
        recipe = {"model": str(tiny_run / "base"), **recipe, "output_dir": str(out)}
        run(stage, tmp_path, capsys, **recipe)
        assert _snapshot(out) == before, f"{stage} {recipe} changed {out}"

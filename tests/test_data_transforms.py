"""ladder.data.transforms on hand-made rows shaped like the hub datasets (no network)."""

import json

import pytest

from ladder.data import transforms as T
from ladder.data.loaders import load_split
from ladder.errors import LadderError

GSM8K = {"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
                     "in May. How many clips did Natalia sell altogether in April and May?",
         "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips "
                   "altogether in April and May.\n#### 72"}
MATH500 = {"problem": "What is $\\frac{1}{2} + \\frac{1}{4}$?", "solution": "... $\\boxed{\\frac{3}{4}}$.",
           "answer": "\\frac{3}{4}", "subject": "Prealgebra", "level": 1, "unique_id": "test/x.json"}
MBPP_FULL = {"task_id": 2, "text": "Write a function to find the shared elements from the given two lists.",
             "code": "def similar_elements(a, b):\n    return tuple(set(a) & set(b))",
             "test_list": ["assert set(similar_elements((3, 4, 5, 6), (5, 7, 4, 10))) == set((4, 5))",
                           "assert set(similar_elements((1, 2, 3, 4), (5, 4, 3, 7))) == set((3, 4))"],
             "test_setup_code": "", "challenge_test_list": []}
MBPP_SANITIZED = {"source_file": "x.py", "task_id": 3, "prompt": "Write a python function to find the sqrt.",
                  "code": "import math\ndef root(x):\n    return math.sqrt(x)", "test_imports": ["import math"],
                  "test_list": ["assert math.isclose(root(4), 2)"]}


def test_gsm8k_gold_is_the_number_after_hashes():
    row = T.gsm8k(GSM8K, "rl")
    assert row["answer"] == "72"
    assert row["prompt"][0]["role"] == "user" and "Natalia" in row["prompt"][0]["content"]
    assert "\\boxed{}" in row["prompt"][0]["content"]
    assert T.gsm8k_answer("so #### 1,200") == "1200" and T.gsm8k_answer("x ####-3 ") == "-3"
    with pytest.raises(LadderError, match="####"):
        T.gsm8k({"question": "q", "answer": "no marker 5"}, "rl")


def test_gsm8k_sft_drops_calculator_notes_and_ends_boxed():
    solution = T.gsm8k(GSM8K, "sft")["messages"][1]["content"]
    assert "<<" not in solution and "####" not in solution and "48/2 = 24 clips" in solution
    assert solution.endswith("$\\boxed{72}$.")


def test_math_reward_accepts_the_formatted_gold():
    from ladder.rewards import math_accuracy

    gsm, mth = T.gsm8k(GSM8K, "rl"), T.math_problems(MATH500, "rl")
    assert math_accuracy(["... so \\boxed{72}", "The answer is 71."], answer=[gsm["answer"]] * 2) == [1.0, 0.0]
    assert math_accuracy(["\\boxed{0.75}"], answer=[mth["answer"]]) == [1.0]
    sft = T.gsm8k(GSM8K, "sft")
    assert math_accuracy([sft["messages"][1]["content"]], answer=[sft["answer"]]) == [1.0]


def test_math_gold_from_answer_column_or_last_boxed():
    assert T.math_problems(MATH500, "rl")["answer"] == "\\frac{3}{4}"
    lighteval = {"problem": "p", "solution": "First \\boxed{1}, then $\\boxed{\\frac{a}{b}}$.", "level": "Level 2"}
    assert T.math_problems(lighteval, "rl")["answer"] == "\\frac{a}{b}"
    with pytest.raises(LadderError, match="boxed"):
        T.math_problems({"problem": "p", "solution": "no answer"}, "rl")


def test_mbpp_prompt_shows_tests_and_tests_column_is_asserts():
    full, sanitized = T.mbpp(MBPP_FULL, "rl"), T.mbpp(MBPP_SANITIZED, "rl")
    shown = full["prompt"][0]["content"]
    assert "shared elements" in shown and "similar_elements((3, 4" in shown
    assert full["tests"] == "\n".join(MBPP_FULL["test_list"])
    assert sanitized["tests"] == "import math\nassert math.isclose(root(4), 2)"
    assert "find the sqrt" in sanitized["prompt"][0]["content"]
    assert T.mbpp(MBPP_FULL, "sft")["messages"][1]["content"].startswith("```python\ndef similar_elements")


def test_mbpp_reference_code_passes_its_tests_in_the_sandbox():
    from ladder.rewards import code_accuracy
    from ladder.rewards import sandbox

    if all(sandbox.probe(k) for k in ("bwrap", "setuid")):
        pytest.skip("no sandbox jail works here (install bubblewrap)")
    rows = [T.mbpp(MBPP_FULL, "sft"), T.mbpp(MBPP_SANITIZED, "sft")]
    completions = [r["messages"][1]["content"] for r in rows]
    assert code_accuracy(completions, tests=[r["tests"] for r in rows]) == [1.0, 1.0]
    assert code_accuracy(["```python\ndef similar_elements(a, b):\n    return ()\n```"],
                         tests=[rows[0]["tests"]]) == [0.0]


def test_known_ids_and_unknown_names():
    assert T.default_for("openai/gsm8k") == "gsm8k" and T.default_for("HuggingFaceH4/MATH-500") == "math"
    assert T.default_for("google-research-datasets/mbpp") == "mbpp" and T.default_for("trl-lib/Capybara") is None
    with pytest.raises(LadderError, match="unknown transform 'gsm9k'.*gsm8k"):
        T.row_function("gsm9k", "rl")
    with pytest.raises(LadderError, match="not prefs"):
        T.row_function("gsm8k", "prefs")
    assert T.row_function("none", "rl") is None and T.row_function(None, "rl") is None


def _hub(monkeypatch, rows):
    """datasets.load_dataset answering with hand-made rows, recording what it was asked for."""
    import datasets

    asked = []

    def fake(path, name=None, split=None, **kwargs):
        asked.append((path, name, split))
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake)
    return asked


def test_load_split_formats_a_known_hub_id(monkeypatch):
    asked = _hub(monkeypatch, [GSM8K, {**GSM8K, "answer": "x #### 5"}])
    ds = load_split("openai/gsm8k", "rl", "test", name="main")
    assert asked == [("openai/gsm8k", "main", "test")]
    assert ds["answer"] == ["72", "5"] and ds[0]["prompt"][0]["role"] == "user"
    assert "question" in ds.column_names  # the dataset's own columns stay, for custom rewards
    assert load_split("openai/gsm8k", "rl", "test", name="main", limit=1).num_rows == 1


def test_load_split_mbpp_sanitized_prompt_is_replaced(monkeypatch):
    _hub(monkeypatch, [MBPP_SANITIZED])
    ds = load_split("google-research-datasets/mbpp", "rl", "test", name="sanitized")
    assert isinstance(ds[0]["prompt"], list) and ds[0]["tests"].startswith("import math")


def test_load_split_transform_none_keeps_columns(monkeypatch):
    _hub(monkeypatch, [GSM8K])
    with pytest.raises(LadderError, match="missing column 'prompt'"):
        load_split("openai/gsm8k", "rl", transform="none")


def test_column_map_on_a_local_file(tmp_path):
    f = tmp_path / "qa.jsonl"
    f.write_text(json.dumps({"q": "What is 2 + 2?", "final": "4", "answer": "old"}) + "\n")
    ds = load_split(str(f), "rl", transform={"prompt": "q", "answer": "final"})
    assert ds[0]["prompt"] == "What is 2 + 2?" and ds[0]["answer"] == "4" and ds[0]["q"] == "What is 2 + 2?"
    with pytest.raises(LadderError, match="reads 'question'"):
        load_split(str(f), "rl", transform={"prompt": "question"})


def test_custom_function_from_a_file(tmp_path):
    f = tmp_path / "qa.jsonl"
    f.write_text(json.dumps({"q": "What is 2 + 2?", "a": 4}) + "\n")
    fn = tmp_path / "my_format.py"
    fn.write_text("def to_rl(row, kind):\n    return {'prompt': [{'role': 'user', 'content': row['q']}],"
                  " 'answer': str(row['a'])}\n\ndef broken(row, kind):\n    return {'prompt': row['nope']}\n")
    ds = load_split(str(f), "rl", transform=f"{fn}:to_rl")
    assert ds[0]["prompt"][0]["content"] == "What is 2 + 2?" and ds[0]["answer"] == "4"
    with pytest.raises(LadderError, match="needs column 'nope'"):
        load_split(str(f), "rl", transform=f"{fn}:broken")
    with pytest.raises(LadderError, match="no function 'missing'"):
        load_split(str(f), "rl", transform=f"{fn}:missing")


def test_local_files_get_no_default_transform(tmp_path):
    f = tmp_path / "gsm8k.jsonl"  # a name is not a hub id: no formatter unless asked for
    f.write_text(json.dumps(GSM8K) + "\n")
    with pytest.raises(LadderError, match="missing column 'prompt'"):
        load_split(str(f), "rl")
    assert load_split(str(f), "rl", transform="gsm8k")[0]["answer"] == "72"


def test_shipped_rl_recipes_get_the_columns_their_rewards_read():
    """Every GRPO/PPO recipe on a hub dataset names one with a built-in formatter, and that formatter
    (on a hand-made row of that dataset) gives the gold column each of the recipe's rewards reads."""
    from pathlib import Path

    from ladder.config import read_yaml

    rows = {"gsm8k": GSM8K, "math": MATH500, "mbpp": MBPP_FULL}
    reads = {"math_accuracy": "answer", "code_accuracy": "tests", "countdown_accuracy": "target"}
    root = Path(__file__).resolve().parents[1] / "recipes"
    checked = 0
    for path in sorted(root.rglob("*.yaml")):
        if path.stem not in ("grpo", "ppo"):
            continue
        recipe = read_yaml(path)
        data = str(recipe.get("data", ""))
        if data.startswith("runs/"):
            continue
        name = T.default_for(data)
        assert name, f"{path}: hub dataset {data} has no built-in formatter"
        row = T.FORMATTERS[name](rows[name], "rl")
        for reward in recipe.get("rewards", []):
            reward = reward["name"] if isinstance(reward, dict) else reward
            if reward in reads:
                assert reads[reward] in row, f"{path}: {reward} reads '{reads[reward]}', {name} does not make it"
        checked += 1
    assert checked >= 4


def test_stage_configs_pass_data_transform_to_the_loader(tmp_path):
    """`data_transform` in a recipe (or `--data_transform` as YAML/JSON) reaches load_split."""
    from ladder import eval as ladder_eval
    from ladder.evaluation import load_rows
    from ladder import grpo
    from ladder.config import load_config

    f = tmp_path / "qa.jsonl"
    f.write_text(json.dumps({"q": "What is 2 + 2?", "final": "4"}) + "\n")
    cfg = load_config(ladder_eval.EvalConfig, ["--data", str(f), "--data_transform", '{"prompt": "q", "answer": "final"}'])
    assert cfg.data_transform == {"prompt": "q", "answer": "final"}
    rows = load_rows(cfg.data, "train", transform=cfg.data_transform)
    assert rows[0]["prompt"] == "What is 2 + 2?" and rows[0]["answer"] == "4"
    assert load_config(grpo.GRPOStageConfig, ["--data_transform", "gsm8k", "--report_to", "none"]).data_transform == "gsm8k"

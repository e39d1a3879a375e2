import pytest
from datasets import Dataset

from ladder.data.chat import to_messages
from ladder.errors import LadderError

ANSWER = {"role": "assistant", "content": "4"}


@pytest.mark.parametrize("row", [
    {"prompt": "2+2?", "completion": "4"},
    {"prompt": [{"role": "user", "content": "2+2?"}], "completion": [ANSWER]},
    {"instruction": "2+2?", "input": "", "output": "4"},
    {"conversations": [{"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}]},
])
def test_common_layouts_become_messages(row):
    ds = to_messages(Dataset.from_list([row]), "x.jsonl")
    assert ds[0]["messages"] == [{"role": "user", "content": "2+2?"}, ANSWER]


def test_alpaca_input_is_appended_and_bad_rows_name_the_row():
    ds = to_messages(Dataset.from_list([{"instruction": "Add", "input": "2 and 2", "output": "4"}]), "a")
    assert ds[0]["messages"][0]["content"] == "Add\n\n2 and 2"
    bad = Dataset.from_list([{"prompt": "q", "completion": "a"}, {"prompt": "q", "completion": ""}])
    with pytest.raises(LadderError, match="f.jsonl row 1: an empty assistant message"):
        to_messages(bad, "f.jsonl")


def test_sharegpt_system_and_multi_turn_and_mixed_prompt_completion():
    conv = [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"},
            {"from": "human", "value": "and 3+3?"}, {"from": "gpt", "value": "6"}]
    ds = to_messages(Dataset.from_list([{"conversations": conv}]), "s.jsonl")
    assert [m["role"] for m in ds[0]["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    mixed = to_messages(Dataset.from_list([{"prompt": [{"role": "user", "content": "2+2?"}], "completion": "4"}]), "m")
    assert mixed[0]["messages"] == [{"role": "user", "content": "2+2?"}, ANSWER]


def test_messages_that_are_not_a_list_name_the_row():
    with pytest.raises(LadderError, match="f.jsonl row 0: messages must be a list"):
        to_messages(Dataset.from_list([{"messages": "hello"}]), "f.jsonl")


def test_to_prompt_completion_keeps_earlier_turns_as_context():
    from ladder.data.chat import to_prompt_completion

    msgs = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]
    row = to_prompt_completion(Dataset.from_list([{"messages": msgs}]))[0]
    assert row["prompt"] == msgs[:3] and row["completion"] == msgs[3:]


def test_prompt_length_counts_every_turn_before_the_first_answer(tiny_run):
    from transformers import AutoTokenizer

    from ladder.data.chat import check_lengths

    tok = AutoTokenizer.from_pretrained(tiny_run / "tokenizer")
    msgs = [{"role": "system", "content": "ok"}, {"role": "user", "content": "1 " * 200},
            {"role": "assistant", "content": "2"}]
    with pytest.raises(LadderError, match="c.jsonl row 1: prompt is"):
        check_lengths(Dataset.from_list([{"messages": msgs[:1] + msgs[2:]}, {"messages": msgs}]), tok, 128, "c.jsonl")

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
    with pytest.raises(LadderError, match="f.jsonl row 1: a assistant message has no text"):
        to_messages(bad, "f.jsonl")

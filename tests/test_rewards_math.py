import threading

import pytest

from ladder.rewards import extract_answer, math_accuracy


@pytest.mark.parametrize("completion, gold, expected", [
    ("<think>17 * 24 = 408</think><answer>408</answer>", "408", 1.0),
    ("<answer>408.0</answer>", "408", 1.0),
    ("<answer>0.5</answer>", "1/2", 1.0),
    ("<answer>\\frac{1}{2}</answer>", "0.5", 1.0),
    ("so the result is \\boxed{12}", "12", 1.0),
    ("17 + 5 = 22. The answer is 22", "22", 1.0),
    ("<answer> 1,000 </answer>", "1000", 1.0),
    ("The total is 1,000 apples.", "1000", 1.0),
    ("<answer>\\boxed{\\frac{3}{4}}</answer>", "0.75", 1.0),
    ("<answer>407</answer>", "408", 0.0),
    ("<answer>408</answer> but really 407", "407", 0.0),  # the answer block wins over a later number
    ("<answer>2/3</answer>", "0.6", 0.0),
    ("no number here", "3", 0.0),
])
def test_equivalent_forms_count_and_wrong_answers_do_not(completion, gold, expected):
    assert math_accuracy([completion], answer=[gold]) == [expected]


def test_message_lists_and_rows_without_gold():
    msgs = [[{"role": "assistant", "content": "<answer>5</answer>"}], "<answer>5</answer>"]
    assert math_accuracy(msgs, answer=["5", None]) == [1.0, None]
    assert math_accuracy(["<answer>5</answer>"], answer=[""]) == [None]
    assert math_accuracy(["<answer>5</answer>"]) == [None]


def test_extract_answer_prefers_answer_block_then_boxed_then_last_number():
    assert extract_answer("1 2 <answer>3</answer> 4") == "3"
    assert extract_answer("\\boxed{\\frac{1}{2}} then 7") == "\\frac{1}{2}"
    assert extract_answer("1 then 2") == "2"
    assert extract_answer("\\boxed{x^{2}} ") == "x^{2}"  # nested braces balanced
    assert extract_answer("nothing") is None


def test_correct_off_the_main_thread():
    """math-verify's signal-based timeout fails off the main thread; a right answer must still score 1."""
    out = []
    batch = ["<answer>1/2</answer>", "<answer>3</answer>"]
    t = threading.Thread(target=lambda: out.append(math_accuracy(batch, answer=["0.5", "4"], trainer_state=None)))
    t.start()
    t.join()
    assert out == [[1.0, 0.0]]

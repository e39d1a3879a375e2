"""ladder.models.score on texts longer than the reward model reads."""

import pytest

from ladder.models import load_reward_model, score


def _rm_on(tiny_rm, ids):
    import torch

    model, _ = load_reward_model(str(tiny_rm))
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, 0].item()


def test_score_cuts_a_long_text_from_the_left_and_never_scores_a_cut_off_answer(tiny_rm):
    """score() cut texts at 1,024 tokens from the right: past a long prompt the answer was cut away (and the
    tiny reward model reads only 512). Now it reads the last 512 tokens, answer whole; an answer that cannot
    be read whole gets None with strict=True; a text that fits is scored as before."""
    from ladder.models import conversation_text

    _, tokenizer = load_reward_model(str(tiny_rm))
    long, answer = "What is 12 + 5? " * 320, "<think>12 + 5 = 17</think><answer>17</answer>"
    ids = tokenizer(conversation_text(tokenizer, long, answer), add_special_tokens=False)["input_ids"]
    assert len(ids) > 1024
    assert score(tiny_rm, [long], [answer]) == pytest.approx([_rm_on(tiny_rm, ids[-512:])], abs=1e-4)
    assert score(tiny_rm, [long], [answer], strict=True) == pytest.approx([_rm_on(tiny_rm, ids[-512:])], abs=1e-4)
    endless = "<answer>" + "17 " * 600 + "</answer>"
    assert score(tiny_rm, ["q", "q"], [endless, answer], strict=True)[0] is None
    assert isinstance(score(tiny_rm, ["q"], [endless])[0], float)  # training and eval still get a number
    short = tokenizer(conversation_text(tokenizer, "q", answer), add_special_tokens=False)["input_ids"]
    assert score(tiny_rm, ["q"], [answer], strict=True) == pytest.approx([_rm_on(tiny_rm, short)], abs=1e-4)

"""Held-out evaluation, one path for every stage: greedy and sampled answers scored with the rewards
training uses, standard errors, per-kind accuracy, lengths, judges and pass@k.

`ladder eval` scores finished checkpoints with it; SFT, GRPO and PPO call `heldout` before, during and
after training with their own completion length, so a number in the report means the same thing
whichever stage wrote it. Per-step points go into a stage's history as `heldout_<metric>`
(`curve_point`), which is what the report plots.
"""

from __future__ import annotations

import math
import re

from ladder.errors import LadderError
from ladder.generation import BATCH  # prompts per generate call

COMPLETIONS = "eval_completions.jsonl"  # written into each evaluated checkpoint: one JSON row per answer
THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and its standard error (sample sd / sqrt(n); 0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var / n)


GOLD = ("answer", "numbers", "target", "tests")  # the columns score_texts judges a row by (has_gold)


def has_gold(rows: list[dict]) -> bool:
    """Whether score_texts can judge any row: an `answer`, `tests`, or countdown's `numbers` and `target`.
    Without one, accuracy is None (format, lengths, RM and judge scores are still measured)."""
    def given(row, key):
        return row.get(key) not in (None, "", [])

    return any(given(r, "answer") or given(r, "tests") or (given(r, "numbers") and given(r, "target")) for r in rows)


def load_judges(specs: list[str]) -> dict:
    """{name: fn} for evaluation-only scorers, loaded like rewards (a bad one fails before any model loads)."""
    from ladder.rewards import load_reward

    specs = [specs] if isinstance(specs, str) else specs or []
    return {str(s).rpartition(":")[2]: load_reward(s, kind="judge") for s in specs}


def abstention_stats(scores: list[float], abstains: list[bool]) -> dict:
    """How a model that may say "I don't know" did, on scored rows: `abstain_rate` (share of answers that
    abstain, ladder.rewards.abstained), and among the attempted ones (those that do not), the share wrong
    (`hallucination_rate`) and right (`attempted_accuracy`), each with its standard error (None when no
    row was attempted). A model that never abstains has abstain_rate 0 and attempted_accuracy = accuracy."""
    attempted = [s for s, a in zip(scores, abstains) if not a]
    out = dict(zip(("abstain_rate", "abstain_rate_se"), mean_se([float(a) for a in abstains])))
    right = mean_se(attempted) if attempted else (None, None)
    out.update(hallucination_rate=None if right[0] is None else 1.0 - right[0], hallucination_rate_se=right[1],
               attempted_accuracy=right[0], attempted_accuracy_se=right[1])
    return out


def score_texts(texts: list[str], rows: list[dict], judges: dict | None = None) -> dict:
    """Accuracy (and its standard error, overall and per `kind`) / format / lengths of completions for
    RL-format rows: each row is scored by the reward its gold columns call for: `tests` (code_accuracy,
    in the sandbox), `answer` (math_accuracy), or `numbers` + `target` (countdown_accuracy); abstentions
    ("I don't know": abstention_stats, overall and per kind); plus the mean of each judge (`judge/<name>`)."""
    from ladder.rewards import abstained, code_accuracy, countdown_accuracy, format_reward, math_accuracy

    cols = {k: [r.get(k) for r in rows] for k in ("answer", "numbers", "target", "tests")}
    code = code_accuracy(texts, tests=cols["tests"])  # None (and nothing run) for rows without tests
    math = math_accuracy(texts, answer=cols["answer"])
    cd = countdown_accuracy(texts, numbers=cols["numbers"], target=cols["target"])
    per_row = [c if c is not None else m if m is not None else d for c, m, d in zip(code, math, cd)]
    scored = [s for s in per_row if s is not None]
    accuracy, se = mean_se(scored) if scored else (None, None)
    abstains = [abstained(t) for t in texts]
    kinds: dict[str, list[tuple[float, bool]]] = {}
    for r, s, a in zip(rows, per_row, abstains):
        if s is not None and r.get("kind"):
            kinds.setdefault(r["kind"], []).append((s, a))
    thinks = [m.group(1) if (m := THINK.search(t)) else "" for t in texts]
    out = {
        "accuracy": accuracy,
        "accuracy_se": se,
        "per_kind": {k: _kind_stats(v) for k, v in sorted(kinds.items())},
        "format_rate": sum(f == 1.0 for f in format_reward(texts)) / len(texts),
        "mean_length": sum(len(t) for t in texts) / len(texts),
        "think_length": sum(len(t) for t in thinks) / len(texts),
        "n": len(texts),
        "per_row": per_row,
    }
    if scored:
        out.update(abstention_stats(scored, [a for s, a in zip(per_row, abstains) if s is not None]))
    for name, fn in (judges or {}).items():
        values = [v for v in fn(texts, **{k: [r.get(k) for r in rows] for k in rows[0]}) if v is not None]
        out[f"judge/{name}"] = sum(values) / len(values) if values else None
    return out


def _kind_stats(scored: list[tuple[float, bool]]) -> dict:
    acc, se = mean_se([s for s, _ in scored])
    stats = abstention_stats([s for s, _ in scored], [a for _, a in scored])
    return {"accuracy": acc, "se": se, "n": len(scored), "abstain_rate": stats["abstain_rate"],
            "hallucination_rate": stats["hallucination_rate"]}


def tool_stats(transcripts: list[list[dict]], per_row: list, rows: list[dict] | None = None) -> dict:
    """How a model used its tools, from its completions' messages: `tool_call_rate` (share of rows whose
    completion made at least one call) with its standard error, `tool_error_rate` (share of the calls run
    whose result is an error; None when none ran), `accuracy_with_tool` / `accuracy_without_tool`
    (accuracy among the scored rows that did / did not call; None when there is no such row) with their
    standard errors, and with `rows`, `per_kind` {kind: {"tool_call_rate", "n"}} over the scored rows."""
    from ladder.generation import is_tool_error
    from ladder.rewards.tool_use import calls_in

    called = [calls_in(t) > 0 for t in transcripts]
    results = [m for t in transcripts for m in t if m.get("role") == "tool"]
    rate = mean_se([float(c) for c in called]) if called else (None, None)
    out = {"tool_call_rate": rate[0], "tool_call_rate_se": rate[1]}
    out["tool_error_rate"] = sum(map(is_tool_error, results)) / len(results) if results else None
    for name, want in (("with", True), ("without", False)):
        scores = [s for s, c in zip(per_row, called) if s is not None and c == want]
        acc, se = mean_se(scores) if scores else (None, None)
        out[f"accuracy_{name}_tool"], out[f"accuracy_{name}_tool_se"] = acc, se
    kinds: dict[str, list[float]] = {}
    for r, s, c in zip(rows or [], per_row, called):
        if s is not None and r.get("kind"):
            kinds.setdefault(r["kind"], []).append(float(c))
    out["per_kind"] = {k: {"tool_call_rate": sum(v) / len(v), "n": len(v)} for k, v in kinds.items()}
    return out


def evaluate_model(model, tokenizer, rows: list[dict], *, chat: bool = True, max_new_tokens: int = 64,
                   reward_model: str | None = None, texts: list[str] | None = None, judges: dict | None = None,
                   keep_completions: bool = False, tools: list | None = None,
                   transcripts: list[list[dict]] | None = None, max_calls: int = 3) -> dict:
    """Greedy answers to held-out rows (or the given `texts`), scored; `samples` keeps a few, and with
    `keep_completions` `completions` holds every one (prompt, completion, score, the row's gold columns).

    With `tools` (chat models), answers come from generate_with_tools (or the given `transcripts`), each
    scored on its final answer (completion_text: the last assistant message, never a tool's output), plus
    tool_stats (call rate, error rate, accuracy with and without a call, per kind); kept completions and
    samples carry `messages`, the whole transcript."""
    from ladder.generation import generate, generate_with_tools
    from ladder.rewards import completion_text

    prompts = [r["prompt"] for r in rows]
    if tools and chat and transcripts is None and texts is None:
        transcripts = generate_with_tools(model, tokenizer, prompts, tools, max_new_tokens=max_new_tokens,
                                          max_calls=max_calls)
    if transcripts is not None:
        texts = [completion_text(t) for t in transcripts]
    if texts is None:
        texts = generate(model, tokenizer, prompts, chat=chat, max_new_tokens=max_new_tokens)
    stats = score_texts(texts, rows, judges)
    if transcripts is not None:
        used = tool_stats(transcripts, stats["per_row"], rows)
        for kind, v in used.pop("per_kind").items():
            if kind in stats["per_kind"]:
                stats["per_kind"][kind]["tool_call_rate"] = v["tool_call_rate"]
        stats.update(used)
    if reward_model:
        from ladder.models import score

        stats["rm_score"] = sum(score(reward_model, prompts, texts)) / len(texts)
    stats["prompting"] = "chat template" if chat else "few-shot"
    done = [{"prompt": p if isinstance(p, str) else p[-1]["content"], "completion": t, "score": s}
            for p, t, s in zip(prompts, texts, stats.pop("per_row"))]
    if transcripts is not None:
        for d, t in zip(done, transcripts):
            d["messages"] = t
    stats["samples"] = done[:3]
    if keep_completions:
        gold = ("kind", "answer", "numbers", "target")
        stats["completions"] = [{**d, **{k: r[k] for k in gold if r.get(k) is not None}} for d, r in zip(done, rows)]
    return stats


def sample_transcripts(model, tokenizer, rows: list[dict], *, samples: int, temperature: float, tools: list,
                       max_new_tokens: int = 64, seed: int = 0, batch_size: int = BATCH,
                       max_calls: int = 3) -> list[list[dict]]:
    """sample_answers with tools: each answer's messages (generate_with_tools), in the same sample-major order."""
    from ladder.generation import generate_with_tools

    prompts = [r["prompt"] for r in rows] * samples
    return generate_with_tools(model, tokenizer, prompts, tools, max_new_tokens=max_new_tokens, temperature=temperature,
                               seed=seed, batch_size=batch_size, max_calls=max_calls)


def sample_answers(model, tokenizer, rows: list[dict], *, samples: int, temperature: float,
                   max_new_tokens: int = 64, seed: int = 0, batch_size: int = BATCH) -> list[str]:
    """`samples` answers per row at `temperature`, sample-major: answer j to row i is at [j * len(rows) + i]
    (each batch holds different problems, as in one pass over the rows per sample)."""
    from ladder.generation import generate

    prompts = [r["prompt"] for r in rows] * samples
    return generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                    batch_size=batch_size)


def sample_scores(per_row: list, n: int) -> list[list[float]]:
    """Per problem, the scores of its samples (none for a problem no reward scores), from score_texts'
    per_row over sample_answers' sample-major order."""
    return [[s for s in per_row[i::n] if s is not None] for i in range(n)]


def pass_rates(per_row: list, n: int) -> list[float | None]:
    """Per problem, the share of its samples that are right (None for a problem no reward scores)."""
    return [sum(h) / len(h) if h else None for h in sample_scores(per_row, n)]


def evaluate_sampled(model, tokenizer, rows: list[dict], *, samples: int, temperature: float,
                     max_new_tokens: int = 64, seed: int = 0, reward_model: str | None = None,
                     judges: dict | None = None, per_problem: bool = False, tools: list | None = None,
                     max_calls: int = 3) -> dict:
    """`samples` answers per held-out row at `temperature`: their accuracy (`accuracy_sampled`, which is
    pass@1), the share of rows with at least one right answer (`pass@<samples>`) and, with a reward
    model, the mean score (`rm_score_sampled`), and each judge's (`judge/<name>_sampled`). What RL moves: greedy answers of an SFT model often
    already sit at the reward model's ceiling; and RL pulls pass@1 towards pass@k. With `per_problem`,
    `pass_rates` holds each row's share of right samples (what the report's reliability plot buckets).
    With `tools`, samples come from generate_with_tools, scored on their final answers, and
    `tool_call_rate_sampled` is the share of samples that made a call."""
    from ladder.rewards import completion_text

    n = len(rows)
    transcripts = None
    if tools:
        transcripts = sample_transcripts(model, tokenizer, rows, samples=samples, temperature=temperature, tools=tools,
                                         max_new_tokens=max_new_tokens, seed=seed, max_calls=max_calls)
        texts = [completion_text(t) for t in transcripts]
    else:
        texts = sample_answers(model, tokenizer, rows, samples=samples, temperature=temperature,
                               max_new_tokens=max_new_tokens, seed=seed)
    rows = rows * samples
    out = {}
    stats = score_texts(texts, rows, judges)
    if transcripts is not None:
        out["tool_call_rate_sampled"] = tool_stats(transcripts, stats["per_row"])["tool_call_rate"]
    out.update({f"{k}_sampled": v for k, v in stats.items() if k.startswith("judge/") and v is not None})
    if stats["accuracy"] is not None:
        out["accuracy_sampled"] = stats["accuracy"]
        hits = [h for h in sample_scores(stats["per_row"], n) if h]
        out[f"pass@{samples}"] = sum(max(h) for h in hits) / len(hits)
        if per_problem:
            out["pass_rates"] = pass_rates(stats["per_row"], n)
    if reward_model:
        from ladder.models import score

        out["rm_score_sampled"] = sum(score(reward_model, [r["prompt"] for r in rows], texts)) / len(texts)
    return out


RELIABILITY_BINS = 5  # equal-width buckets of sampled pass-rate


def reliability(rates: list[float | None], greedy: list[float | None], bins: int = RELIABILITY_BINS) -> list[dict]:
    """Confidence against accuracy: problems bucketed by their sampled pass-rate (the model's own
    confidence, read off k samples at T=1), each bucket's mean pass-rate, greedy accuracy and size.
    A calibrated model's greedy answers are right about as often as its samples are."""
    buckets: list[list[tuple[float, float]]] = [[] for _ in range(bins)]
    for rate, score in zip(rates, greedy):
        if rate is not None and score is not None:
            buckets[min(int(rate * bins), bins - 1)].append((rate, score))
    return [{"lo": i / bins, "hi": (i + 1) / bins, "n": len(b), "pass_rate": sum(r for r, _ in b) / len(b),
             "accuracy": sum(s for _, s in b) / len(b)} for i, b in enumerate(buckets) if b]


def load_rows(data: str, split: str = "test", name=None, limit=None, transform=None) -> list[dict]:
    from ladder.data.loaders import load_split

    return list(load_split(data, "rl", split, name=name, limit=limit, transform=transform))


def resolve_backend(backend: str) -> str:
    import torch

    from ladder.runtime import vllm_available

    if backend == "auto":
        return "vllm" if torch.cuda.is_available() and vllm_available() else "hf"
    if backend == "vllm" and not vllm_available():
        raise LadderError("backend vllm: vLLM is not installed (pip install -e '.[cpu]' or '.[gpu]')")
    return backend


def evaluate_checkpoint(path, rows, *, max_new_tokens=64, reward_model=None, backend: str = "hf",
                        judges: dict | None = None, pass_k: int = 0, pass_k_rows: list | None = None,
                        tools: list | None = None, max_calls: int = 3) -> dict:
    """evaluate_model (and with `pass_k`, evaluate_sampled) on one checkpoint directory. With `tools`, a chat
    checkpoint answers through generate_with_tools (HF generate: the loop runs in this process), its
    tokenizer loaded to render and parse them; a base model (few-shot, not chat) never gets tools."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ladder.generation import generate_vllm, is_chat_model

    chat = is_chat_model(path)
    tools = list(tools or []) if chat else []
    if tools:
        backend = "hf"
    try:
        if tools:
            from ladder.models import load_tokenizer

            tokenizer, grown = load_tokenizer(str(path), tools=True)
        else:
            tokenizer, grown = AutoTokenizer.from_pretrained(path), False
        model = None if backend == "vllm" else AutoModelForCausalLM.from_pretrained(path)
    except LadderError:
        raise
    except Exception as e:
        raise LadderError(f"checkpoint '{path}': cannot load ({str(e).splitlines()[0][:160]})") from None
    if grown:  # tool tokens new to this checkpoint (not trained with tools): embeddings to match
        model.resize_token_embeddings(len(tokenizer))
    texts = generate_vllm(path, [r["prompt"] for r in rows], chat=chat, max_new_tokens=max_new_tokens) \
        if backend == "vllm" else None
    stats = evaluate_model(model, tokenizer, rows, chat=chat, max_new_tokens=max_new_tokens,
                           reward_model=reward_model, texts=texts, judges=judges, keep_completions=True,
                           tools=tools or None, max_calls=max_calls)
    stats["backend"] = backend
    if pass_k and chat and model is not None:
        sampled_rows = pass_k_rows or rows
        sampled = evaluate_sampled(model, tokenizer, sampled_rows, samples=pass_k, temperature=1.0,
                                   max_new_tokens=max_new_tokens, per_problem=True, tools=tools or None,
                                   max_calls=max_calls)
        stats["pass@1"] = sampled.get("accuracy_sampled")
        stats[f"pass@{pass_k}"] = sampled.get(f"pass@{pass_k}")
        if sampled.get("pass_rates") and sampled_rows == rows[:len(sampled_rows)]:  # the same problems, greedy
            stats["reliability"] = reliability(sampled["pass_rates"], [c["score"] for c in stats["completions"]])
    return stats


HELDOUT = "heldout_"  # prefix of per-step held-out metrics in a stage's history (the report's curves)
CURVE_KEYS = ("accuracy", "format_rate", "mean_length", "think_length", "rm_score", "tool_call_rate")


def heldout(model, tokenizer, rows: list[dict], *, max_new_tokens: int, reward_model: str | None = None,
            judges: dict | None = None, samples: int = 0, temperature: float = 1.0, seed: int = 0,
            tools: list | None = None, max_calls: int = 3) -> dict:
    """What every stage records on held-out prompts: greedy accuracy (and its standard error), format
    rate, answer and thinking length, RM score and judges' scores; with `samples`, that many answers per
    prompt at `temperature` too (accuracy_sampled = pass@1, pass@<samples>, sampled RM and judge scores).
    With `tools`, answers come from generate_with_tools (the tool numbers too: tool_call_rate, ...).
    A flat dict of numbers, ready for `before/`, `after/` or `heldout_` keys."""
    stats = evaluate_model(model, tokenizer, rows, chat=True, max_new_tokens=max_new_tokens,
                           reward_model=reward_model, judges=judges, tools=tools, max_calls=max_calls)
    out = {k: v for k, v in stats.items() if isinstance(v, (int, float))}  # numbers only: `n` too
    if samples > 0:
        out.update(evaluate_sampled(model, tokenizer, rows, samples=samples, temperature=temperature,
                                    max_new_tokens=max_new_tokens, seed=seed, reward_model=reward_model,
                                    judges=judges, tools=tools, max_calls=max_calls))
    return out


def curve_point(stats: dict) -> dict:
    """The per-step subset of `heldout`'s numbers, as `heldout_<metric>` history keys."""
    return {f"{HELDOUT}{k}": round(v, 5) for k, v in stats.items()
            if v is not None and (k in CURVE_KEYS or k.startswith("judge/"))}

"""Chat data in the layouts users bring, converted to `messages`, with every row checked.

    messages                         [{"role", "content"}, ...]            (used as is)
    prompt / completion              strings or message lists
    instruction / input / output     Alpaca
    conversations [{from, value}]    ShareGPT (human/gpt/system)

Anything else, or a bad row, is a one-line LadderError naming the file and the row.
"""

from __future__ import annotations

from ladder.data.loaders import row_at
from ladder.errors import LadderError

ROLES = {"system", "user", "assistant", "tool"}
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "model": "assistant"}


def _as_messages(value, role: str) -> list[dict]:
    return list(value) if isinstance(value, list) else [{"role": role, "content": value}]


def layout(columns) -> str:
    cols = set(columns)
    for name, needed in (("messages", {"messages"}), ("prompt_completion", {"prompt", "completion"}),
                         ("alpaca", {"instruction", "output"}), ("sharegpt", {"conversations"})):
        if needed <= cols:
            return name
    raise LadderError("unrecognised chat data layout (columns: " + ", ".join(sorted(cols)) +
                      "); expected messages, prompt/completion, instruction/input/output or conversations")


def row_to_messages(row: dict, kind: str) -> list[dict]:
    if kind == "messages":
        return row["messages"]
    if kind == "prompt_completion":
        return _as_messages(row["prompt"], "user") + _as_messages(row["completion"], "assistant")
    if kind == "alpaca":
        user = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
        return [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]
    return [{"role": SHAREGPT_ROLES.get(t.get("from"), t.get("from")), "content": t.get("value")}
            for t in row["conversations"]]


def check_messages(messages, where: str) -> None:
    """A chat is a non-empty list of {role, content} turns with text content and an assistant turn."""
    if not isinstance(messages, list):
        raise LadderError(f"{where}: messages must be a list of {{role, content}}, got {type(messages).__name__}")
    if not messages:
        raise LadderError(f"{where}: empty messages")
    for j, m in enumerate(messages):
        if not isinstance(m, dict):
            raise LadderError(f"{where}: each message must be a {{role, content}} mapping, got "
                              f"{type(m).__name__} {str(m)[:40]!r} (turn {j})")
        if m.get("role") not in ROLES:
            raise LadderError(f"{where}: role {m.get('role')!r} is not one of system, user, assistant, tool "
                              f"(turn {j})")
        content = m.get("content")
        if m.get("tool_calls"):  # a turn that only calls a tool may say nothing
            check_tool_calls(m["tool_calls"], f"{where} (turn {j})")
            content = content or "-"
        if content is None or (isinstance(content, str) and not content.strip()):
            raise LadderError(f"{where}: an empty {m['role']} message (turn {j})")
        if not isinstance(content, str):
            raise LadderError(f"{where}: {m['role']} content must be text, got {type(content).__name__} (turn {j})")
    if not any(m["role"] == "assistant" for m in messages):
        raise LadderError(f"{where}: no assistant turn to learn from")


def check_tool_calls(calls, where: str) -> None:
    """Each call as chat templates read it: {"type": "function", "function": {"name", "arguments": {...}}}."""
    for call in calls if isinstance(calls, list) else [calls]:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not function.get("name") or \
                not isinstance(function.get("arguments"), dict):
            raise LadderError(f"{where}: a tool call must be {{\"type\": \"function\", \"function\": "
                              f"{{\"name\": ..., \"arguments\": {{...}}}}}}, got {str(call)[:80]}")


def tool_names_called(messages: list[dict]) -> set[str]:
    return {c["function"]["name"] for m in messages for c in m.get("tool_calls") or []}


def without_arrow_nones(call: dict) -> dict:
    """A tool call without None arguments. Arrow stores a column of calls to different tools as one
    struct, so a hub dataset's call to `calculator` comes back with `code: None` from the python tool's
    calls, and the model must not learn to pass it. (ladder's own JSON files load with datasets' Json
    type, which keeps each call as written.)"""
    fn = call["function"]
    return {**call, "function": {**fn, "arguments": {k: v for k, v in fn["arguments"].items() if v is not None}}}


def turn(m: dict) -> dict:
    """A message as the chat template reads it: role and content, and a tool call's or result's fields."""
    out = {"role": m["role"], "content": m["content"] or ""}
    if m.get("tool_calls"):
        calls = m["tool_calls"] if isinstance(m["tool_calls"], list) else [m["tool_calls"]]
        out["tool_calls"] = [without_arrow_nones(c) for c in calls]
    if m["role"] == "tool" and m.get("name"):
        out["name"] = m["name"]
    return out


def to_messages(ds, where: str):
    """A dataset with one `messages` column (other columns dropped), every row checked."""
    try:
        kind = layout(ds.column_names)
    except LadderError as e:
        raise LadderError(f"{where}: {e}") from None
    rows = []
    for i, row in enumerate(ds):
        # the row is named only once it is bad (row_at may read the file to find its line): check_messages
        # puts its `where` first, so given "" its message starts ": ..." or " (turn j): ..."
        try:
            messages = row_to_messages(row, kind)
            check_messages(messages, "")
        except (KeyError, TypeError, AttributeError) as e:
            raise LadderError(f"{row_at(where, i)}: malformed {kind} row ({e})") from None
        except LadderError as e:
            raise LadderError(f"{row_at(where, i)}{e}") from None
        rows.append({"messages": [turn(m) for m in messages]})
    from datasets import Dataset

    return Dataset.from_list(rows, on_mixed_types="use_json")  # each call's arguments kept as written


def prompt_of(messages: list[dict]) -> list[dict]:
    """The turns before the first assistant answer: what the model reads before it first speaks."""
    first = next(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return messages[:first]


def check_tools_offered(ds, offered: list[str], where: str) -> None:
    """A chat that calls a tool the recipe does not offer would teach calls no rollout can answer."""
    for i, messages in enumerate(ds["messages"]):
        missing = tool_names_called(messages) - set(offered)
        if missing:
            hint = f"offered: {', '.join(offered)}" if offered else "the recipe offers none: add `tools:`"
            raise LadderError(f"{row_at(where, i)}: calls tool '{sorted(missing)[0]}' ({hint})")


def check_lengths(ds, tokenizer, max_length: int | None, where: str, tools: list | None = None) -> None:
    """A prompt as long as max_length leaves no assistant token after truncation, so nothing to
    learn (TRL would silently drop the row): refuse it, naming the row."""
    if not max_length:
        return
    texts = [tokenizer.apply_chat_template(prompt_of(m), tools=tools or None, tokenize=False,
                                           add_generation_prompt=True)
             if prompt_of(m) else "" for m in ds["messages"]]
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    for i, n in enumerate(lengths):
        if n >= max_length:
            raise LadderError(f"{row_at(where, i)}: prompt is {n} tokens, not shorter than max_length={max_length}")


def to_prompt_completion(ds):
    """messages -> conversational prompt/completion (the last assistant turn is the completion).

    For chat templates without `{% generation %}` markers that TRL cannot patch: TRL's
    completion-only loss then still trains on the answer alone (earlier assistant turns become context)."""
    def split(row):
        last = max(i for i, m in enumerate(row["messages"]) if m["role"] == "assistant")
        return {"prompt": row["messages"][:last], "completion": row["messages"][last:last + 1]}

    return ds.map(split, remove_columns=["messages"])

"""Getting at a completion's text and its final answer."""

from __future__ import annotations

import re

ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?")  # 1,000 stays one number


def completion_text(completion) -> str:
    """A completion as TRL passes it: a string, or a list of chat messages, whose answer is the content of
    the last *assistant* message. With tools, a completion is [assistant call, tool result, assistant, ...];
    a rollout cut after a tool result ends on the tool's message, and that text is the tool's, not the
    model's: scored as the answer, calling the calculator and stopping would be rewarded as right."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        for message in reversed(completion):
            if not isinstance(message, dict):
                return str(message)
            if message.get("role", "assistant") == "assistant":
                return content_text(message.get("content"))
    return ""


def content_text(content) -> str:
    """A message's content as text: a string as it is, a list of content parts ([{"type": "text", "text": ...}],
    the multimodal chat format, and Gradio's chat history) as its text parts joined, None as ""."""
    if isinstance(content, str):
        return content
    return "".join(str(part.get("text") or "") if isinstance(part, dict) else str(part) for part in content or [])


def written_text(completion) -> str:
    """Everything the model wrote in a completion: with tools, every assistant turn (its calls' arguments
    too), never a tool's output. What a length counts: the last message alone would let a policy move its
    words into the turn before a call."""
    if not isinstance(completion, list):
        return completion_text(completion)
    parts = []
    for m in completion:
        if isinstance(m, dict) and m.get("role", "assistant") == "assistant":
            parts.append(content_text(m.get("content")))
            parts += [str((c.get("function") or {}).get("arguments", "")) for c in m.get("tool_calls") or []]
    return "".join(parts)


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...}, with nested braces balanced."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed{")
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            if depth == 0:
                return text[i:j]
            depth -= 1
    return None


def answer_blocks(text: str) -> list[str]:
    """The <answer>...</answer> blocks' contents, in order. Only the text up to the last closing tag is
    searched: with an opening tag repeated after it and never closed, the search from each one ran to the end
    of the text, quadratic (a 64 KB completion of "<answer>" took 1.7 s a reward, 256 KB 27 s)."""
    end = text.rfind("</answer>")
    return ANSWER.findall(text, 0, end + len("</answer>")) if end >= 0 else []


def extract_answer(text: str) -> str | None:
    """The final answer: the last <answer> block, else the last \\boxed{}, else the last number."""
    blocks = answer_blocks(text)
    if blocks:
        return blocks[-1].strip()
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    numbers = NUMBER.findall(text)
    return numbers[-1] if numbers else None

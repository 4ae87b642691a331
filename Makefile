# The two commands a new user needs: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := assets/sintel_trailer_480x204.mp4

.PHONY: demo test lint bench clean browser melt docker

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/scenecut segment $(DEMO) --save-clips --format json,csv -o out --overwrite

lint: $(STAMP)
	$(BIN)/ruff format --check scenecut tests bench
	$(BIN)/ruff check scenecut tests bench
	$(BIN)/hadolint Dockerfile

# The CPU image, where a Docker engine answers (no engine on this project's machines: the
# Dockerfile is linted by `make lint` instead).
docker:
	@if docker info >/dev/null 2>&1; then docker build -t scenecut . && docker run --rm scenecut --version; \
	else echo "no Docker engine here: the image was not built (make lint checks the Dockerfile)"; fi

# The HTML report is tested in a real headless Chromium (Debian's package): installed here when
# absent and apt-get is usable; otherwise those tests skip and say why.
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] \
		&& (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium not installed: the HTML report browser tests will be skipped"; }

# The MLT export is rendered by MLT's own player, Debian's melt, installed the same way.
melt:
	@command -v melt >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] \
		&& (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq melt >/dev/null) \
		|| echo "melt not installed: the MLT rendering tests will be skipped"; }

# Two or more test processes (one per core); each runs one compute thread (tests/conftest.py).
# worksteal: an idle process takes queued tests from a busy one, so the long tests do not
# leave one core idle at the end (285 s against 306-323 s for the default distribution here).
test: lint browser melt
	$(BIN)/python -m pytest -q -n auto --dist worksteal

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache

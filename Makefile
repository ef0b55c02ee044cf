# Atelier: `make run` (the main job on the local stack) and `make test` set themselves up on first use.
PYTHON   ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
OV_VENV  := .venv-ov
SAM_VENV := .tools/sam
SAM      := $(SAM_VENV)/bin/sam
export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: run test setup native lint typecheck validate build unit adapters test-build integration golden e2e bench look \
	clean sam-invoke docker image-anime image-worker run-image-anime run-image-worker

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# The SAM CLI pins its own boto3/botocore; it lives in a virtualenv of its own.
$(SAM_VENV)/.installed:
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check 'aws-sam-cli==1.170.0'
	touch $@

# The anime container image's Python packages (ONNX Runtime with its OpenVINO provider), for the tests of
# that execution path; it cannot share .venv, whose onnxruntime is the CPU-only build.
$(OV_VENV)/.installed: infra/anime-image/requirements.txt layers/deps/requirements.txt
	test -x $(OV_VENV)/bin/python || $(PYTHON) -m venv $(OV_VENV)
	$(OV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r infra/anime-image/requirements.txt
	touch $@

# Debian packages are installed waiting up to five minutes for an apt/dpkg lock another job holds.
APT := DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300

# Debian's Chromium for the browser tests (Playwright drives it; nothing is downloaded at test time).
/usr/bin/chromium:
	$(APT) update -qq && $(APT) install -y -qq chromium >/dev/null

# Debian's Docker daemon, debootstrap and patchelf, for `sam local` and the container images in the build tier:
# the tests start a daemon of their own (atelier_dev.local.containers) and, where no registry serves a base
# image, build a stand-in for it from Debian packages. Installing them needs root, as the daemon does.
/usr/sbin/dockerd:
	$(APT) update -qq && $(APT) install -y -qq docker.io debootstrap patchelf >/dev/null

# Debian's G'MIC, only for the comparison column of `make look` (never a dependency of the product).
/usr/bin/gmic:
	$(APT) update -qq && $(APT) install -y -qq gmic >/dev/null

# The compiled pHash kernel, next to atelier/phash.py (the editable install finds it there).
native:
	$(MAKE) -C layers/core native

# axe-core from the npm registry, for the browser tests' accessibility checks (injected into the page).
AXE := tests/e2e/node_modules/axe-core/axe.min.js
$(AXE): tests/e2e/package.json tests/e2e/package-lock.json
	npm ci --prefix tests/e2e --no-audit --no-fund --loglevel=error
	touch $@

setup: $(VENV)/.installed $(SAM_VENV)/.installed $(OV_VENV)/.installed /usr/bin/chromium /usr/sbin/dockerd native \
	$(AXE)

run: $(VENV)/.installed native
	$(BIN)/atelier demo samples/astronaut.jpg samples/chelsea.jpg samples/coffee.png samples/rocket.webp --out out

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed
	$(BIN)/mypy

validate: setup
	$(BIN)/cfn-lint template.yaml infra/gpu-worker/template.yaml
	$(SAM) validate --lint --template template.yaml

# Lambda artifacts for python3.12 / manylinux x86_64, built with pip (no Docker): the Makefiles in
# layers/core, layers/deps and functions hold the build-<LogicalId> targets.
build: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(SAM) build --template template.yaml --build-dir .aws-sam/build
	# what the python3.12 Lambda runtime itself provides, so tests can import the artifacts as Lambda does
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade --no-compile \
		--target .aws-sam/runtime --python-version 3.12 --only-binary=:all: boto3==1.40.4

# The tiers of tests/, one target each (README, Tests); `pytest -m "not slow"` is the quick loop of any of them.
# Pure tests: no AWS mock, server, build artefact or second virtualenv.
unit: $(VENV)/.installed native
	$(BIN)/pytest tests/unit

# The AWS adapters, handlers and API against moto's in-process mock of the template's resources.
adapters: $(VENV)/.installed native
	$(BIN)/pytest tests/adapters

# What `sam build` makes, imported as Lambda does and run by `sam local` in Docker; both container images
# built and run in Docker; the anime image's OpenVINO path in .venv-ov.
test-build: build native /usr/sbin/dockerd
	$(BIN)/pytest tests/build

# `sam local invoke` of one function against a local stack in LOCAL_DIR (started, listening for containers,
# when none runs there): make sam-invoke FN=SketchFunction EVENT=events/sketch.json. On a laptop with
# Docker, SAM pulls the real Lambda image; where no registry is reachable, SAM_LOCAL_FLAGS=--skip-pull-image
# takes the stand-in the build tier builds. Upload the event's photo first (events/README.md).
LOCAL_DIR       ?= .atelier/local
FN              ?= SketchFunction
EVENT           ?= events/sketch.json
SAM_LOCAL_FLAGS ?=
sam-invoke: build
	$(BIN)/atelier local status --dir $(LOCAL_DIR) >/dev/null 2>&1 || \
		$(BIN)/atelier local up --dir $(LOCAL_DIR) --listen 0.0.0.0
	$(BIN)/atelier local sam-env --dir $(LOCAL_DIR) > $(LOCAL_DIR)/sam-env.json
	eval "$$($(BIN)/atelier local status --dir $(LOCAL_DIR) --env)" && \
		$(SAM) local invoke $(FN) -t .aws-sam/build/template.yaml -e $(EVENT) --env-vars $(LOCAL_DIR)/sam-env.json \
		$(SAM_LOCAL_FLAGS)

# The container images (README, "The container images"), built from their Dockerfiles with the repository as
# context; `make docker` first where no daemon runs (it starts this machine's own, as root). The run targets
# use a stack in LOCAL_DIR that listens for containers: the anime image's RIE on 127.0.0.1:9000 (the stack
# then has no runner: the image's are the only renders), the worker until its queue is empty (the stack's
# runner then has no worker of its own). WORKER_MODELS: build/models or infra/gpu-worker/models (what the
# build context lets in) with edsr_baseline_x{2,3,4}[.fp16].onnx; by default the untrained dev x2 model.
WORKER_MODELS ?=
docker: $(VENV)/.installed /usr/sbin/dockerd
	$(BIN)/atelier local docker

image-anime: $(VENV)/.installed
	$(BIN)/atelier local image build anime --dir $(LOCAL_DIR)

image-worker: $(VENV)/.installed
	$(BIN)/atelier local image build worker --dir $(LOCAL_DIR) $(if $(WORKER_MODELS),--models $(WORKER_MODELS))

run-image-anime: image-anime
	$(BIN)/atelier local status --dir $(LOCAL_DIR) >/dev/null 2>&1 || \
		$(BIN)/atelier local up --dir $(LOCAL_DIR) --listen 0.0.0.0 --no-runner
	$(BIN)/atelier local image run anime --dir $(LOCAL_DIR)

run-image-worker: image-worker
	$(BIN)/atelier local status --dir $(LOCAL_DIR) >/dev/null 2>&1 || \
		$(BIN)/atelier local up --dir $(LOCAL_DIR) --listen 0.0.0.0 --no-worker
	$(BIN)/atelier local image run worker --dir $(LOCAL_DIR) --until-idle

# The local stack's real servers on loopback (SeaweedFS, moto's server, the dispatcher) over HTTP.
integration: $(VENV)/.installed native
	$(BIN)/pytest tests/integration

# The styles' renders against the expected images, by a perceptual measure.
golden: $(VENV)/.installed native
	$(BIN)/pytest tests/golden

# The gallery in Debian's headless Chromium on the local stack, with axe-core's checks.
e2e: $(VENV)/.installed native /usr/bin/chromium $(AXE)
	$(BIN)/pytest tests/e2e

test: setup lint typecheck validate build
	$(BIN)/pytest

bench: $(VENV)/.installed native
	$(BIN)/python bench/npr.py --quick

# Contact sheets of the styles beside OpenCV's and G'MIC's, into out/look/ (bench/look.py).
look: $(VENV)/.installed native /usr/bin/gmic
	$(BIN)/python bench/look.py

clean:
	rm -rf .aws-sam out .pytest_cache .mypy_cache .ruff_cache

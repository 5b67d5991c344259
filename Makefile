# stirpipe: offline image retrieval with STIR reranking, as Apache Beam jobs in Go.
# `make demo` runs the whole job on a generated catalog; `make test` runs every test.

GO        ?= go
ORT_DIR   := .local/onnxruntime
ORT_LIB   := $(ORT_DIR)/libonnxruntime.so.1.31.1
DUCKDB    := schemas/embeddings/testdata/duckdb
BIN       := bin/stir
DEMO      := out/demo
BENCH     := out/bench

export STIR_ONNXRUNTIME_LIB ?= $(CURDIR)/$(ORT_LIB)

.PHONY: all build worker layout image image-gpu image-flex ort duckdb demo test vet fmt bench bench-launcher bench-resume vits16 clean

all: build

## ort: install the ONNX Runtime 1.31.1 shared library from the npm registry (idempotent)
ort: $(ORT_LIB)
$(ORT_LIB): launch/setup/install-onnxruntime.sh
	bash launch/setup/install-onnxruntime.sh $(ORT_DIR)

## duckdb: install DuckDB for Node, the independent Parquet reader of the tests
duckdb: $(DUCKDB)/node_modules/.package-lock.json
$(DUCKDB)/node_modules/.package-lock.json: $(DUCKDB)/package.json $(DUCKDB)/package-lock.json
	npm ci --prefix $(DUCKDB) --no-audit --no-fund --loglevel=error

## build: the stir program (every job, and the Beam worker)
build:
	$(GO) build -o $(BIN) ./launch/stir

## worker: the stir worker for remote runners' workers: linux/amd64, cgo, glibc ≤ 2.36 (Debian
## bookworm's). Built here on such a machine, otherwise in the worker image's build stage.
WORKER := bin/linux_amd64/stir
GLIBC  := $(shell ldd --version 2>/dev/null | head -1 | grep -o '[0-9]*\.[0-9]*$$')
worker:
	@if [ "$$(uname -s)/$$(uname -m)" = Linux/x86_64 ] && [ -n "$(GLIBC)" ] && \
	    [ "$$(printf '%s\n' "$(GLIBC)" 2.36 | sort -V | tail -1)" = 2.36 ]; then \
		echo "CGO_ENABLED=1 GOOS=linux GOARCH=amd64 $(GO) build -ldflags='-s -w' -o $(WORKER) ./launch/stir"; \
		CGO_ENABLED=1 GOOS=linux GOARCH=amd64 $(GO) build -ldflags='-s -w' -o $(WORKER) ./launch/stir; \
	else \
		echo "this machine is not linux/amd64 with glibc ≤ 2.36: building the worker in the container's build stage"; \
		docker build -f launch/container/Dockerfile --target worker-binary --output bin/linux_amd64 .; \
	fi

## layout: the cpu worker image's filesystem in out/layout, without Docker (what the tests run)
layout:
	bash launch/container/layout.sh out/layout

## image, image-gpu, image-flex: the worker images and the Flex Template launcher (need Docker;
## IMAGE=registry/path:tag, and for the GPU image ORT_GPU_SHA256, see launch/container/Dockerfile)
IMAGE ?= stir-worker:dev
image:
	docker build -f launch/container/Dockerfile --target cpu -t $(IMAGE) .
image-gpu:
	docker build -f launch/container/Dockerfile --target gpu --build-arg ORT_GPU_SHA256=$(ORT_GPU_SHA256) -t $(IMAGE)-gpu .
image-flex:
	docker build -f launch/container/Dockerfile --target flex -t $(IMAGE)-flex .

# The catalog the shipped stir-tiny models were trained on (models/zoo/stir-tiny/TRAINING.md):
# the demo scores its held-out validation products; 4 extra broken files exercise rejects.
DEMO_CATALOG := --products 400 --views_min 3 --views_max 6 --size 224 --validation_fraction 0.4 \
	--box_fraction 0.2 --sequence_fraction 0.2 --png_fraction 0.1 --seed 2304 --bad_files 4

## demo: generate the catalog and run the whole job (embed, neighbours, STIR rerank, evaluate) on prism
demo: ort build
	$(BIN) synth --out $(DEMO)/catalog $(DEMO_CATALOG)
	$(BIN) run --catalog $(DEMO)/catalog/catalog.csv --output $(DEMO)/run

## test: vet and every test (real ONNX Runtime, prism, fake-gcs-server, DuckDB)
test: ort duckdb
	$(GO) vet ./...
	STIR_REQUIRE_DUCKDB=1 $(GO) test -count=1 ./...

fmt:
	gofmt -l -w $$(git ls-files '*.go')

## bench: embed pipeline vs a plain ONNX Runtime loop on ViT-S/16 (needs `make vits16`), then
## exact k-NN vs FAISS at SOP scale and the neighbours stage's peak RSS (needs python3-faiss),
## then the STIR rerank stage's pairs/s vs a plain loop on the same pairs (ViT-S/16 pairwise),
## then a refresh of a 22,000-row catalog with 1 % of its rows changed against a full run on it
## (stir-tiny models, the whole job), then the launcher's cost against catalog size (bench-launcher)
bench: ort vits16 bench-launcher
	$(GO) run ./launch/bench embed --model models/zoo/vits16/embedder.json --images 512 --size 500 --work $(BENCH)
	$(GO) run ./launch/bench neighbors --work $(BENCH)
	$(GO) run ./launch/bench rerank --pair_model models/zoo/vits16/pairwise.json --embed_model models/zoo/vits16/embedder.json \
		--images 160 --size 500 --top_n 5 --pair_batch 10 --work $(BENCH)
	$(GO) run ./launch/bench refresh --products 5000 --reps 3 --work $(BENCH)
	$(MAKE) bench-resume

## bench-resume: a run of the demo catalog killed at 60 % of its wall time, then rerun on the
## same output: what the rerun costs, and that it writes the unbroken run's files (needs jq, bc)
bench-resume: ort build
	test -f $(DEMO)/catalog/catalog.csv || $(BIN) synth --out $(DEMO)/catalog $(DEMO_CATALOG)
	bash launch/bench/resume.sh $(BIN) $(DEMO)/catalog/catalog.csv $(BENCH)/resume 0.6

## bench-launcher: seconds and peak RSS of `stir embed` until it starts the job and until its
## first image, on 20,000 and 200,000 rows (the demo catalog repeated); needs inotify-tools
bench-launcher: ort build
	test -f $(DEMO)/catalog/catalog.csv || $(BIN) synth --out $(DEMO)/catalog $(DEMO_CATALOG)
	bash launch/bench/launcher.sh $(BIN) $(DEMO)/catalog 3

## vits16: export the real ViT-S/16 embedder and STIR graphs (≈ 87 MB each, random weights,
## not committed; needs Debian's python3-torch and python3-onnx)
vits16: models/zoo/vits16/embedder.onnx models/zoo/vits16/pairwise.onnx
models/zoo/vits16/embedder.onnx:
	/usr/bin/python3 models/recipe/export.py --config vits16 --out models/zoo/vits16
models/zoo/vits16/pairwise.onnx:
	/usr/bin/python3 models/recipe/export.py --kind pairwise --config vits16 --out models/zoo/vits16

clean:
	rm -rf bin out

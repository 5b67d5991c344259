# stirpipe: offline image retrieval with STIR reranking, as Apache Beam jobs in Go.
# `make demo` runs the whole job on a generated catalog; `make test` runs every test.

GO        ?= go
ORT_DIR   := .local/onnxruntime
ORT_LIB   := $(ORT_DIR)/libonnxruntime.so.1.24.1
DUCKDB    := schemas/embeddings/testdata/duckdb
BIN       := bin/stir
DEMO      := out/demo
BENCH     := out/bench

export STIR_ONNXRUNTIME_LIB ?= $(CURDIR)/$(ORT_LIB)

.PHONY: all build ort duckdb demo test vet fmt bench vits16 clean

all: build

## ort: install the ONNX Runtime 1.24.1 shared library from the npm registry (idempotent)
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
## then the STIR rerank stage's pairs/s vs a plain loop on the same pairs (ViT-S/16 pairwise)
bench: ort vits16
	$(GO) run ./launch/bench embed --model models/zoo/vits16/embedder.json --images 512 --size 500 --work $(BENCH)
	$(GO) run ./launch/bench neighbors --work $(BENCH)
	$(GO) run ./launch/bench rerank --pair_model models/zoo/vits16/pairwise.json --embed_model models/zoo/vits16/embedder.json \
		--images 160 --size 500 --top_n 5 --pair_batch 10 --work $(BENCH)

## vits16: export the real ViT-S/16 embedder and STIR graphs (≈ 87 MB each, random weights,
## not committed; needs Debian's python3-torch and python3-onnx)
vits16: models/zoo/vits16/embedder.onnx models/zoo/vits16/pairwise.onnx
models/zoo/vits16/embedder.onnx:
	/usr/bin/python3 models/recipe/export.py --config vits16 --out models/zoo/vits16
models/zoo/vits16/pairwise.onnx:
	/usr/bin/python3 models/recipe/export.py --kind pairwise --config vits16 --out models/zoo/vits16

clean:
	rm -rf bin out

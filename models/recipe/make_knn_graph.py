#!/usr/bin/python3
"""Builds the ONNX graphs of models/knn, the exact k-NN engine.

Dev-time only: run with Debian's /usr/bin/python3 (python3-onnx):

    /usr/bin/python3 models/recipe/make_knn_graph.py [OUT_DIR]

OUT_DIR defaults to models/knn/graphs. The output is deterministic (no weights, fixed
producer fields), so re-running it leaves the committed files unchanged. Every dimension is
symbolic: "q" query rows, "g" gallery rows, "d" the embedding dimension.

  scores.onnx   queries float32 [q,d], gallery float32 [g,d]
                -> scores float32 [q,g] = queries · galleryᵀ   (one Gemm, transB = 1)
                The engine's graph (compiled into models/knn with go:embed): ONNX Runtime's
                MLAS GEMM (AVX-512 where the CPU has it, cuBLAS under the CUDA provider)
                computes inner products; models/knn selects the top k in Go behind a
                threshold test, applies exclusions and settles distances exactly.
  topk.onnx     queries [q,d], gallery [g,d], k int64 [1]
                -> values float32 [q,k], indices int64 [q,k] = TopK(largest, sorted)(scores)
                Kept to measure the alternative that selects inside ONNX Runtime
                (models/knn/engine_bench_test.go, BenchmarkTopKGraph); the engine does not
                use it.
"""
import os
import sys

import onnx
from onnx import TensorProto, helper

OPSET = 13
IR_VERSION = 8


def model(name, nodes, inputs, outputs, doc):
    graph = helper.make_graph(nodes, name, inputs, outputs)
    m = helper.make_model(
        graph,
        producer_name="stirpipe make_knn_graph.py",
        producer_version="1",
        opset_imports=[helper.make_opsetid("", OPSET)],
        doc_string=doc,
    )
    m.ir_version = IR_VERSION
    onnx.checker.check_model(m, full_check=True)
    return m


def vectors():
    return [
        helper.make_tensor_value_info("queries", TensorProto.FLOAT, ["q", "d"]),
        helper.make_tensor_value_info("gallery", TensorProto.FLOAT, ["g", "d"]),
    ]


def gemm():
    return helper.make_node("Gemm", ["queries", "gallery"], ["scores"], transB=1)


def scores_graph():
    return model(
        "knn_scores",
        [gemm()],
        vectors(),
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["q", "g"])],
        "Inner products of every query row with every gallery row (models/knn).",
    )


def topk_graph():
    nodes = [
        gemm(),
        helper.make_node("TopK", ["scores", "k"], ["values", "indices"], axis=1, largest=1, sorted=1),
    ]
    inputs = vectors() + [helper.make_tensor_value_info("k", TensorProto.INT64, [1])]
    outputs = [
        helper.make_tensor_value_info("values", TensorProto.FLOAT, ["q", "k_out"]),
        helper.make_tensor_value_info("indices", TensorProto.INT64, ["q", "k_out"]),
    ]
    return model("knn_topk", nodes, inputs, outputs,
                 "Largest k inner products per query row (models/knn measurement only).")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "knn", "graphs")
    os.makedirs(out, exist_ok=True)
    graphs = {"scores.onnx": scores_graph(), "topk.onnx": topk_graph()}
    for name, m in graphs.items():
        onnx.save(m, os.path.join(out, name))
    print("wrote %d graphs to %s" % (len(graphs), os.path.normpath(out)))


if __name__ == "__main__":
    main()

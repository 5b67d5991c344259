#!/usr/bin/python3
"""Builds the tiny ONNX test graphs used by models/ort and models/imagemodel tests.

Dev-time only: run with Debian's /usr/bin/python3 (python3-onnx, python3-numpy):

    /usr/bin/python3 models/recipe/make_ort_fixtures.py [OUT_DIR]

OUT_DIR defaults to models/ort/testdata. The output is deterministic (fixed seed, fixed
producer fields), so re-running it leaves committed fixtures unchanged.

Graphs (float32 unless stated; "batch", "h", "w" are symbolic dims):
  gap8.onnx            images [batch,3,16,16] -> GlobalAveragePool -> Flatten -> MatMul W[3,8]
                       -> Add b[8] = features [batch,8]; embeddings = features / max(||features||, 1e-12)
  fixed_batch2.onnx    the same graph with a fixed batch of 2: images [2,3,16,16] -> embeddings [2,8]
  dynamic_spatial.onnx the same graph with symbolic spatial dims: images [batch,3,h,w]
  bad_shapes.onnx      images [2,1,20,24] -> embeddings [2,5]   (wrong channels, size and dim)
  bad_rank_type.onnx   images float64 [batch,16,16] -> embeddings float32 [batch,16,16] (Cast)
Also written: gap8.weights.json (W and b, so Go tests compute expected outputs on their own)
and gap8.json, the model manifest of gap8.onnx (see models/manifest).
"""
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
IR_VERSION = 8
CROP = 16
DIM = 8


def weights():
    rng = np.random.RandomState(20240521)
    w = rng.normal(0.0, 1.0, size=(3, DIM)).astype(np.float32)
    b = rng.normal(0.0, 0.1, size=(DIM,)).astype(np.float32)
    return w, b


def model(name, nodes, inputs, outputs, inits=()):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(inits))
    m = helper.make_model(
        graph,
        producer_name="stirpipe make_ort_fixtures.py",
        producer_version="1",
        opset_imports=[helper.make_opsetid("", OPSET)],
    )
    m.ir_version = IR_VERSION
    onnx.checker.check_model(m)
    return m


def gap_linear(name, in_shape, out_batch, w, b, with_features=True):
    """GlobalAveragePool -> Flatten -> MatMul -> Add, then L2 normalisation."""
    dim = w.shape[1]
    nodes = [
        helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "W"], ["projected"]),
        helper.make_node("Add", ["projected", "b"], ["features"]),
        helper.make_node("ReduceL2", ["features"], ["norm"], axes=[1], keepdims=1),
        helper.make_node("Max", ["norm", "eps"], ["safe_norm"]),
        helper.make_node("Div", ["features", "safe_norm"], ["embeddings"]),
    ]
    inits = [
        numpy_helper.from_array(w, "W"),
        numpy_helper.from_array(b, "b"),
        numpy_helper.from_array(np.array([1e-12], dtype=np.float32), "eps"),
    ]
    outputs = [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, [out_batch, dim])]
    if with_features:
        outputs.append(helper.make_tensor_value_info("features", TensorProto.FLOAT, [out_batch, dim]))
    inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT, in_shape)]
    return model(name, nodes, inputs, outputs, inits)


def bad_rank_type():
    nodes = [helper.make_node("Cast", ["images"], ["embeddings"], to=TensorProto.FLOAT)]
    inputs = [helper.make_tensor_value_info("images", TensorProto.DOUBLE, ["batch", CROP, CROP])]
    outputs = [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", CROP, CROP])]
    return model("bad_rank_type", nodes, inputs, outputs)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "ort", "testdata")
    os.makedirs(out, exist_ok=True)
    w, b = weights()
    rng = np.random.RandomState(5)
    w5 = rng.normal(0.0, 1.0, size=(1, 5)).astype(np.float32)
    b5 = np.zeros((5,), dtype=np.float32)
    graphs = {
        "gap8.onnx": gap_linear("gap8", ["batch", 3, CROP, CROP], "batch", w, b),
        "fixed_batch2.onnx": gap_linear("fixed_batch2", [2, 3, CROP, CROP], 2, w, b, with_features=False),
        "dynamic_spatial.onnx": gap_linear("dynamic_spatial", ["batch", 3, "h", "w"], "batch", w, b, with_features=False),
        "bad_shapes.onnx": gap_linear("bad_shapes", [2, 1, 20, 24], 2, w5, b5, with_features=False),
        "bad_rank_type.onnx": bad_rank_type(),
    }
    for name, m in graphs.items():
        onnx.save(m, os.path.join(out, name))
    with open(os.path.join(out, "gap8.weights.json"), "w") as f:
        json.dump({"crop_size": CROP, "dim": DIM,
                   "w": [[float(v) for v in row] for row in w],
                   "b": [float(v) for v in b]}, f, indent=1)
        f.write("\n")
    manifest = {
        "name": "gap8-fixture",
        "kind": "embedder",
        "model": "gap8.onnx",
        "inputs": ["images"],
        "output": "embeddings",
        "dim": DIM,
        "normalized": True,
        "distance": "euclidean",
        "preprocess": {
            "resize": "shorter_side",
            "resize_to": CROP,
            "filter": "bicubic",
            "crop_size": CROP,
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
        },
    }
    with open(os.path.join(out, "gap8.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print("wrote %d graphs to %s" % (len(graphs), os.path.normpath(out)))


if __name__ == "__main__":
    main()

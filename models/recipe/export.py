"""Exports a ViT embedder (vit.py) to ONNX with its manifest (models/manifest/manifest.go).

    /usr/bin/python3 models/recipe/export.py --config tiny --out models/zoo/vit-tiny
    /usr/bin/python3 models/recipe/export.py --config vits16 --out models/zoo/vits16 \\
        --checkpoint vits16_sop_21e743.ckpt

writes DIR/embedder.onnx (opset 17, input "images" float32 [batch,3,224,224], output
"embeddings" float32 [batch,dim], batch dynamic) and DIR/embedder.json. Without
--checkpoint the weights are random from --seed (the committed tiny model). The graph is
checked with onnx.checker; if the onnxruntime Python package is present its output is also
compared with torch's (the Go tests in models/zoo do that with the pipeline's own runtime).

Dev-time only (Debian python3-torch 1.13, torchvision 0.14, onnx 1.12); never run by the
pipeline.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import warnings
from typing import Dict, Optional

import onnx
import torch

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vit  # noqa: E402  (sibling module; the recipe is a directory of scripts, not a package)

OPSET = 17
INPUT = "images"
OUTPUT = "embeddings"
ONNX_NAME = "embedder.onnx"
MANIFEST_NAME = "embedder.json"

# Init scale of the random tiny model (trunc-normal std of every weight matrix, cls_token,
# pos_embed). Measured on the 109 images of the synthetic golden catalog (README.md): DINO's
# 0.02 makes an untrained 2-block ViT map everything alike (mean pairwise cosine 0.954, max
# 0.9999); 0.1 gives mean 0.855 while ±2/255 noise on every pixel keeps each image's cosine
# with itself ≥ 0.99994; 0.3 is chaotic (noise cosine ≈ 0.975).
RANDOM_INIT_STD = 0.1

# method.md §2, identical to manifest.ImageNet() in Go.
IMAGENET_PREPROCESS = {
    "resize": "shorter_side",
    "resize_to": 224,
    "filter": "bicubic",
    "crop_size": 224,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}


def sha256_file(path: str) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_model(config: str, seed: int, checkpoint: Optional[str], normalize: bool) -> vit.ViT:
    """The eval-mode model of a named configuration: random from `seed`, or a checkpoint."""
    cfg = vit.CONFIGS[config]
    if checkpoint:
        return vit.load_checkpoint(checkpoint, cfg, normalize=normalize)
    model = vit.ViT(cfg, normalize=normalize)
    vit.init_weights(model, seed=seed, std=RANDOM_INIT_STD)
    return model.eval()


def manifest(name: str, dim: int, normalize: bool, img_size: int) -> Dict[str, object]:
    """The manifest document; every field of manifest.Manifest and nothing else."""
    pre = dict(IMAGENET_PREPROCESS)
    pre["resize_to"] = img_size
    pre["crop_size"] = img_size
    return {
        "name": name,
        "kind": "embedder",
        "model": ONNX_NAME,
        "inputs": [INPUT],
        "output": OUTPUT,
        "dim": dim,
        "normalized": normalize,
        "distance": "euclidean",
        "preprocess": pre,
    }


def metadata(config: str, seed: int, checkpoint: Optional[str], normalize: bool) -> Dict[str, str]:
    """Provenance stored in the ONNX file's metadata_props."""
    return {
        "stir.recipe": "models/recipe/export.py",
        "stir.config": json.dumps({"name": config, **vit.config_dict(vit.CONFIGS[config])}, sort_keys=True),
        "stir.normalized": str(normalize).lower(),
        "stir.weights": (
            f"checkpoint sha256 {sha256_file(checkpoint)}"
            if checkpoint
            else f"random init, seed {seed}, trunc-normal std {RANDOM_INIT_STD}"
        ),
        "stir.torch": torch.__version__,
    }


def export(model: vit.ViT, onnx_path: str, metadata: Dict[str, str]) -> None:
    """Writes the ONNX graph. Autograd must stay enabled: torch 1.13's exporter only takes
    the traced attention path with grad mode on, so this is deliberately not in no_grad."""
    cfg = model.cfg
    dummy = torch.zeros(vit.input_shape(cfg, batch=2))
    with warnings.catch_warnings():
        # The input size is fixed by the graph signature, so the tracer's warnings about
        # shapes turned into constants (patch grid, pos_embed checks) are expected.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            model,
            dummy,
            onnx_path,
            opset_version=OPSET,
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
            do_constant_folding=True,
        )
    m = onnx.load(onnx_path)
    # The exporter leaves the embedding width symbolic (it follows a Div whose shape it
    # does not propagate); it is a constant of the graph, so state it.
    (out,) = m.graph.output
    width = out.type.tensor_type.shape.dim[1]
    width.Clear()
    width.dim_value = cfg.dim
    for k, v in sorted(metadata.items()):
        entry = m.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(m, onnx_path)


def check(onnx_path: str, model: vit.ViT) -> str:
    """Validates the saved graph and, when possible, its numbers. Returns a summary line."""
    m = onnx.load(onnx_path)
    onnx.checker.check_model(m, full_check=True)
    cfg = model.cfg
    ins = [(i.name, [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]) for i in m.graph.input]
    outs = [(o.name, [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]) for o in m.graph.output]
    want_in = [(INPUT, ["batch", cfg.in_chans, cfg.img_size, cfg.img_size])]
    want_out = [(OUTPUT, ["batch", cfg.dim])]
    if ins != want_in or outs != want_out:
        raise SystemExit(f"{onnx_path}: graph signature {ins} → {outs}, want {want_in} → {want_out}")
    try:
        import onnxruntime  # type: ignore
    except ImportError:
        return "onnx.checker ok; onnxruntime (Python) not installed: numbers are checked by `go test ./models/zoo`"
    x = torch.randn(vit.input_shape(cfg, batch=3), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(x).numpy()
    sess = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    got = sess.run([OUTPUT], {INPUT: x.numpy()})[0]
    diff = float(abs(got - want).max())
    if diff > 1e-4:
        raise SystemExit(f"{onnx_path}: onnxruntime differs from torch by {diff}")
    return f"onnx.checker ok; onnxruntime vs torch max abs diff {diff:.3g}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", choices=sorted(vit.CONFIGS), required=True)
    ap.add_argument("--out", required=True, help="output directory (created)")
    ap.add_argument("--checkpoint", help="OML/DINO checkpoint to load (default: random init)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random init")
    ap.add_argument("--name", help="manifest name (default vit-CONFIG-random or vit-CONFIG-<checkpoint stem>)")
    ap.add_argument(
        "--no-normalize",
        dest="normalize",
        action="store_false",
        help="output the raw CLS features (OML's vits16_inshop was evaluated this way); default x/‖x‖",
    )
    args = ap.parse_args(argv)

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    model = build_model(args.config, args.seed, args.checkpoint, args.normalize)
    cfg = model.cfg
    if args.name:
        name = args.name
    elif args.checkpoint:
        name = f"vit-{args.config}-{os.path.splitext(os.path.basename(args.checkpoint))[0]}"
    else:
        name = f"vit-{args.config}-random"

    os.makedirs(args.out, exist_ok=True)
    onnx_path = os.path.join(args.out, ONNX_NAME)
    export(model, onnx_path, metadata(args.config, args.seed, args.checkpoint, args.normalize))
    summary = check(onnx_path, model)

    man = manifest(name, cfg.dim, args.normalize, cfg.img_size)
    man_path = os.path.join(args.out, MANIFEST_NAME)
    with open(man_path, "w") as f:
        json.dump(man, f, indent=2)
        f.write("\n")

    print(f"{onnx_path}: {os.path.getsize(onnx_path)} bytes, sha256 {sha256_file(onnx_path)}")
    print(f"{man_path}: name {name}, dim {cfg.dim}, {vit.param_count(model)} parameters")
    print(summary)


if __name__ == "__main__":
    main()

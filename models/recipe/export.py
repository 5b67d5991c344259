"""Exports a ViT embedder (vit.py) or a STIR pairwise model (pairwise.py) to ONNX with its
manifest (models/manifest/manifest.go).

    /usr/bin/python3 models/recipe/export.py --config tiny --out models/zoo/vit-tiny
    /usr/bin/python3 models/recipe/export.py --config vits16 --out models/zoo/vits16 \\
        --checkpoint vits16_sop_21e743.ckpt
    /usr/bin/python3 models/recipe/export.py --kind pairwise --config vits16 --out models/zoo/vits16 \\
        [--checkpoint POSTPROCESSOR.ckpt]

--kind embedder (default) writes DIR/embedder.onnx (opset 17, input "images" float32
[batch,3,224,224], output "embeddings" float32 [batch,dim]) and DIR/embedder.json.
--kind pairwise writes DIR/pairwise.onnx (inputs "query" and "candidate", each float32
[batch,3,224,224]; the graph stacks them on the height axis itself; output "logits" float32
[batch,1], "the pair is different") and DIR/pairwise.json. The batch axis is dynamic.
Without --checkpoint the weights are random from --seed. The graph is checked with
onnx.checker; if the onnxruntime Python package is present its output is also compared with
torch's (the Go tests in models/zoo do that with the pipeline's own runtime).

Dev-time only (Debian python3-torch 1.13, torchvision 0.14, onnx 1.12); never run by the
pipeline.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import warnings
from typing import Dict, List, Optional, Tuple

import onnx
import torch

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pairwise  # noqa: E402  (sibling modules; the recipe is a directory of scripts, not a package)
import vit  # noqa: E402

OPSET = 17
EMBEDDER, PAIRWISE = "embedder", "pairwise"  # manifest kinds (models/manifest)
INPUT = "images"
OUTPUT = "embeddings"
ONNX_NAME = "embedder.onnx"
MANIFEST_NAME = "embedder.json"
PAIRWISE_INPUTS = ("query", "candidate")
PAIRWISE_OUTPUT = "logits"
PAIRWISE_ONNX_NAME = "pairwise.onnx"
PAIRWISE_MANIFEST_NAME = "pairwise.json"

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


def build_pairwise(
    config: str, seed: int, checkpoint: Optional[str], hidden: Optional[List[int]] = None
) -> pairwise.ConcatSiamese:
    """The eval-mode pairwise model of a named backbone configuration: random from `seed`
    (head widths `hidden`, default D/2), or a ConcatSiamese checkpoint (widths from the file)."""
    cfg = vit.CONFIGS[config]
    if checkpoint:
        return pairwise.load_checkpoint(checkpoint, cfg)
    return pairwise.random_model(cfg, seed, RANDOM_INIT_STD, hidden)


def file_names(kind: str) -> Tuple[str, str]:
    """(ONNX file, manifest file) of a model kind."""
    return (ONNX_NAME, MANIFEST_NAME) if kind == EMBEDDER else (PAIRWISE_ONNX_NAME, PAIRWISE_MANIFEST_NAME)


def manifest(name: str, dim: int, normalize: bool, img_size: int, kind: str = EMBEDDER) -> Dict[str, object]:
    """The manifest document; every field of manifest.Manifest and nothing else. A pairwise
    model outputs one unnormalised logit per pair, compared as sigmoid(logit)."""
    pre = dict(IMAGENET_PREPROCESS)
    pre["resize_to"] = img_size
    pre["crop_size"] = img_size
    pair = kind == PAIRWISE
    return {
        "name": name,
        "kind": kind,
        "model": file_names(kind)[0],
        "inputs": list(PAIRWISE_INPUTS) if pair else [INPUT],
        "output": PAIRWISE_OUTPUT if pair else OUTPUT,
        "dim": 1 if pair else dim,
        "normalized": False if pair else normalize,
        "distance": "sigmoid_logit" if pair else "euclidean",
        "preprocess": pre,
    }


def metadata(
    config: str, seed: int, checkpoint: Optional[str], normalize: bool, kind: str = EMBEDDER,
    hidden: Optional[List[int]] = None, prior: Optional[Tuple[str, float, float]] = None,
) -> Dict[str, str]:
    """Provenance stored in the ONNX file's metadata_props."""
    meta = {
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
    if kind == PAIRWISE:
        cfg = vit.CONFIGS[config]
        meta["stir.kind"] = PAIRWISE
        meta["stir.normalized"] = "false"
        meta["stir.pairwise"] = json.dumps(
            {
                "concat": "height, query on top",
                "input": [cfg.in_chans, 2 * cfg.img_size, cfg.img_size],
                "head_hidden": hidden if hidden is not None else pairwise.default_hidden(cfg),
                "logit": "pair is different; score = sigmoid(logit)",
            },
            sort_keys=True,
        )
    if prior:
        ckpt, scale, offset = prior
        meta["stir.prior"] = json.dumps(
            {
                "embedder": f"checkpoint sha256 {sha256_file(ckpt)}",
                "scale": scale,
                "offset": offset,
                "logit": "pairwise logit + scale * |E(query) - E(candidate)| + offset",
            },
            sort_keys=True,
        )
    return meta


def write_onnx(
    module: torch.nn.Module,
    dummies: Tuple[torch.Tensor, ...],
    onnx_path: str,
    inputs: List[str],
    output: str,
    width: int,
    metadata: Dict[str, str],
) -> None:
    """Traces `module` to ONNX with a dynamic batch axis on every input and the output, fixes
    the output's second dimension to `width` and stores `metadata` in metadata_props.

    Autograd must stay enabled: torch 1.13's exporter only takes the traced attention path
    with grad mode on, so this is deliberately not in no_grad."""
    with warnings.catch_warnings():
        # The input size is fixed by the graph signature, so the tracer's warnings about
        # shapes turned into constants (patch grid, pos_embed checks) are expected.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            dummies if len(dummies) > 1 else dummies[0],
            onnx_path,
            opset_version=OPSET,
            input_names=inputs,
            output_names=[output],
            dynamic_axes={**{name: {0: "batch"} for name in inputs}, output: {0: "batch"}},
            do_constant_folding=True,
        )
    m = onnx.load(onnx_path)
    # The exporter may leave the output width symbolic (e.g. after a Div whose shape it does
    # not propagate); it is a constant of the graph, so state it.
    (out,) = m.graph.output
    dim = out.type.tensor_type.shape.dim[1]
    dim.Clear()
    dim.dim_value = width
    for k, v in sorted(metadata.items()):
        entry = m.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(m, onnx_path)


def export(model: vit.ViT, onnx_path: str, metadata: Dict[str, str]) -> None:
    """Writes the embedder's ONNX graph: images [batch,3,S,S] → embeddings [batch,dim]."""
    cfg = model.cfg
    dummy = torch.zeros(vit.input_shape(cfg, batch=2))
    write_onnx(model, (dummy,), onnx_path, [INPUT], OUTPUT, cfg.dim, metadata)


def with_prior(model: pairwise.ConcatSiamese, prior: Optional[Tuple[str, float, float]], config: str) -> torch.nn.Module:
    """`model` as it is without a prior; else pairwise.WithPrior over it, with the prior's
    embedder checkpoint (of configuration `config`), scale and offset."""
    if not prior:
        return model
    ckpt, scale, offset = prior
    return pairwise.WithPrior(model, vit.load_checkpoint(ckpt, vit.CONFIGS[config]), scale, offset).eval()


def export_pairwise(model: torch.nn.Module, onnx_path: str, metadata: Dict[str, str]) -> None:
    """Writes the pairwise model's ONNX graph: (query, candidate) [batch,3,S,S] each → logits
    [batch,1]. The 2S×S positional table is computed here once and stored as a constant."""
    cfg = model.cfg
    dummy = torch.zeros(vit.input_shape(cfg, batch=2))
    graph = pairwise.PairwiseGraph(model.eval())
    write_onnx(graph, (dummy, dummy.clone()), onnx_path, list(PAIRWISE_INPUTS), PAIRWISE_OUTPUT, 1, metadata)


def check(onnx_path: str, model: torch.nn.Module) -> str:
    """Validates the saved graph (embedder or pairwise, by the model's type) and, when
    possible, its numbers. Returns a summary line."""
    m = onnx.load(onnx_path)
    onnx.checker.check_model(m, full_check=True)
    pair = isinstance(model, (pairwise.ConcatSiamese, pairwise.WithPrior))
    cfg = model.cfg
    ins = [(i.name, [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]) for i in m.graph.input]
    outs = [(o.name, [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]) for o in m.graph.output]
    image = ["batch", cfg.in_chans, cfg.img_size, cfg.img_size]
    if pair:
        want_in = [(name, image) for name in PAIRWISE_INPUTS]
        want_out = [(PAIRWISE_OUTPUT, ["batch", 1])]
    else:
        want_in = [(INPUT, image)]
        want_out = [(OUTPUT, ["batch", cfg.dim])]
    if ins != want_in or outs != want_out:
        raise SystemExit(f"{onnx_path}: graph signature {ins} → {outs}, want {want_in} → {want_out}")
    try:
        import onnxruntime  # type: ignore
    except ImportError:
        return "onnx.checker ok; onnxruntime (Python) not installed: numbers are checked by `go test ./models/zoo`"
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(vit.input_shape(cfg, batch=3), generator=gen) for _ in want_in]
    with torch.no_grad():
        want = model.eval()(*xs).numpy()
    sess = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    got = sess.run([want_out[0][0]], {name: x.numpy() for (name, _), x in zip(want_in, xs)})[0]
    diff = float(abs(got - want).max())
    if diff > 1e-4:
        raise SystemExit(f"{onnx_path}: onnxruntime differs from torch by {diff}")
    return f"onnx.checker ok; onnxruntime vs torch max abs diff {diff:.3g}"


def parse_prior(value: str) -> Tuple[str, float, float]:
    """EMBEDDER.pt,SCALE,OFFSET → (path, scale, offset); the scale must be positive."""
    parts = value.rsplit(",", 2)
    try:
        ckpt, scale, offset = parts[0], float(parts[1]), float(parts[2])
    except (IndexError, ValueError):
        raise argparse.ArgumentTypeError(f"{value!r}: want EMBEDDER.pt,SCALE,OFFSET, e.g. embedder.pt,8.437,-2.626")
    if not (scale > 0 and math.isfinite(scale) and math.isfinite(offset)) or not os.path.isfile(ckpt):
        raise argparse.ArgumentTypeError(f"{value!r}: want an existing embedder checkpoint, a positive scale and a finite offset")
    return ckpt, scale, offset


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", choices=(EMBEDDER, PAIRWISE), default=EMBEDDER, help="model kind (default embedder)")
    ap.add_argument("--config", choices=sorted(vit.CONFIGS), required=True)
    ap.add_argument("--out", required=True, help="output directory (created)")
    ap.add_argument(
        "--checkpoint",
        help="checkpoint to load (default: random init): an OML/DINO embedder, or with --kind pairwise "
        "an OML ConcatSiamese postprocessor (or train_stir.py's pairwise.pt)",
    )
    ap.add_argument("--seed", type=int, default=0, help="seed of the random init")
    ap.add_argument(
        "--head-hidden",
        type=lambda v: [int(x) for x in v.split(",") if x],
        help="random pairwise head widths, comma-separated (default D/2; a checkpoint brings its own)",
    )
    ap.add_argument(
        "--prior",
        type=parse_prior,
        metavar="EMBEDDER.pt,SCALE,OFFSET",
        help="pairwise: add the embedder's calibrated verdict scale*distance+offset to the logit (pairwise.WithPrior)",
    )
    ap.add_argument("--prior-config", choices=sorted(vit.CONFIGS), help="the --prior embedder's configuration (default --config)")
    ap.add_argument("--name", help="manifest name (default vit-CONFIG-random or vit-CONFIG-<checkpoint stem>)")
    ap.add_argument(
        "--no-normalize",
        dest="normalize",
        action="store_false",
        help="output the raw CLS features (OML's vits16_inshop was evaluated this way); default x/‖x‖",
    )
    args = ap.parse_args(argv)
    if args.kind == PAIRWISE and not args.normalize:
        ap.error("--no-normalize applies to embedders; a pairwise model outputs a logit")
    if args.prior and args.kind != PAIRWISE:
        ap.error("--prior applies to --kind pairwise")
    if args.prior_config and not args.prior:
        ap.error("--prior-config names the --prior embedder's configuration: give --prior too")
    if args.head_hidden is not None and (args.kind != PAIRWISE or args.checkpoint):
        ap.error("--head-hidden applies to a random --kind pairwise model")

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    hidden = None
    if args.kind == PAIRWISE:
        model = with_prior(build_pairwise(args.config, args.seed, args.checkpoint, args.head_hidden), args.prior, args.prior_config or args.config)
        hidden = model.hidden
    else:
        model = build_model(args.config, args.seed, args.checkpoint, args.normalize)
    cfg = model.cfg
    stem = "stir" if args.kind == PAIRWISE else "vit"
    if args.name:
        name = args.name
    elif args.checkpoint:
        name = f"{stem}-{args.config}-{os.path.splitext(os.path.basename(args.checkpoint))[0]}"
    else:
        name = f"{stem}-{args.config}-random"

    os.makedirs(args.out, exist_ok=True)
    onnx_name, man_name = file_names(args.kind)
    onnx_path = os.path.join(args.out, onnx_name)
    meta = metadata(args.config, args.seed, args.checkpoint, args.normalize, args.kind, hidden, args.prior)
    if args.kind == PAIRWISE:
        export_pairwise(model, onnx_path, meta)
    else:
        export(model, onnx_path, meta)
    summary = check(onnx_path, model)

    man = manifest(name, cfg.dim, args.normalize, cfg.img_size, args.kind)
    man_path = os.path.join(args.out, man_name)
    with open(man_path, "w") as f:
        json.dump(man, f, indent=2)
        f.write("\n")

    print(f"{onnx_path}: {os.path.getsize(onnx_path)} bytes, sha256 {sha256_file(onnx_path)}")
    print(f"{man_path}: name {name}, kind {args.kind}, dim {man['dim']}, {vit.param_count(model)} parameters")
    print(summary)


if __name__ == "__main__":
    main()

"""Reference (golden) outputs of an exported embedder on real catalog images.

    /usr/bin/python3 models/recipe/golden.py --catalog CATALOG.csv --root ROOT \\
        --model-dir models/zoo/vit-tiny --config tiny --seed 0

For a deterministic selection of images of an OML catalog (method.md §6) it stores, under
MODEL_DIR/golden/:
  images/NN-NAME.EXT          the source file, original bytes
  preprocessed/NN-NAME.png    the uint8 224×224 result of PIL/torchvision preprocessing
  golden.json                 per image: source, bbox, preprocessed PNG, the float tensor's
                              digest, and the torch embedding; plus model hash and provenance
Preprocessing is OML's evaluation transform, done the reference way: PIL open,
convert("RGB"), crop to the bbox, torchvision 0.14 Resize(224, BICUBIC) + CenterCrop(224),
then ToTensor + Normalize(ImageNet). The embedding is the torch model's (eval mode, float32,
batch of one). The model is rebuilt from --config/--seed (or --checkpoint) and re-exported
to a temporary file that must be byte-identical to MODEL_DIR/embedder.onnx, so the
embeddings belong to the committed graph.

A few extra inputs are derived from catalog images with PIL (grayscale JPEG, palette PNG,
grayscale PNG, RGBA PNG with partial transparency, progressive JPEG) to pin
convert("RGB") semantics; golden.json marks them with "derived_from".

Dev-time only; never run by the pipeline.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import PIL
import torch
import torchvision
from PIL import Image
from torchvision import transforms

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export  # noqa: E402
import vit  # noqa: E402

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
SIZE = 224

Box = Tuple[int, int, int, int]


@dataclass
class Candidate:
    """One catalog image and the properties the selection balances."""

    row: int
    path: str  # absolute
    rel: str  # as in the catalog
    data: bytes
    fmt: str  # "jpeg" | "png" | ...
    mode: str  # PIL mode of the decoded file
    size: Tuple[int, int]  # decoded width, height
    bbox: Optional[Box]
    derived_from: Optional[str] = None
    traits: Tuple = field(default=())
    name: Optional[str] = None  # file name under golden/images when refreshing


    def region(self) -> Tuple[int, int]:
        """Width and height of what gets resized: the bbox, or the whole image."""
        if self.bbox:
            x1, y1, x2, y2 = self.bbox
            return x2 - x1, y2 - y1
        return self.size


def resized_size(w: int, h: int) -> Tuple[int, int]:
    """torchvision's shorter-side size rule: the long side becomes int(224·long/short)."""
    if w <= h:
        return SIZE, int(SIZE * h / w)
    return int(SIZE * w / h), SIZE


def classify(c: Candidate) -> Tuple:
    """Traits to cover: format, bbox, aspect, upscaled, odd centre-crop margin (where
    Python's round-half-even matters: (side − 224)/2 = k + 0.5)."""
    w, h = c.region()
    ar = w / h
    aspect = "tall" if ar < 0.8 else "wide" if ar > 1.25 else "square"
    rw, rh = resized_size(w, h)
    odd_margin = (max(rw, rh) - SIZE) % 2 == 1
    return (c.fmt, c.bbox is not None, aspect, min(w, h) < SIZE, odd_margin)


def read_catalog(csv_path: str, root: str, max_bytes: int) -> List[Candidate]:
    """Every catalog row whose file exists and is at most max_bytes, in catalog order."""
    out = []
    with open(csv_path, newline="") as f:
        for i, rec in enumerate(csv.DictReader(f)):
            rel = rec["path"]
            path = os.path.join(root, rel)
            if not os.path.isfile(path) or os.path.getsize(path) > max_bytes:
                continue
            with open(path, "rb") as fh:
                data = fh.read()
            with Image.open(io.BytesIO(data)) as im:
                fmt, mode, size = (im.format or "").lower(), im.mode, im.size
            bbox = None
            coords = [rec.get(k, "") for k in ("x_1", "y_1", "x_2", "y_2")]
            if all(v not in ("", None) for v in coords):
                bbox = tuple(int(float(v)) for v in coords)
            c = Candidate(i, path, rel, data, fmt, mode, size, bbox)
            c.traits = classify(c)
            out.append(c)
    return out


def select(cands: List[Candidate], count: int) -> List[Candidate]:
    """Deterministic greedy cover: repeatedly take the candidate with the most trait values
    not yet seen (ties: fewer times its format was picked, then catalog order)."""
    picked: List[Candidate] = []
    seen: Dict[Tuple[int, object], int] = {}
    left = list(cands)
    while left and len(picked) < count:

        def score(c: Candidate):
            novelty = sum(1 for i, t in enumerate(c.traits) if (i, t) not in seen)
            joint = 0 if c.traits in {p.traits for p in picked} else 1
            balance = -seen.get((0, c.traits[0]), 0)
            return (joint, novelty, balance, -c.row)

        best = max(left, key=score)
        left.remove(best)
        picked.append(best)
        for i, t in enumerate(best.traits):
            seen[(i, t)] = seen.get((i, t), 0) + 1
    return picked


def read_golden(out_dir: str) -> List[Candidate]:
    """The inputs of an existing golden.json, for --refresh (the catalog is not needed)."""
    with open(os.path.join(out_dir, "golden.json")) as f:
        doc = json.load(f)
    out = []
    for i, e in enumerate(doc["images"]):
        path = os.path.join(out_dir, e["source"])
        with open(path, "rb") as fh:
            data = fh.read()
        with Image.open(io.BytesIO(data)) as im:
            fmt, mode, size = (im.format or "").lower(), im.mode, im.size
        rel = e["catalog_path"] or os.path.basename(e["source"])
        bbox = tuple(e["bbox"]) if e["bbox"] else None
        c = Candidate(i, path, rel, data, fmt, mode, size, bbox, derived_from=e["derived_from"])
        c.name = os.path.basename(e["source"])
        c.traits = classify(c)
        out.append(c)
    return out


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def derive(cands: List[Candidate], exclude: List[Candidate]) -> List[Candidate]:
    """Extra inputs in colour modes the catalog may lack, derived from catalog images."""
    used = {c.row for c in exclude}
    pool = [c for c in cands if c.row not in used and c.bbox is None] or cands
    out = []

    def add(src: Candidate, kind: str, fmt: str, data: bytes):
        with Image.open(io.BytesIO(data)) as im:
            mode, size = im.mode, im.size
        stem = os.path.splitext(os.path.basename(src.rel))[0]
        rel = f"{stem}-{kind}.{ 'jpg' if fmt == 'jpeg' else fmt }"
        c = Candidate(src.row, src.path, rel, data, fmt, mode, size, None, derived_from=src.rel)
        c.traits = classify(c)
        out.append(c)

    def base(i: int) -> Tuple[Candidate, Image.Image]:
        src = pool[i % len(pool)]
        with Image.open(io.BytesIO(src.data)) as im:
            return src, im.convert("RGB")

    src, im = base(0)
    add(src, "gray", "jpeg", encode(im.convert("L"), "JPEG", quality=90))
    src, im = base(1)
    add(src, "progressive", "jpeg", encode(im, "JPEG", quality=85, progressive=True))
    src, im = base(2)
    add(src, "palette", "png", encode(im.convert("P", palette=Image.ADAPTIVE, colors=64), "PNG"))
    src, im = base(3)
    add(src, "gray", "png", encode(im.convert("L"), "PNG"))
    src, im = base(4)
    rgba = im.convert("RGBA")
    w, h = rgba.size
    alpha = Image.linear_gradient("L").resize((w, h), Image.BILINEAR)  # 0 top → 255 bottom
    rgba.putalpha(alpha)
    add(src, "rgba", "png", encode(rgba, "PNG"))
    return out


def preprocess(data: bytes, bbox: Optional[Box]) -> Image.Image:
    """The reference evaluation transform up to the uint8 centre crop (method.md §2)."""
    with Image.open(io.BytesIO(data)) as im:
        img = im.convert("RGB")
    if bbox is not None:
        img = img.crop(bbox)
    t = transforms.Compose(
        [transforms.Resize(SIZE, interpolation=transforms.InterpolationMode.BICUBIC), transforms.CenterCrop(SIZE)]
    )
    out = t(img)
    assert out.size == (SIZE, SIZE) and out.mode == "RGB"
    return out


TO_TENSOR = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])


def f32(x: float) -> float:
    """The shortest decimal that reads back as the same float32, as a Python float."""
    return float(str(np.float32(x)))


def store_image(out_dir: str, c: Candidate, n: int) -> Tuple[Dict[str, object], torch.Tensor]:
    """Stores case n under out_dir (images/NN-NAME: original bytes; preprocessed/NN-NAME.png:
    the PIL crop) and returns its golden.json entry (without "embedding") and the float32
    [3,224,224] tensor, read back from the stored PNG so it provably comes from those bytes."""
    stem, ext = os.path.splitext(c.name or f"{n:02d}-{os.path.basename(c.rel)}")
    src_name = f"images/{stem}{ext.lower()}"
    pre_name = f"preprocessed/{stem}.png"
    with open(os.path.join(out_dir, src_name), "wb") as f:
        f.write(c.data)
    crop = preprocess(c.data, c.bbox)
    crop.save(os.path.join(out_dir, pre_name), format="PNG", optimize=True)
    with Image.open(os.path.join(out_dir, pre_name)) as im:
        stored = im.convert("RGB")
    assert np.array_equal(np.asarray(stored), np.asarray(crop))
    x = TO_TENSOR(stored)
    assert x.dtype == torch.float32 and tuple(x.shape) == (3, SIZE, SIZE)
    w, h = c.region()
    rw, rh = resized_size(w, h)
    entry = {
        "source": src_name,
        "catalog_path": None if c.derived_from else c.rel,
        "derived_from": c.derived_from,
        "format": c.fmt,
        "mode": c.mode,
        "width": c.size[0],
        "height": c.size[1],
        "bbox": list(c.bbox) if c.bbox else None,
        "resized": [rw, rh],
        "preprocessed": pre_name,
        "tensor_sha256": hashlib.sha256(x.numpy().astype("<f4").tobytes()).hexdigest(),
    }
    return entry, x


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalog", help="OML catalog CSV to select images from")
    ap.add_argument("--root", help="dataset root the catalog paths are relative to")
    ap.add_argument(
        "--refresh",
        action="store_true",
        help="keep the inputs of the existing golden.json (no catalog needed); recompute the rest",
    )
    ap.add_argument("--model-dir", required=True, help="directory of embedder.onnx / embedder.json")
    ap.add_argument("--config", choices=sorted(vit.CONFIGS), required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint")
    ap.add_argument("--count", type=int, default=22, help="catalog images to select")
    ap.add_argument("--max-bytes", type=int, default=120_000, help="skip larger source files")
    ap.add_argument("--no-derived", dest="derived", action="store_false", help="catalog files only")
    args = ap.parse_args(argv)
    if args.refresh == bool(args.catalog or args.root) or bool(args.catalog) != bool(args.root):
        ap.error("give either --catalog and --root, or --refresh")
    torch.set_num_threads(1)

    onnx_path = os.path.join(args.model_dir, export.ONNX_NAME)
    with open(os.path.join(args.model_dir, export.MANIFEST_NAME)) as f:
        man = json.load(f)
    model = export.build_model(args.config, args.seed, args.checkpoint, man["normalized"])
    with tempfile.TemporaryDirectory() as tmp:
        fresh = os.path.join(tmp, export.ONNX_NAME)
        export.export(model, fresh, export.metadata(args.config, args.seed, args.checkpoint, man["normalized"]))
        if export.sha256_file(fresh) != export.sha256_file(onnx_path):
            raise SystemExit(
                f"{onnx_path} is not the export of --config {args.config} --seed {args.seed}"
                f"{' --checkpoint ' + args.checkpoint if args.checkpoint else ''}: re-export it first"
            )
    model_sha = export.sha256_file(onnx_path)

    out_dir = os.path.join(args.model_dir, "golden")
    if args.refresh:
        chosen = read_golden(out_dir)
    else:
        cands = read_catalog(args.catalog, args.root, args.max_bytes)
        if not cands:
            raise SystemExit(f"{args.catalog}: no readable images under {args.root}")
        chosen = select(cands, args.count)
        if args.derived:
            chosen += derive(cands, chosen)
    for sub in ("images", "preprocessed"):
        shutil.rmtree(os.path.join(out_dir, sub), ignore_errors=True)
        os.makedirs(os.path.join(out_dir, sub))

    entries, embs = [], []
    for n, c in enumerate(chosen):
        entry, x = store_image(out_dir, c, n)
        with torch.no_grad():
            e = model(x.unsqueeze(0))[0]
        embs.append(e)
        entry["embedding"] = [f32(v) for v in e.tolist()]
        entries.append(entry)

    doc = {
        "description": (
            "Golden outputs of the committed embedder. Each source image was opened with PIL, "
            "converted to RGB, cropped to bbox (left, top, right, bottom) when given, resized with "
            "torchvision Resize(224, BICUBIC) (shorter side 224, PIL antialiased bicubic) and "
            "CenterCrop(224); that uint8 crop is `preprocessed` (lossless PNG). ToTensor + "
            "Normalize(mean, std) of the crop is the float32 CHW tensor whose little-endian bytes "
            "hash to `tensor_sha256`; `embedding` is the torch model's output for it (eval mode, "
            "float32, batch of one). Regenerate with the command in `produced_by`."
        ),
        "model": {
            "onnx": "../" + export.ONNX_NAME,
            "sha256": model_sha,
            "manifest": "../" + export.MANIFEST_NAME,
            "name": man["name"],
            "config": args.config,
            "seed": None if args.checkpoint else args.seed,
            "checkpoint_sha256": export.sha256_file(args.checkpoint) if args.checkpoint else None,
        },
        "preprocess": {"resize_to": SIZE, "crop_size": SIZE, "mean": list(MEAN), "std": list(STD)},
        "produced_by": {
            "command": "models/recipe/golden.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "pillow": PIL.__version__,
            "numpy": np.__version__,
        },
        "images": entries,
    }
    write_json(os.path.join(out_dir, "golden.json"), doc)

    report(out_dir, chosen, torch.stack(embs))


def write_json(path: str, doc: object) -> None:
    """Writes `doc` as indented JSON with each list of numbers on one line (a readable diff)."""
    text = json.dumps(doc, indent=1)
    text = re.sub(r"\[\s+([^\[\]{}\"]*?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    with open(path, "w") as f:
        f.write(text + "\n")


def report(out_dir: str, chosen: List[Candidate], embs: torch.Tensor) -> None:
    total = 0
    for dirpath, _, files in os.walk(out_dir):
        total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
    print(f"{out_dir}: {len(chosen)} images, {total} bytes")
    for c in chosen:
        print(f"  {c.rel:50s} {c.fmt:5s} {c.mode:5s} {c.size} bbox={c.bbox} traits={c.traits[2:]}")
    cos = embs @ embs.T
    off = cos[~torch.eye(len(cos), dtype=torch.bool)]
    print(f"pairwise cosine of different images: mean {off.mean():.4f}, min {off.min():.4f}, max {off.max():.4f}")


if __name__ == "__main__":
    main()

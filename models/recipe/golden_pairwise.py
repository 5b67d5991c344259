"""Reference (golden) pairwise scores of an exported STIR pair on real validation images.

    /usr/bin/python3 models/recipe/golden_pairwise.py --catalog CATALOG.csv --root ROOT \\
        --model-dir models/zoo/stir-tiny --config tiny \\
        --embedder-checkpoint models/zoo/stir-tiny/checkpoints/embedder.pt \\
        --pairwise-checkpoint models/zoo/stir-tiny/checkpoints/pairwise.pt

The embedder ranks the catalog's validation split (method.md §3: every row query and
gallery, the query row and its sequence excluded); a few queries are picked
deterministically (covering a reranked rank 1, a bbox and a PNG where the catalog has them)
and each one's top_n candidates are scored with the pairwise model. Under MODEL_DIR/golden/:

  images/NN-NAME.EXT        the source files (original bytes)
  preprocessed/NN-NAME.png  PIL/torchvision's uint8 224×224 crops (golden.py's transform)
  pairwise.json             per image the golden.py fields (bbox, tensor digest, ...) and the
                            torch embedding; per pair the torch logit and sigmoid score; per
                            query the embedder's top_n with distances and the expected
                            PairwiseReranker result (method.md §4)

Both models are rebuilt from their checkpoints and re-exported to temporary files that must
be byte-identical to MODEL_DIR/embedder.onnx and pairwise.onnx. --refresh keeps the inputs
and the queries' candidate lists of the existing pairwise.json (no catalog needed) and
recomputes the numbers. Dev-time only.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import sys
import tempfile
from typing import Dict, List, Optional, Tuple

import numpy as np
import PIL
import torch
import torchvision
from PIL import Image

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export  # noqa: E402
import golden  # noqa: E402
import retrieval  # noqa: E402
import train_stir  # noqa: E402
import vit  # noqa: E402

GOLDEN_NAME = "pairwise.json"
TOP_N = train_stir.TOP_N


def check_export(
    model_dir: str, config: str, pair_config: str, emb_ckpt: str, pw_ckpt: str, prior: Optional[Tuple[str, float, float]] = None
) -> Tuple[vit.ViT, torch.nn.Module, Dict, Dict]:
    """The torch models of the committed graphs: rebuilt, re-exported, compared byte for byte."""
    with open(os.path.join(model_dir, export.MANIFEST_NAME)) as f:
        emb_man = json.load(f)
    with open(os.path.join(model_dir, export.PAIRWISE_MANIFEST_NAME)) as f:
        pw_man = json.load(f)
    embedder = export.build_model(config, 0, emb_ckpt, emb_man["normalized"])
    pair = export.with_prior(export.build_pairwise(pair_config, 0, pw_ckpt), prior, config)
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [
            (export.ONNX_NAME, lambda p: export.export(embedder, p, export.metadata(config, 0, emb_ckpt, emb_man["normalized"]))),
            (
                export.PAIRWISE_ONNX_NAME,
                lambda p: export.export_pairwise(
                    pair, p, export.metadata(pair_config, 0, pw_ckpt, False, export.PAIRWISE, pair.hidden, prior)
                ),
            ),
        ]
        for name, write in jobs:
            fresh = os.path.join(tmp, name)
            write(fresh)
            if export.sha256_file(fresh) != export.sha256_file(os.path.join(model_dir, name)):
                raise SystemExit(f"{model_dir}/{name} is not the export of these checkpoints: re-export it first")
    return embedder, pair, emb_man, pw_man


def model_block(model_dir: str, onnx_name: str, man_name: str, man: Dict, config: str, ckpt: str) -> Dict[str, object]:
    """Identifies a graph as zoo.GoldenModel does."""
    return {
        "onnx": "../" + onnx_name,
        "sha256": export.sha256_file(os.path.join(model_dir, onnx_name)),
        "manifest": "../" + man_name,
        "name": man["name"],
        "config": config,
        "seed": None,
        "checkpoint_sha256": export.sha256_file(ckpt),
    }


def read_rows(csv_path: str) -> List[Dict[str, str]]:
    with open(csv_path, newline="") as f:
        return list(csv.DictReader(f))


def choose(val_rows: List[Dict[str, str]], ret: retrieval.Retrieved, reranked: retrieval.Retrieved, labels, count: int) -> List[int]:
    """Deterministic greedy pick of `count` validation queries (positions in the validation
    split) covering: the pairwise model fixes rank 1, breaks it, reorders the head otherwise,
    a bbox and a PNG among the query and its candidates. Ties: more traits, then catalog order."""

    def traits(q: int) -> Dict[str, bool]:
        head = [int(g) for g in ret.ids[q][:TOP_N]]
        new_head = [int(g) for g in reranked.ids[q][:TOP_N]]
        imgs = [q] + head
        before, after = labels[head[0]] == labels[q], labels[new_head[0]] == labels[q]
        return {
            "fixes": bool(after and not before),
            "breaks": bool(before and not after),
            "reorders": new_head != head,
            "bbox": any(val_rows[i]["x_1"] != "" for i in imgs),
            "png": any(val_rows[i]["path"].endswith(".png") for i in imgs),
        }

    tr = {q: traits(q) for q in range(len(val_rows)) if len(ret.ids[q])}
    seen: Dict[str, bool] = {}
    picked: List[int] = []
    while len(picked) < count and tr:
        best = max(tr, key=lambda q: (sum(v and not seen.get(k, False) for k, v in tr[q].items()), sum(tr[q].values()), -q))
        for k, v in tr.pop(best).items():
            seen[k] = seen.get(k, False) or v
        picked.append(best)
    return picked


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalog", help="OML catalog CSV whose validation split is ranked")
    ap.add_argument("--root", help="dataset root the catalog paths are relative to")
    ap.add_argument("--refresh", action="store_true", help="keep the inputs of the existing pairwise.json")
    ap.add_argument("--model-dir", required=True, help="directory of embedder.onnx/.json and pairwise.onnx/.json")
    ap.add_argument("--config", choices=sorted(vit.CONFIGS), required=True)
    ap.add_argument("--pair-config", choices=sorted(vit.CONFIGS), help="the pairwise backbone's configuration (default --config)")
    ap.add_argument("--embedder-checkpoint", required=True)
    ap.add_argument("--pairwise-checkpoint", required=True)
    ap.add_argument("--prior", type=export.parse_prior, metavar="EMBEDDER.pt,SCALE,OFFSET", help="the --prior the pairwise graph was exported with")
    ap.add_argument("--queries", type=int, default=3, help="queries to take (each brings top_n pairs)")
    args = ap.parse_args(argv)
    if args.refresh == bool(args.catalog or args.root) or bool(args.catalog) != bool(args.root):
        ap.error("give either --catalog and --root, or --refresh")
    torch.set_num_threads(2)
    pair_config = args.pair_config or args.config
    embedder, pair, emb_man, pw_man = check_export(
        args.model_dir, args.config, pair_config, args.embedder_checkpoint, args.pairwise_checkpoint, args.prior
    )
    embedder.eval()
    pair.eval()
    out_dir = os.path.join(args.model_dir, "golden")

    if args.refresh:
        with open(os.path.join(out_dir, GOLDEN_NAME)) as f:
            old = json.load(f)
        cands = []
        for e in old["images"]:
            with open(os.path.join(out_dir, e["source"]), "rb") as fh:
                data = fh.read()
            with Image.open(io.BytesIO(data)) as im:
                fmt, mode, size = (im.format or "").lower(), im.mode, im.size
            c = golden.Candidate(0, e["source"], e["catalog_path"], data, fmt, mode, size, tuple(e["bbox"]) if e["bbox"] else None)
            c.name = os.path.basename(e["source"])
            cands.append(c)
        queries = [
            {k: q[k] for k in ("query", "label", "category", "retrieved", "labels", "tail_distance")} for q in old["queries"]
        ]
        catalog_info = old["catalog"]
    else:
        cands, queries, catalog_info = select_from_catalog(args, embedder, pair)

    for sub in ("images", "preprocessed"):
        shutil.rmtree(os.path.join(out_dir, sub), ignore_errors=True)
        os.makedirs(os.path.join(out_dir, sub))
    entries, xs, embs = [], [], []
    for n, c in enumerate(cands):
        entry, x = golden.store_image(out_dir, c, n)
        with torch.no_grad():
            e = embedder(x.unsqueeze(0))[0]
        entry["embedding"] = [golden.f32(v) for v in e.tolist()]
        entries.append(entry)
        xs.append(x)
        embs.append(e)

    pairs, out_queries = [], []
    for q in queries:
        qi, ids = q["query"], q["retrieved"]
        dists = [float(torch.dist(embs[qi].double(), embs[g].double())) for g in ids]
        scores = []
        for g, lab in zip(ids, q["labels"]):
            with torch.no_grad():
                logit = float(pair(xs[qi].unsqueeze(0), xs[g].unsqueeze(0))[0, 0])
            score = float(torch.sigmoid(torch.tensor(logit, dtype=torch.float32)))
            scores.append(np.float32(score))
            pairs.append(
                {
                    "query": qi,
                    "candidate": g,
                    "same_label": lab == q["label"],
                    "logit": golden.f32(logit),
                    "score": golden.f32(score),
                }
            )
        tail = [] if q["tail_distance"] is None else [q["tail_distance"]]
        new_ids, new_d = retrieval.rerank(np.array(ids + [-1] * len(tail)), np.array(dists + tail), np.array(scores, np.float64), TOP_N)
        out_queries.append(
            {
                **q,
                "distances": dists,
                "reranked": [int(i) for i in new_ids[: len(ids)]],
                "reranked_distances": [float(v) for v in new_d[: len(ids)]],
            }
        )

    doc = {
        "description": (
            "Golden outputs of the committed STIR pair. Images are preprocessed exactly as in "
            "golden.json of vit-tiny (PIL, RGB, bbox crop, Resize(224, BICUBIC), CenterCrop(224), "
            "ToTensor + Normalize); `embedding` is the torch embedder's output. Each pair's `logit` is "
            "the torch pairwise model's output for (query tensor on top, candidate tensor below), batch "
            "of one, eval mode; `score` = sigmoid(logit) in float32 (lower = more similar). Per query, "
            "`retrieved` are the embedder's top_n validation neighbours (image indices) with Euclidean "
            "`distances` of the embeddings above (float64), `tail_distance` the next neighbour's "
            "distance (not stored as an image), and `reranked`/`reranked_distances` OML's "
            "PairwiseReranker result (method.md §4, stable sort)."
        ),
        "model": model_block(args.model_dir, export.PAIRWISE_ONNX_NAME, export.PAIRWISE_MANIFEST_NAME, pw_man, pair_config, args.pairwise_checkpoint),
        "embedder": model_block(args.model_dir, export.ONNX_NAME, export.MANIFEST_NAME, emb_man, args.config, args.embedder_checkpoint),
        "preprocess": {"resize_to": golden.SIZE, "crop_size": golden.SIZE, "mean": list(golden.MEAN), "std": list(golden.STD)},
        "produced_by": {
            "command": "models/recipe/golden_pairwise.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "pillow": PIL.__version__,
            "numpy": np.__version__,
        },
        "catalog": catalog_info,
        "top_n": TOP_N,
        "images": entries,
        "pairs": pairs,
        "queries": out_queries,
    }
    golden.write_json(os.path.join(out_dir, GOLDEN_NAME), doc)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out_dir) for f in fs)
    print(f"{out_dir}/{GOLDEN_NAME}: {len(entries)} images, {len(pairs)} pairs, {len(out_queries)} queries; golden/ holds {total} bytes")
    for q in out_queries:
        print(f"  query {q['query']} label {q['label']}: {q['retrieved']} → {q['reranked']}")


def select_from_catalog(args, embedder: vit.ViT, pair: torch.nn.Module):
    """Ranks the validation split with the embedder, reranks with the pairwise model, picks
    the queries and returns (images to store, query blocks with image indices, provenance)."""
    rows = read_rows(args.catalog)
    cat = train_stir.Catalog(args.catalog, args.root, splits=("validation",))
    val, labels, ret = train_stir.validation_retrieval(embedder, cat)
    positions = [i for i, r in enumerate(rows) if r["split"] == "validation"]  # catalog row of each cat row

    def score(queries, heads):
        ps = [(val[q], val[int(g)]) for q, h in zip(queries, heads) for g in h]
        probs = torch.sigmoid(torch.from_numpy(train_stir.pair_logits(pair, cat, ps))).numpy()
        out, s = [], 0
        for h in heads:
            out.append(probs[s : s + len(h)])
            s += len(h)
        return out

    reranked = retrieval.rerank_all(ret, score, TOP_N)
    val_rows = [rows[positions[i]] for i in val]
    picked = choose(val_rows, ret, reranked, labels, args.queries)

    by_rel = {c.rel: c for c in golden.read_catalog(args.catalog, args.root, max_bytes=1 << 30)}
    images: List[golden.Candidate] = []
    index: Dict[int, int] = {}

    def add(v: int) -> int:
        if v not in index:
            index[v] = len(images)
            images.append(by_rel[val_rows[v]["path"]])
        return index[v]

    queries = []
    for q in picked:
        n = min(TOP_N, len(ret.ids[q]))
        ids = [int(g) for g in ret.ids[q][:n]]
        qi = add(q)
        queries.append(
            {
                "query": qi,
                "label": int(labels[q]),
                "category": val_rows[q]["category"],
                "retrieved": [add(g) for g in ids],
                "labels": [int(labels[g]) for g in ids],
                "tail_distance": float(ret.dists[q][n]) if len(ret.ids[q]) > n else None,
            }
        )
    info = {
        "csv_rows": len(rows),
        "validation_rows": len(val),
        "note": "regenerate with the bin/stir synth flags in models/zoo/stir-tiny/TRAINING.md",
    }
    return images, queries, info


if __name__ == "__main__":
    main()

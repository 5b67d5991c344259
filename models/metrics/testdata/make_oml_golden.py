"""Golden retrieval metrics computed by OML's own code (dev time only).

Runs the unmodified OML modules oml/functional/metrics.py and oml/functional/knn.py
(with oml/const.py, oml/utils/misc.py, oml/utils/misc_torch.py) from a git mirror of
OML-Team/open-metric-learning, copied into a temporary directory OUTSIDE the project.
Third-party packages that these modules import but that the functions used here never
call (tqdm, omegaconf, matplotlib) are replaced by minimal stub modules, and
oml/utils/__init__.py (which imports dataset download helpers) by an empty file.

Usage (Debian's interpreter, which has torch 1.13):

    env PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 models/metrics/testdata/make_oml_golden.py \
        --oml-git-dir /work/.mirror/OML-Team+open-metric-learning/repo \
        --commit 6be182e28ab01d237d64afb668b5b11ab94d3e25 \
        --out models/metrics/testdata/oml_golden.json

Output (read by models/metrics/oml_golden_test.go):
  functional: calc_cmc / calc_precision / calc_map on hand-written gt_tops + n_gts
              (per-query values; NaN written as null).
  retrieval:  batched_knn / batched_knn_qg on seeded embeddings with labels, overlapping
              query/gallery ids and sequence ids (OML's exclusion path: mask_to_ignore,
              mask_gt, inf distances dropped after topk), then calc_retrieval_metrics
              with query categories, reduce=False (per query) and reduce=True (means).
              "nanmean" is numpy.nanmean over OML's per-query values: NOT an OML output,
              it is the documented Go semantics for precision of queries with n = 0.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

OML_FILES = [
    "oml/__init__.py",
    "oml/const.py",
    "oml/utils/misc.py",
    "oml/utils/misc_torch.py",
    "oml/functional/__init__.py",
    "oml/functional/metrics.py",
    "oml/functional/knn.py",
]

STUBS = {
    "oml/utils/__init__.py": "",
    "tqdm/__init__.py": "from tqdm.auto import tqdm\n",
    "tqdm/auto.py": "def tqdm(iterable=None, *args, **kwargs):\n    return iterable\n",
    "omegaconf/__init__.py": "class DictConfig(dict):\n    pass\n\n\nclass OmegaConf:\n    pass\n",
    "matplotlib/__init__.py": "def use(*args, **kwargs):\n    pass\n\n\ndef get_backend():\n    return 'agg'\n",
    "matplotlib/pyplot.py": "",
}


def stage(git_dir, commit, root):
    for path in OML_FILES:
        text = subprocess.run(
            ["git", "--git-dir", git_dir, "show", f"{commit}:{path}"], check=True, capture_output=True
        ).stdout
        dst = os.path.join(root, path)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(dst, "wb") as f:
            f.write(text)
    for path, text in STUBS.items():
        dst = os.path.join(root, path)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(dst, "w") as f:
            f.write(text)


def clean(x):
    """Tensors/arrays/floats -> JSON-safe Python (NaN -> None)."""
    import numpy as np
    import torch

    if isinstance(x, torch.Tensor):
        return clean(x.tolist())
    if isinstance(x, np.ndarray):
        return clean(x.tolist())
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (float, np.floating)):
        return None if math.isnan(float(x)) else float(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    return x


FUNCTIONAL = [
    # name, gt_tops, n_gts
    ("oml_docstring_cmc", [[1, 0], [0, 1, 1], [0, 0], []], [2, 2, 1, 0]),
    ("oml_docstring_precision", [[1, 0], [0, 1, 1], [0, 0], []], [2, 3, 5, 2]),
    ("oml_docstring_map", [[1, 0], [0, 1], [0, 0, 0, 0], []], [1, 1, 2, 0]),
    ("method_worked_example", [[0, 1, 0, 1, 0]], [2]),
    (
        "edge_cases",
        [[], [], [0, 0, 0], [0], [1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0]],
        [0, 3, 0, 0, 3, 7],
    ),
    (
        "short_and_long",
        [
            [1],
            [0, 1],
            [0, 0, 1],
            [1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0],
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1],
            [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
            [0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 0, 1],
        ],
        [1, 4, 1, 6, 3, 40, 5],
    ),
]
FUNCTIONAL_KS = {"cmc": [1, 2, 3, 5, 10], "precision": [1, 2, 3, 5, 10], "map": [1, 2, 3, 5, 10]}
RETRIEVAL_KS = {"cmc": [1, 2, 5], "precision": [1, 3, 5], "map": [2, 5, 8]}


def retrieval_cases(torch):
    """Seeded clustered embeddings; labels, sequences and categories chosen to hit every edge case."""
    g = torch.Generator().manual_seed(20230426)
    dim = 6
    # SOP style: every row is query and gallery (same-item exclusion), plus a few gallery-only rows.
    labels = [0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 4, 4, 4, 5, 5, 6, 6, 6, 7, 8]
    # sequence ids: rows of label 5 share one sequence (so each loses its only positive);
    # label 7's single row shares sequence 9 with row 19 -> no positive; row 9 (label 3) is alone.
    sequence = [0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 13, 14, 15, 16, 9, 9]
    cats = ["bike", "bike", "bike", "chair", "chair", "chair", "chair", "bike", "bike", "lamp",
            "lamp", "lamp", "lamp", "chair", "chair", "bike", "bike", "bike", "lamp", "lamp"]
    centres = torch.randn(9, dim, generator=g)
    emb = centres[torch.tensor(labels)] + 1.0 * torch.randn(len(labels), dim, generator=g)
    emb = emb.float()
    n = len(labels)
    ids_query = list(range(0, 19))  # row 19 is gallery-only
    ids_gallery = list(range(0, n))
    cases = [
        dict(name="sop_style_top8", mode="batched_knn", top_n=8, embeddings=emb, labels=labels,
             sequence=sequence, categories=cats, ids_query=ids_query, ids_gallery=ids_gallery),
        dict(name="sop_style_top3_short", mode="batched_knn", top_n=3, embeddings=emb, labels=labels,
             sequence=sequence, categories=cats, ids_query=ids_query, ids_gallery=ids_gallery),
    ]
    # In-shop style: disjoint query and gallery sets; a tiny gallery gives short lists; one query's
    # whole gallery shares its sequence (empty list, n = 0); one label has no gallery item.
    gq = torch.Generator().manual_seed(7)
    q_labels = [0, 0, 1, 1, 2, 3, 4]
    g_labels = [0, 1, 1, 2, 0, 4]
    q_seq = [0, 1, 2, 3, 4, 5, 6]
    g_seq = [10, 11, 12, 13, 14, 15]
    q_cats = ["top", "top", "dress", "dress", "top", "dress", "top"]
    centres = torch.randn(5, 4, generator=gq)
    eq = (centres[torch.tensor(q_labels)] + 0.5 * torch.randn(len(q_labels), 4, generator=gq)).float()
    eg = (centres[torch.tensor(g_labels)] + 0.5 * torch.randn(len(g_labels), 4, generator=gq)).float()
    cases.append(dict(name="inshop_style", mode="batched_knn_qg", top_n=10, embeddings_query=eq,
                      embeddings_gallery=eg, labels_query=q_labels, labels_gallery=g_labels,
                      sequence_query=q_seq, sequence_gallery=g_seq, categories=q_cats))
    # Same, but query 6 (label 4) shares a sequence with every gallery row of its label and with
    # all others too: its list is empty and n = 0.
    cases.append(dict(name="inshop_style_empty", mode="batched_knn_qg", top_n=4, embeddings_query=eq,
                      embeddings_gallery=eg, labels_query=q_labels, labels_gallery=g_labels,
                      sequence_query=[0, 1, 2, 3, 4, 5, 99], sequence_gallery=[99] * 6, categories=q_cats))
    return cases


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--oml-git-dir", required=True)
    ap.add_argument("--commit", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    root = tempfile.mkdtemp(prefix="oml-golden-")
    try:
        stage(args.oml_git_dir, args.commit, root)
        sys.path.insert(0, root)
        import numpy as np
        import torch
        from oml.functional.knn import batched_knn, batched_knn_qg
        from oml.functional.metrics import calc_cmc, calc_map, calc_precision, calc_retrieval_metrics

        out = {
            "oml_repo": "github.com/OML-Team/open-metric-learning",
            "oml_commit": args.commit,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "generator": "models/metrics/testdata/make_oml_golden.py",
            "functional_ks": FUNCTIONAL_KS,
            "functional": [],
            "retrieval_ks": RETRIEVAL_KS,
            "retrieval": [],
        }
        for name, tops, n_gts in FUNCTIONAL:
            gt_tops = [torch.tensor(t, dtype=torch.bool) for t in tops]
            rec = {"name": name, "gt_tops": tops, "n_gts": n_gts}
            for metric, fn in (("cmc", calc_cmc), ("precision", calc_precision), ("map", calc_map)):
                ks = tuple(FUNCTIONAL_KS[metric])
                vals = fn(gt_tops, n_gts, ks, verbose=False)
                rec[metric] = {str(k): clean(v) for k, v in zip(ks, vals)}
            out["functional"].append(rec)

        ks = {f"{m}_top_k": tuple(v) for m, v in RETRIEVAL_KS.items()}
        for case in retrieval_cases(torch):
            if case["mode"] == "batched_knn":
                lab = torch.tensor(case["labels"], dtype=torch.long)
                seq = torch.tensor(case["sequence"], dtype=torch.long)
                dist, rids, gts = batched_knn(
                    embeddings=case["embeddings"],
                    ids_query=torch.tensor(case["ids_query"], dtype=torch.long),
                    ids_gallery=torch.tensor(case["ids_gallery"], dtype=torch.long),
                    top_n=case["top_n"], sequence_ids=seq, labels_gt=lab, bs=7,
                )
                inputs = {k: clean(case[k]) for k in
                          ("top_n", "embeddings", "labels", "sequence", "ids_query", "ids_gallery")}
            else:
                dist, rids, gts = batched_knn_qg(
                    embeddings_query=case["embeddings_query"], embeddings_gallery=case["embeddings_gallery"],
                    top_n=case["top_n"],
                    labels_query=torch.tensor(case["labels_query"], dtype=torch.long),
                    labels_gallery=torch.tensor(case["labels_gallery"], dtype=torch.long),
                    sequence_ids_query=torch.tensor(case["sequence_query"], dtype=torch.long),
                    sequence_ids_gallery=torch.tensor(case["sequence_gallery"], dtype=torch.long),
                    bs=3,
                )
                inputs = {k: clean(case[k]) for k in
                          ("top_n", "embeddings_query", "embeddings_gallery", "labels_query", "labels_gallery",
                           "sequence_query", "sequence_gallery")}
            cats = np.array(case["categories"])
            if case["mode"] == "batched_knn":
                cats = cats[np.array(case["ids_query"])]  # categories of the query rows
            per_query = calc_retrieval_metrics(rids, gts, query_categories=cats, reduce=False, verbose=False, **ks)
            reduced = calc_retrieval_metrics(rids, gts, query_categories=cats, reduce=True, verbose=False, **ks)
            nanmean = {
                scope: {m: {str(k): clean(np.nanmean(v.numpy())) for k, v in d.items()} for m, d in md.items()}
                for scope, md in per_query.items()
            }
            out["retrieval"].append({
                "name": case["name"],
                "mode": case["mode"],
                "inputs": inputs,
                "query_categories": clean(cats),
                "distances": clean(dist),
                "retrieved_ids": clean(rids),
                "gt_ids": clean(gts),
                "gt_tops": [clean(torch.isin(r, g).int()) for r, g in zip(rids, gts)],
                "n_gts": [len(g) for g in gts],
                "per_query": clean(per_query["OVERALL"]),
                "reduced": clean(reduced),
                "nanmean": nanmean,
            })
    finally:
        shutil.rmtree(root)

    with open(args.out, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()

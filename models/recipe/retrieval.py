"""Retrieval, STIR reranking and metrics with OML semantics (method.md §3–§5), in torch.

Used by train_stir.py to validate the recipe's models in Python; the pipeline has its own Go
implementation. Queries and gallery are index sets of one catalog (SOP layout: every
validation row is both), so a gallery row that is the query row, or shares its non-empty
`sequence`, is excluded from the ranking and from the query's relevant set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

# method.md §4: the rescale margin of OML's PairwiseReranker, 1000 · float32 epsilon.
RERANK_EPS = 1000 * float(np.finfo(np.float32).eps)


@dataclass
class Retrieved:
    """Per query: gallery positions sorted by ascending distance (after exclusions), their
    distances, and the number of relevant gallery rows left after exclusions."""

    ids: List[np.ndarray]
    dists: List[np.ndarray]
    n_relevant: np.ndarray


def excluded(q_rows: Sequence[int], g_rows: Sequence[int], sequences: Sequence[str]) -> torch.Tensor:
    """[Q,G] mask of gallery rows removed for each query: the query row itself and rows of
    the same non-empty sequence."""
    q = torch.tensor(list(q_rows))[:, None]
    g = torch.tensor(list(g_rows))[None, :]
    mask = q == g
    codes: Dict[str, int] = {}
    seq = torch.tensor([codes.setdefault(s, len(codes)) if s else -1 - i for i, s in enumerate(sequences)])
    return mask | (seq[q] == seq[g])


def retrieve(
    q_emb: torch.Tensor,
    g_emb: torch.Tensor,
    q_labels: np.ndarray,
    g_labels: np.ndarray,
    exclude: torch.Tensor,
    n_items: int,
) -> Retrieved:
    """Euclidean top-`n_items` per query with the exclusions applied (method.md §3)."""
    dist = torch.cdist(q_emb.double(), g_emb.double())
    dist[exclude] = float("inf")
    k = min(n_items, dist.shape[1])
    vals, idx = torch.topk(dist, k, dim=1, largest=False, sorted=True)
    ids, dists = [], []
    for v, i in zip(vals, idx):
        keep = torch.isfinite(v)
        ids.append(i[keep].numpy())
        dists.append(v[keep].numpy())
    rel = (q_labels[:, None] == g_labels[None, :]) & ~exclude.numpy()
    return Retrieved(ids, dists, rel.sum(axis=1))


def rerank(ids: np.ndarray, dists: np.ndarray, scores: np.ndarray, top_n: int):
    """OML's PairwiseReranker on one query (method.md §4): the head `ids[:top_n]` is sorted
    by the pairwise scores (stable, so ties keep the embedder's order); the tail keeps its
    order and distances; the head's new distances are the sorted scores, scaled below the
    tail's first distance when they would exceed it."""
    n = min(top_n, len(ids))
    if len(scores) != n:
        raise ValueError(f"{len(scores)} scores for a head of {n}")
    order = np.argsort(scores, kind="stable")
    x1 = np.asarray(scores, dtype=np.float64)[order]
    x2 = np.asarray(dists[n:], dtype=np.float64)
    if len(x2) and x1[-1] > x2[0]:
        x1 = x1 * (x2[0] / x1[-1]) - RERANK_EPS
    return np.concatenate([ids[:n][order], ids[n:]]), np.concatenate([x1, x2])


def query_metrics(hits: np.ndarray, n_relevant: int, ks: Sequence[int]) -> Dict[str, float]:
    """cmc@k, precision@k, map@k of one query (method.md §5); precision is NaN when the
    query has no relevant item (OML's behaviour: the caller reports such queries)."""
    out: Dict[str, float] = {}
    length = len(hits)
    for k in ks:
        if length == 0:
            v = 1.0 if n_relevant == 0 else 0.0
            out[f"cmc@{k}"] = out[f"precision@{k}"] = out[f"map@{k}"] = v
            continue
        kk = min(k, length)
        g = hits[:kk].astype(np.float64)
        n_hits = g.sum()
        out[f"cmc@{k}"] = float(n_hits > 0)
        out[f"precision@{k}"] = float(n_hits / min(n_relevant, kk)) if n_relevant else float("nan")
        prec_at_i = np.cumsum(g) / np.arange(1, kk + 1)
        out[f"map@{k}"] = float((prec_at_i * g).sum() / n_hits) if n_hits else 0.0
    return out


def evaluate(
    ret: Retrieved,
    q_labels: np.ndarray,
    g_labels: np.ndarray,
    q_categories: Sequence[str],
    ks: Sequence[int] = (1, 5),
) -> Dict[str, Dict[str, float]]:
    """Mean metrics over queries, per category and "OVERALL"."""
    rows = []
    for qi, ids in enumerate(ret.ids):
        hits = g_labels[ids] == q_labels[qi]
        rows.append(query_metrics(hits, int(ret.n_relevant[qi]), ks))
    out: Dict[str, Dict[str, float]] = {}
    groups = {"OVERALL": list(range(len(rows)))}
    for cat in sorted(set(q_categories)):
        groups[cat] = [i for i, c in enumerate(q_categories) if c == cat]
    for name, members in groups.items():
        out[name] = {key: float(np.nanmean([rows[i][key] for i in members])) for key in rows[0]}
        out[name]["queries"] = len(members)
    return out


def rerank_all(
    ret: Retrieved, score: Callable[[List[int], List[np.ndarray]], List[np.ndarray]], top_n: int
) -> Retrieved:
    """Applies `rerank` to every query; `score(queries, heads)` returns the pairwise scores
    of each query's head (sigmoid of the logits), batched by the caller."""
    heads = [ids[:top_n] for ids in ret.ids]
    scores = score(list(range(len(heads))), heads)
    new_ids, new_dists = [], []
    for ids, d, s in zip(ret.ids, ret.dists, scores):
        i2, d2 = rerank(ids, d, np.asarray(s), top_n)
        new_ids.append(i2)
        new_dists.append(d2)
    return Retrieved(new_ids, new_dists, ret.n_relevant)


def format_metrics(m: Dict[str, Dict[str, float]], keys: Optional[Sequence[str]] = None) -> str:
    """A small text table: one row per category."""
    keys = list(keys or [k for k in m["OVERALL"] if k != "queries"])
    lines = [f"{'category':10s} {'queries':>7s} " + " ".join(f"{k:>12s}" for k in keys)]
    for name, vals in m.items():
        lines.append(f"{name:10s} {vals['queries']:7d} " + " ".join(f"{vals[k]:12.4f}" for k in keys))
    return "\n".join(lines)

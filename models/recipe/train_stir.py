"""Trains the STIR pair on a synthetic catalog: a ViT embedder (normalised-softmax epochs as a
stand-in for DINO's initialisation, then hardest-in-batch triplet epochs), then the pairwise
reranker (ConcatSiamese) initialised from it, and validates both on the held-out products
with OML semantics (method.md §1, §3–§5). models/zoo/stir-tiny/TRAINING.md has the run
behind the committed models.

    PY="env PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3"
    $PY models/recipe/train_stir.py embedder --catalog DIR/catalog.csv --root DIR --out RUN
    $PY models/recipe/train_stir.py pairwise --catalog DIR/catalog.csv --root DIR --out RUN
    $PY models/recipe/train_stir.py evaluate --catalog DIR/catalog.csv --root DIR --out RUN

RUN/embedder.pt is a bare ViT state dict (vit.load_checkpoint reads it), RUN/pairwise.pt a
ConcatSiamese state dict (pairwise.load_checkpoint reads it); export.py --checkpoint turns
them into ONNX. RUN/*.json hold the hyper-parameters, wall times and validation metrics.

Training sees only split == "train"; validation rows (other products) are every query and
gallery row (SOP layout). Images are decoded once and kept in RAM: the evaluation tensors by
golden.py's reference transform (PIL, bbox crop first, Resize(224, BICUBIC), CenterCrop),
the bbox crops as square copies that the batched training augmentation samples. --device
cuda runs the same code on a GPU. Dev-time only.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import math
import os
import random
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export  # noqa: E402
import golden  # noqa: E402
import pairwise  # noqa: E402
import retrieval  # noqa: E402
import vit  # noqa: E402

TOP_N = 5  # OML's PairwiseReranker default, the candidates STIR rescoring sees


# ---------------------------------------------------------------------------------------
# Data


@dataclasses.dataclass
class Row:
    """One catalog row."""

    label: int
    path: str
    split: str
    category: str
    sequence: str
    bbox: Optional[golden.Box]
    source: int = 0  # 0: the evaluated catalog; n: the n-th --train-catalog


BASE = 256  # side of the square copy of every crop that the training augmentations sample


class Catalog:
    """An OML catalog with every image decoded once: `eval_u8` ([N,3,224,224] uint8, the
    reference transform golden.preprocess) for evaluation and mining; `base_u8` ([N,3,256,256]
    uint8: the bbox crop resized to a square, PIL bicubic) with `sizes` (the crop's width and
    height) for the training augmentations, which sample it in normalised coordinates so the
    crop's true aspect ratio is kept."""

    def __init__(
        self,
        csv_path: str,
        root: str,
        splits: Sequence[str] = ("train", "validation"),
        extra: Sequence[Tuple[str, str]] = (),
        workers: int = 1,
    ):
        # `extra`: (csv, root) of further catalogs whose train rows join the train split, for
        # training on products generated apart from the evaluated ones. Their labels are
        # shifted past the labels read so far and their sequence ids prefixed, so no product
        # or photo session of two catalogs can merge.
        self.rows: List[Row] = []
        roots: List[str] = []
        for n, (path, base, keep) in enumerate([(csv_path, root, splits)] + [(c, r, ("train",)) for c, r in extra]):
            offset = 0 if n == 0 else max((r.label for r in self.rows), default=-1) + 1
            with open(path, newline="") as f:
                for rec in csv.DictReader(f):
                    if rec["split"] not in keep:
                        continue
                    coords = [rec.get(k, "") for k in ("x_1", "y_1", "x_2", "y_2")]
                    bbox = tuple(int(float(v)) for v in coords) if all(coords) else None
                    seq = rec.get("sequence", "")
                    if n and seq:
                        seq = f"x{n}:{seq}"
                    self.rows.append(Row(int(rec["label"]) + offset, rec["path"], rec["split"], rec.get("category", ""), seq, bbox, n))
                    roots.append(base)
        n = len(self.rows)
        self.eval_u8 = torch.empty((n, 3, golden.SIZE, golden.SIZE), dtype=torch.uint8)
        self.base_u8 = torch.empty((n, 3, BASE, BASE), dtype=torch.uint8)
        self.sizes = np.zeros((n, 2), dtype=np.int64)
        jobs = [(os.path.join(b, r.path), r.bbox) for b, r in zip(roots, self.rows)]
        if workers > 1 and n > 1:
            # PIL decoding is single-threaded: spread it over processes (fork: the parent has
            # touched no accelerator yet, the children only run PIL).
            import multiprocessing

            with multiprocessing.get_context("fork").Pool(workers) as pool:
                decoded = pool.imap(decode_row, jobs, chunksize=16)
                for i, (size, base_img, eval_img) in enumerate(decoded):
                    self.sizes[i], self.base_u8[i], self.eval_u8[i] = size, torch.from_numpy(base_img), torch.from_numpy(eval_img)
        else:
            for i, job in enumerate(jobs):
                size, base_img, eval_img = decode_row(job)
                self.sizes[i], self.base_u8[i], self.eval_u8[i] = size, torch.from_numpy(base_img), torch.from_numpy(eval_img)
        self.labels = np.array([r.label for r in self.rows])

    def save(self, path: str) -> None:
        """Writes the decoded catalog (.npz) so later runs skip decoding."""
        rows = json.dumps([dataclasses.astuple(r) for r in self.rows])
        np.savez(path, rows=np.array(rows), eval_u8=self.eval_u8.cpu().numpy(), base_u8=self.base_u8.cpu().numpy(), sizes=self.sizes)

    @classmethod
    def load(cls, path: str) -> "Catalog":
        """Reads what `save` wrote."""
        z = np.load(path)
        cat = cls.__new__(cls)
        cat.rows = [Row(*(tuple(v) if isinstance(v, list) else v for v in r)) for r in json.loads(str(z["rows"]))]
        cat.eval_u8 = torch.from_numpy(z["eval_u8"])
        cat.base_u8 = torch.from_numpy(z["base_u8"])
        cat.sizes = z["sizes"]
        cat.labels = np.array([r.label for r in cat.rows])
        return cat

    def to(self, device: torch.device) -> "Catalog":
        """Moves the image tensors to `device` (the training device)."""
        self.eval_u8 = self.eval_u8.to(device)
        self.base_u8 = self.base_u8.to(device)
        return self

    def split(self, name: str) -> List[int]:
        """Row positions of one split."""
        return [i for i, r in enumerate(self.rows) if r.split == name]


def decode_row(job: Tuple[str, Optional[golden.Box]]) -> Tuple[Tuple[int, int], np.ndarray, np.ndarray]:
    """One row's (crop width and height, base_u8 copy, eval_u8 crop), uint8 CHW arrays."""
    path, bbox = job
    with open(path, "rb") as fh:
        data = fh.read()
    with Image.open(io.BytesIO(data)) as im:
        img = im.convert("RGB")
    crop = img.crop(bbox) if bbox else img
    base_img = np.ascontiguousarray(np.asarray(crop.resize((BASE, BASE), Image.BICUBIC)).transpose(2, 0, 1))
    eval_img = np.ascontiguousarray(np.asarray(golden.preprocess(data, bbox)).transpose(2, 0, 1))
    return crop.size, base_img, eval_img


def normalise_u8(x: torch.Tensor) -> torch.Tensor:
    """uint8 [B,3,H,W] → ToTensor + Normalize (as golden.TO_TENSOR, on x's device)."""
    mean = torch.tensor(golden.MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(golden.STD, device=x.device).view(1, 3, 1, 1)
    return (x.float() / 255 - mean) / std


def rrc_boxes(sizes: np.ndarray, min_scale: float, rng: np.random.Generator) -> np.ndarray:
    """torchvision's RandomResizedCrop.get_params for each (width, height): a region of
    area fraction U(min_scale, 1) and aspect ratio log-U(3/4, 4/3), 10 tries, else the
    centre crop with the ratio clamped. Returns (left, top, width, height) in pixels."""
    out = np.zeros((len(sizes), 4))
    log_r = (math.log(3 / 4), math.log(4 / 3))
    for n, (w_img, h_img) in enumerate(sizes):
        area = w_img * h_img
        for _ in range(10):
            target = area * rng.uniform(min_scale, 1.0)
            ratio = math.exp(rng.uniform(*log_r))
            w = int(round(math.sqrt(target * ratio)))
            h = int(round(math.sqrt(target / ratio)))
            if 0 < w <= w_img and 0 < h <= h_img:
                out[n] = (rng.integers(0, w_img - w + 1), rng.integers(0, h_img - h + 1), w, h)
                break
        else:
            ratio = w_img / h_img
            if ratio < 3 / 4:
                w, h = w_img, int(round(w_img / (3 / 4)))
            elif ratio > 4 / 3:
                h, w = h_img, int(round(h_img * (4 / 3)))
            else:
                w, h = w_img, h_img
            out[n] = ((w_img - w) // 2, (h_img - h) // 2, w, h)
    return out


def augment(cat: Catalog, rows: Sequence[int], min_scale: float, hflip: bool, rng: np.random.Generator) -> torch.Tensor:
    """The training transform, batched: RandomResizedCrop(224, scale=(min_scale, 1)) and a
    horizontal flip with probability ½ (OML's augs_hypvit_torch), sampled bilinearly from
    the square `base_u8` copies in normalised coordinates, then normalised."""
    rows = list(rows)
    sizes = cat.sizes[rows]
    boxes = rrc_boxes(sizes, min_scale, rng)
    w_img, h_img = sizes[:, 0].astype(np.float64), sizes[:, 1].astype(np.float64)
    sx = boxes[:, 2] / w_img  # half-extent of the region in [-1, 1] units
    sy = boxes[:, 3] / h_img
    cx = 2 * (boxes[:, 0] + boxes[:, 2] / 2) / w_img - 1
    cy = 2 * (boxes[:, 1] + boxes[:, 3] / 2) / h_img - 1
    flip = np.where(rng.random(len(rows)) < 0.5, -1.0, 1.0) if hflip else np.ones(len(rows))
    theta = np.zeros((len(rows), 2, 3))
    theta[:, 0, 0], theta[:, 0, 2] = sx * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = sy, cy
    dev = cat.base_u8.device
    theta_t = torch.tensor(theta, dtype=torch.float32, device=dev)
    grid = F.affine_grid(theta_t, [len(rows), 3, golden.SIZE, golden.SIZE], align_corners=False)
    x = F.grid_sample(cat.base_u8[rows].float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return normalise_u8(x.round().clamp(0, 255))


def balanced_batches(labels: np.ndarray, rows: List[int], n_labels: int, n_instances: int, rng: random.Random):
    """One epoch of n_labels × n_instances batches (OML's BalanceSampler): labels shuffled
    and chunked; each label's rows drawn without replacement, or with it when it has fewer
    than n_instances."""
    by_label: Dict[int, List[int]] = {}
    for i in rows:
        by_label.setdefault(int(labels[i]), []).append(i)
    keys = sorted(by_label)
    rng.shuffle(keys)
    for s in range(0, len(keys) - n_labels + 1, n_labels):
        batch = []
        for lab in keys[s : s + n_labels]:
            ids = by_label[lab]
            if len(ids) >= n_instances:
                batch += rng.sample(ids, n_instances)
            else:
                batch += [rng.choice(ids) for _ in range(n_instances)]
        yield batch


@torch.no_grad()
def embed(model: vit.ViT, cat: Catalog, rows: Sequence[int], batch: int = 128) -> torch.Tensor:
    """Embeddings of catalog rows on the evaluation transform (eval mode)."""
    model.eval()
    dev = cat.eval_u8.device
    model.to(dev)
    out = [model(normalise_u8(cat.eval_u8[list(rows[s : s + batch])])) for s in range(0, len(rows), batch)]
    return torch.cat(out)


# ---------------------------------------------------------------------------------------
# Losses and miners


def hardest(dist: torch.Tensor, labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per anchor, the index of the hardest positive (farthest row with its label, itself
    excluded) and the hardest negative (nearest row with another label): OML's
    HardTripletsMiner. Every anchor needs a positive and a negative in the batch."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos = dist.masked_fill(~same | eye, float("-inf")).argmax(dim=1)
    neg = dist.masked_fill(same, float("inf")).argmin(dim=1)
    return pos, neg


def triplet_hard_loss(emb: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """mean(relu(d(a,p) − d(a,n) + margin)) over hardest-in-batch triplets, Euclidean."""
    dist = torch.cdist(emb, emb)
    with torch.no_grad():
        pos, neg = hardest(dist, labels)
    a = torch.arange(len(labels), device=labels.device)
    return F.relu(dist[a, pos] - dist[a, neg] + margin).mean()


def hard_pairs(emb: torch.Tensor, labels: torch.Tensor) -> List[Tuple[int, int, int]]:
    """OML's PairsMiner(hard_mining=True): the hardest positive and negative pair of every
    anchor, as unordered pairs without duplicates; (i, j, is_negative)."""
    pos, neg = hardest(torch.cdist(emb, emb), labels)
    pos, neg = pos.tolist(), neg.tolist()  # one device sync, not one per anchor
    pairs = set()
    for a in range(len(labels)):
        pairs.add((*sorted((a, pos[a])), 0))
        pairs.add((*sorted((a, neg[a])), 1))
    return sorted(pairs)


# ---------------------------------------------------------------------------------------
# Training


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_embedder(cat: Catalog, args) -> Tuple[vit.ViT, List[Dict[str, float]]]:
    """Triplet training of a fresh ViT (method.md §1 with from-scratch settings)."""
    seed_all(args.seed)
    dev = cat.eval_u8.device
    cfg = vit.CONFIGS[args.config]
    model = vit.ViT(cfg, normalize=True)
    vit.init_weights(model, seed=args.seed, std=args.init_std, patch_std=args.patch_std)
    model.to(dev)
    train = cat.split("train")
    classes = {lab: k for k, lab in enumerate(sorted({int(cat.labels[i]) for i in train}))}
    proxies = nn.Parameter(torch.randn(len(classes), cfg.dim, generator=torch.Generator().manual_seed(args.seed)).to(dev))
    opt = torch.optim.AdamW([*model.parameters(), proxies], lr=args.lr, weight_decay=args.weight_decay)
    rng = random.Random(args.seed)
    nrng = np.random.default_rng(args.seed)
    steps_per_epoch = len(classes) // args.n_labels
    epochs = args.pretrain_epochs + args.epochs
    total = steps_per_epoch * epochs
    t0 = time.time()
    budget = args.time_budget
    if budget:
        # Schedule by wall time instead of steps: the cosine decays over `budget` seconds and
        # the classification epochs take the first pretrain / (pretrain + epochs) of them.
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / args.warmup) * cosine((time.time() - t0) / budget)
        )
        epochs = 10**9
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, total, args.warmup))
    log = []
    for epoch in range(epochs):
        if args.max_seconds and time.time() - t0 > args.max_seconds:
            print(f"stopping after {epoch} epochs: --max-seconds {args.max_seconds} reached", flush=True)
            break
        if budget and time.time() - t0 >= budget:
            print(f"stopping after {epoch} epochs: --time-budget {budget} reached", flush=True)
            break
        if budget:
            pretrain = time.time() - t0 < budget * args.pretrain_epochs / max(1, args.pretrain_epochs + args.epochs)
        else:
            pretrain = epoch < args.pretrain_epochs
        model.train()
        losses = []
        for batch in balanced_batches(cat.labels, train, args.n_labels, args.n_instances, rng):
            if budget and time.time() - t0 >= budget:
                break
            x = augment(cat, batch, args.min_scale, True, nrng)
            y = torch.as_tensor(cat.labels[batch], device=dev)
            emb = model(x)
            if pretrain:
                # Normalised-softmax classification of the train products: a stand-in for the
                # DINO initialisation, which hardest-triplet training from scratch lacks (it
                # collapses every embedding onto one point, loss = margin).
                target = torch.tensor([classes[int(v)] for v in cat.labels[batch]], device=dev)
                loss = F.cross_entropy(args.pretrain_scale * emb @ F.normalize(proxies, dim=1).T, target)
            else:
                loss = triplet_hard_loss(emb, y, args.margin)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.detach())  # no host sync per step
        entry = {
            "epoch": epoch + 1,
            "phase": "classification" if pretrain else "triplet",
            "loss": float(torch.stack(losses).mean()) if losses else float("nan"),
            "wall_s": round(time.time() - t0, 1),
        }
        if args.eval_every and ((epoch + 1) % args.eval_every == 0 or epoch + 1 == epochs):
            entry.update(flat(evaluate_embedder(model, cat)[0]["OVERALL"]))
        log.append(entry)
        print(json.dumps(entry), flush=True)
    return model.eval().cpu(), log


def cosine(progress: float) -> float:
    """Cosine decay from 1 to 0 over progress 0 … 1."""
    return 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, progress))))


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def neighbour_pairs(cat: Catalog, emb: torch.Tensor, rows: List[int], k: int, block: int = 1024) -> List[Tuple[int, int, int]]:
    """(query, candidate, is_negative) for the embedder's top-k of every row among `rows`
    (self and same-sequence rows excluded): the pairs the reranker meets at inference.
    `emb` holds the rows' embeddings in `rows` order, on any device; queries go in blocks so
    the distance matrix of a large training set is never whole."""
    labels = cat.labels[rows]
    codes: Dict[str, int] = {}
    seq = [codes.setdefault(cat.rows[i].sequence, len(codes)) if cat.rows[i].sequence else -1 - n for n, i in enumerate(rows)]
    seq_t = torch.tensor(seq, device=emb.device)
    ids_all = torch.arange(len(rows), device=emb.device)
    emb = emb.double()
    out = []
    for s in range(0, len(rows), block):
        q = ids_all[s : s + block]
        dist = torch.cdist(emb[q], emb)
        dist[(q[:, None] == ids_all[None, :]) | (seq_t[q][:, None] == seq_t[None, :])] = float("inf")
        vals, idx = torch.topk(dist, min(k, len(rows)), dim=1, largest=False, sorted=True)
        for qi, (v, ids) in enumerate(zip(vals.cpu(), idx.cpu())):
            for gi in ids[torch.isfinite(v)].tolist():
                out.append((rows[s + qi], rows[gi], int(labels[s + qi] != labels[gi])))
    return out


def query_lists(pairs: List[Tuple[int, int, int]]) -> List[List[Tuple[int, int, int]]]:
    """neighbour_pairs' output cut into each query's list (its pairs are consecutive)."""
    out: List[List[Tuple[int, int, int]]] = []
    for p in pairs:
        if out and out[-1][0][0] == p[0]:
            out[-1].append(p)
        else:
            out.append([p])
    return out


def list_loss(logits: torch.Tensor, negative: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Listwise softmax loss of the reranker's task: within each query's list (`group` ids,
    0..G-1), −log of the softmax mass that −logit puts on the same-product candidates. Lists
    without both a positive and a negative cannot change CMC@1 and are left out; 0 if none
    is left."""
    sim = -logits.float()
    n = int(group.max()) + 1 if len(group) else 0
    member = group[None, :] == torch.arange(n, device=logits.device)[:, None]  # [lists, pairs]
    pos = member & (negative < 0.5)[None, :]
    useful = pos.any(dim=1) & (member & ~pos).any(dim=1)
    if not bool(useful.any()):
        return logits.sum() * 0.0

    def lse(mask: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(sim[None, :].masked_fill(~mask[useful], float("-inf")), dim=1)

    return (lse(member) - lse(pos)).mean()


def fit_logistic(x: torch.Tensor, y: torch.Tensor, iters: int = 30) -> Tuple[float, float]:
    """Maximum-likelihood (a, b) of P(y = 1 | x) = sigmoid(a·x + b), by Newton's method (a
    tiny ridge keeps the Hessian invertible)."""
    X = torch.stack([x.double(), torch.ones_like(x, dtype=torch.float64)], dim=1)
    y = y.double()
    w = torch.zeros(2, dtype=torch.float64, device=x.device)
    ridge = 1e-6 * torch.eye(2, dtype=torch.float64, device=x.device)
    for _ in range(iters):
        p = torch.sigmoid(X @ w)
        w = w - torch.linalg.solve(X.T @ (X * (p * (1 - p))[:, None]) + ridge, X.T @ (p - y) + ridge @ w)
    return float(w[0]), float(w[1])


def knn_galleries(cat: Catalog, rows: List[int], group: int, sources: str, seed: int) -> List[List[int]]:
    """The row sets searched for neighbour pairs. group 0 and sources "all": every train
    row in one gallery (the default). Otherwise each catalog apart (sources "extra": only
    the --train-catalog ones), its products shuffled by `seed` and cut into galleries of
    `group` products (0: the whole catalog), so the top-k come from a gallery the size of
    the evaluated one, as the reranker meets them."""
    if not group and sources == "all":
        return [list(rows)]
    out = []
    for src in sorted({cat.rows[i].source for i in rows}):
        if sources == "extra" and src == 0:
            continue
        mine = [i for i in rows if cat.rows[i].source == src]
        labels = sorted({int(cat.labels[i]) for i in mine})
        random.Random(seed + src).shuffle(labels)
        size = group or len(labels)
        bucket = {lab: n // size for n, lab in enumerate(labels)}
        parts: Dict[int, List[int]] = {}
        for i in mine:
            parts.setdefault(bucket[int(cat.labels[i])], []).append(i)
        out += [parts[k] for k in sorted(parts)]
    return out


def train_pairwise(cat: Catalog, embedder: vit.ViT, args) -> Tuple[pairwise.ConcatSiamese, List[Dict[str, float]]]:
    """ConcatSiamese training: backbone from the embedder, BCE-with-logits on pairs mined with
    the frozen embedder (in-batch hardest positive/negative per anchor, OML's recipe, plus the
    embedder's top-k neighbours of every train row); head only first, then everything.
    --distill blends the frozen embedder's calibrated verdict on each pair into the target."""
    seed_all(args.seed)
    dev = cat.eval_u8.device
    cfg = embedder.cfg
    pair_cfg = vit.CONFIGS[args.pair_config or args.config]
    if args.init_pairwise:
        # Continue an earlier pairwise run (its head and backbone).
        model = pairwise.load_checkpoint(args.init_pairwise, pair_cfg)
    else:
        model = pairwise.ConcatSiamese(pair_cfg)
        vit.init_weights(model.vit, seed=args.seed, std=args.init_std)  # blocks beyond the embedder's
        pairwise.init_head(model, args.seed)
        model.load_embedder(embedder)
    model.to(dev)
    embedder = embedder.to(dev)
    train = cat.split("train")
    emb = torch.zeros(len(cat.rows), cfg.dim, device=dev)
    emb[train] = embed(embedder, cat, train)

    def mine_knn(seed: int) -> List[Tuple[int, int, int]]:
        out = []
        for gallery in knn_galleries(cat, train, args.knn_group, args.knn_from, seed):
            out += neighbour_pairs(cat, emb[gallery], gallery, args.knn)
        print(f"neighbour pairs: {len(out)}, {sum(n for _, _, n in out) / max(1, len(out)):.3f} negative", flush=True)
        return out

    knn = mine_knn(args.seed) if args.knn else []
    # --distill: the target mixes the label with the frozen embedder's own verdict on the same
    # augmented pair, sigmoid(a·distance + b), (a, b) fitted to the first epoch's pairs.
    calib: Optional[Tuple[float, float]] = None
    rng = random.Random(args.seed)
    nrng = np.random.default_rng(args.seed)
    log = []
    t0 = time.time()
    # --time-budget: epochs until that many seconds, the full-model phase's learning rate
    # decaying by cosine over what is left of them after the head-only epochs.
    budget = args.time_budget
    t_all = t0
    for epoch in range(10**9 if budget else args.epochs):
        if args.max_seconds and time.time() - t0 > args.max_seconds:
            print(f"stopping after {epoch} epochs: --max-seconds {args.max_seconds} reached", flush=True)
            break
        if budget and time.time() - t0 >= budget:
            print(f"stopping after {epoch} epochs: --time-budget {budget} reached", flush=True)
            break
        head_only = epoch < args.head_epochs
        for p in model.extractor.parameters():
            p.requires_grad_(not head_only)
        if epoch == 0 or epoch == args.head_epochs:
            params = model.head.parameters() if head_only else model.parameters()
            lr = args.head_lr if head_only else args.lr
            opt = torch.optim.AdamW(params, lr=lr, weight_decay=args.weight_decay if not head_only else 0.0)
            t_all = time.time()
        if args.knn and args.knn_group and epoch:
            knn = mine_knn(args.seed + epoch)  # other galleries, other look-alikes, every epoch
        model.train()
        pairs = []
        # --miner none: only the neighbour pairs, without OML's hardest-pair miner.
        for batch in balanced_batches(cat.labels, train, args.n_labels, args.n_instances, rng) if args.miner == "hard" else ():
            labels = torch.as_tensor(cat.labels[batch], device=dev)
            pairs += [(batch[i], batch[j], n) for i, j, n in hard_pairs(emb[batch], labels)]
        if args.list_loss:
            # Whole neighbour lists, shuffled as units and packed into batches of whole lists.
            lists = query_lists(knn)
            lists = rng.sample(lists, int(round(args.knn_sample * len(lists))))
            per = max(1, args.batch // args.knn)
            if args.max_pairs:
                lists = lists[: max(1, args.max_pairs // args.knn)]
            pairs = [p for lst in lists for p in lst]
            spans = [lists[s : s + per] for s in range(0, len(lists) - per + 1, per)]
        else:
            pairs += rng.sample(knn, int(round(args.knn_sample * len(knn))))
            rng.shuffle(pairs)
            if args.max_pairs:
                pairs = pairs[: args.max_pairs]
            spans = [[pairs[s : s + args.batch]] for s in range(0, len(pairs) - args.batch + 1, args.batch)]
        if args.distill and calib is None and pairs:
            a_idx = torch.tensor([a for a, _, _ in pairs], device=dev)
            b_idx = torch.tensor([b for _, b, _ in pairs], device=dev)
            calib = fit_logistic((emb[a_idx] - emb[b_idx]).norm(dim=1), torch.tensor([float(n) for _, _, n in pairs], device=dev))
            print(f"distillation target: sigmoid({calib[0]:.3f} · distance + {calib[1]:.3f}), weight {args.distill}", flush=True)
        losses, accs = [], []
        t_epoch = time.time()
        for span in spans:
            if budget:
                now = time.time()
                if now - t0 >= budget:
                    break
                if not head_only:
                    for g in opt.param_groups:
                        g["lr"] = args.lr * cosine((now - t_all) / max(1e-9, t0 + budget - t_all))
            chunk = [p for lst in span for p in lst]
            group = torch.tensor([g for g, lst in enumerate(span) for _ in lst], device=dev)
            # Either image may be on top in training: the pair, not the order, is labelled.
            chunk = [(b, a, n) if rng.random() < args.swap else (a, b, n) for a, b, n in chunk]
            x1 = augment(cat, [a for a, _, _ in chunk], args.min_scale, args.hflip, nrng)
            x2 = augment(cat, [b for _, b, _ in chunk], args.min_scale, args.hflip, nrng)
            y = torch.tensor([float(n) for _, _, n in chunk], device=dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.amp):
                logits = model(x1, x2)[:, 0].float()
            target = y
            if calib is not None:
                with torch.no_grad():
                    dist = (embedder(x1) - embedder(x2)).norm(dim=1)
                    target = (1 - args.distill) * y + args.distill * torch.sigmoid(calib[0] * dist + calib[1])
            loss = F.binary_cross_entropy_with_logits(logits, target)
            if args.list_loss:
                loss = loss + args.list_loss * list_loss(logits, y, group)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.detach())  # no host sync per step
            accs.append(((logits > 0).float() == y).float().mean().detach())
        entry = {
            "epoch": epoch + 1,
            "phase": "head" if head_only else "all",
            "pairs": len(pairs),
            "loss": float(torch.stack(losses).mean()) if losses else float("nan"),
            "acc": float(torch.stack(accs).mean()) if accs else float("nan"),
            "negatives": round(sum(n for _, _, n in pairs) / max(1, len(pairs)), 3),
            "pairs_per_s": round(sum(len(lst) for span in spans[: len(losses)] for lst in span) / max(1e-9, time.time() - t_epoch), 1),
            "wall_s": round(time.time() - t0, 1),
        }
        if args.eval_every and ((epoch + 1) % args.eval_every == 0 or (not budget and epoch + 1 == args.epochs)):
            before, after, _ = evaluate_stir(embedder, model, cat)
            entry.update({"cmc@1_before": before["OVERALL"]["cmc@1"], "cmc@1_after": after["OVERALL"]["cmc@1"]})
            entry.update({"map@5_before": before["OVERALL"]["map@5"], "map@5_after": after["OVERALL"]["map@5"]})
            if args.keep_checkpoints:
                torch.save(model.stir_state_dict(), os.path.join(args.out, f"pairwise-e{epoch + 1}.pt"))
        log.append(entry)
        print(json.dumps(entry), flush=True)
    return model.eval().cpu(), log


# ---------------------------------------------------------------------------------------
# Evaluation


def validation_retrieval(embedder: vit.ViT, cat: Catalog, n_items: int = 100):
    """The embedder's ranking of the validation split (every row query and gallery)."""
    val = cat.split("validation")
    labels = cat.labels[val]
    emb = embed(embedder, cat, val).cpu()
    ex = retrieval.excluded(val, val, [cat.rows[i].sequence for i in range(len(cat.rows))])
    return val, labels, retrieval.retrieve(emb, emb, labels, labels, ex, n_items)


def evaluate_embedder(embedder: vit.ViT, cat: Catalog):
    val, labels, ret = validation_retrieval(embedder, cat)
    cats = [cat.rows[i].category for i in val]
    return retrieval.evaluate(ret, labels, labels, cats), ret


@torch.no_grad()
def pair_logits(model: torch.nn.Module, cat: Catalog, pairs: Sequence[Tuple[int, int]], batch: int = 64) -> np.ndarray:
    """Logits of (query row, candidate row) pairs on the evaluation transform (eval mode)."""
    model.eval()
    model.to(cat.eval_u8.device)
    out = []
    for s in range(0, len(pairs), batch):
        chunk = pairs[s : s + batch]
        q = normalise_u8(cat.eval_u8[[a for a, _ in chunk]])
        c = normalise_u8(cat.eval_u8[[b for _, b in chunk]])
        out.append(model(q, c)[:, 0].cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def evaluate_stir(embedder: vit.ViT, model: torch.nn.Module, cat: Catalog, top_n: int = TOP_N):
    """Embedder metrics, and the same after reranking its top_n with the pairwise model."""
    val, labels, ret = validation_retrieval(embedder, cat)
    cats = [cat.rows[i].category for i in val]

    def score(queries, heads):
        pairs = [(val[q], val[int(g)]) for q, h in zip(queries, heads) for g in h]
        probs = torch.sigmoid(torch.from_numpy(pair_logits(model, cat, pairs))).numpy()
        out, s = [], 0
        for h in heads:
            out.append(probs[s : s + len(h)])
            s += len(h)
        return out

    after = retrieval.rerank_all(ret, score, top_n)
    return retrieval.evaluate(ret, labels, labels, cats), retrieval.evaluate(after, labels, labels, cats), after


def flat(m: Dict[str, float]) -> Dict[str, float]:
    return {k: round(v, 4) for k, v in m.items() if k != "queries"}


# ---------------------------------------------------------------------------------------
# CLI


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=("embedder", "pairwise", "evaluate", "decode"))
    ap.add_argument("--catalog", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--out", required=True, help="run directory (checkpoints, logs, metrics)")
    ap.add_argument("--train-catalog", action="append", default=[], help="another catalog whose train rows join the training set (repeatable)")
    ap.add_argument("--train-root", action="append", default=[], help="the dataset root of each --train-catalog, in order")
    ap.add_argument("--workers", type=int, default=1, help="processes decoding the images")
    ap.add_argument("--config", choices=sorted(vit.CONFIGS), default="tiny")
    ap.add_argument(
        "--pair-config",
        choices=sorted(vit.CONFIGS),
        help="pairwise backbone (default --config); a deeper one of the same shape (e.g. tiny-d4) is grown from the embedder",
    )
    ap.add_argument("--embedder", help="embedder checkpoint (default OUT/embedder.pt)")
    ap.add_argument("--pairwise", help="pairwise checkpoint (default OUT/pairwise.pt)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    ap.add_argument("--cache", help="decoded-catalog cache file (.npz), written on first use")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--warmup", type=int, default=50, help="embedder: linear warm-up steps before the cosine decay")
    ap.add_argument("--init-std", type=float, default=0.02, help="embedder init: trunc-normal std (vit.init_weights)")
    ap.add_argument("--patch-std", type=float, default=None, help="embedder init: std of the patch projection")
    ap.add_argument("--pretrain-epochs", type=int, default=0, help="embedder: normalised-softmax epochs before the triplet ones")
    ap.add_argument("--pretrain-scale", type=float, default=16.0, help="embedder: softmax scale of the classification epochs")
    ap.add_argument("--margin", type=float, default=0.15, help="embedder: triplet margin")
    ap.add_argument("--n-labels", type=int, default=16)
    ap.add_argument("--n-instances", type=int, default=4)
    ap.add_argument("--min-scale", type=float, default=0.2, help="RandomResizedCrop scale lower bound")
    ap.add_argument("--no-hflip", dest="hflip", action="store_false", help="pairwise: no horizontal flips")
    ap.add_argument("--head-epochs", type=int, default=2, help="pairwise: epochs training the head only")
    ap.add_argument("--head-lr", type=float, default=2e-3, help="pairwise: learning rate of the head-only phase")
    ap.add_argument("--batch", type=int, default=48, help="pairwise: pairs per step")
    ap.add_argument("--knn", type=int, default=TOP_N, help="pairwise: add each train row's top-k neighbour pairs (0: none)")
    ap.add_argument("--knn-group", type=int, default=0, help="pairwise: neighbour pairs from galleries of this many products, each catalog apart, drawn anew every epoch (0: all train rows)")
    ap.add_argument("--knn-from", choices=("all", "extra"), default="all", help="pairwise: neighbour pairs from every catalog, or only the --train-catalog ones")
    ap.add_argument("--miner", choices=("hard", "none"), default="hard", help="pairwise: OML's hardest-pair miner on balanced batches, or none (neighbour pairs only)")
    ap.add_argument("--keep-checkpoints", action="store_true", help="pairwise: save OUT/pairwise-eN.pt at every validation")
    ap.add_argument("--knn-sample", type=float, default=1.0, help="pairwise: share of the neighbour pairs used per epoch")
    ap.add_argument("--init-pairwise", help="pairwise: start from this pairwise checkpoint instead of the embedder")
    ap.add_argument("--amp", action="store_true", help="pairwise: bfloat16 autocast in the training forward pass")
    ap.add_argument("--max-pairs", type=int, default=0, help="pairwise: cap on the pairs of an epoch (0: all)")
    ap.add_argument(
        "--distill",
        type=float,
        default=0.0,
        help="pairwise: weight of the frozen embedder's calibrated verdict in the BCE target (0: labels only)",
    )
    ap.add_argument(
        "--list-loss",
        type=float,
        default=0.0,
        help="pairwise: weight of a listwise softmax loss over each query's neighbour list, added to BCE (needs --knn and --miner none)",
    )
    ap.add_argument("--swap", type=float, default=0.5, help="pairwise: probability of putting the candidate on top")
    ap.add_argument("--max-seconds", type=float, default=0, help="stop starting epochs after this much training time (0: no limit)")
    ap.add_argument(
        "--time-budget",
        type=float,
        default=0,
        help="train for this many seconds, the schedule following wall time instead of epochs (0: by epochs)",
    )
    ap.add_argument(
        "--prior",
        type=export.parse_prior,
        metavar="EMBEDDER.pt,SCALE,OFFSET",
        help="evaluate: the pairwise model with the embedder's calibrated verdict added to its logit (export.py --prior)",
    )
    ap.add_argument("--eval-every", type=int, default=0, help="validate every N epochs (0: only at the end of the stage)")
    args = ap.parse_args(argv)
    if args.prior and args.stage != "evaluate":
        ap.error("--prior applies to the evaluate stage (export.py --prior builds the graph)")
    if args.list_loss and (not args.knn or args.miner != "none"):
        ap.error("--list-loss trains on whole neighbour lists: give --knn K and --miner none")
    if len(args.train_root) != len(args.train_catalog):
        ap.error("give one --train-root per --train-catalog")
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)

    t0 = time.time()
    if args.cache and os.path.exists(args.cache):
        cat = Catalog.load(args.cache)
    else:
        cat = Catalog(args.catalog, args.root, extra=list(zip(args.train_catalog, args.train_root)), workers=args.workers)
        if args.cache:
            cat.save(args.cache)
    cat.to(torch.device(args.device))
    load_s = time.time() - t0
    print(f"catalog: {len(cat.rows)} rows ({len(cat.split('train'))} train) decoded in {load_s:.1f}s", flush=True)
    emb_path = args.embedder or os.path.join(args.out, "embedder.pt")
    pw_path = args.pairwise or os.path.join(args.out, "pairwise.pt")
    record = {"stage": args.stage, "args": vars(args), "catalog_rows": len(cat.rows), "decode_s": round(load_s, 1)}

    if args.stage == "decode":
        pass  # only the --cache file
    elif args.stage == "embedder":
        t1 = time.time()
        model, log = train_embedder(cat, args)
        record["train_s"] = round(time.time() - t1, 1)
        torch.save(model.state_dict(), emb_path)
        metrics, _ = evaluate_embedder(model, cat)
        record.update(log=log, validation=metrics)
        print(retrieval.format_metrics(metrics))
    elif args.stage == "pairwise":
        embedder = vit.load_checkpoint(emb_path, vit.CONFIGS[args.config])
        t1 = time.time()
        model, log = train_pairwise(cat, embedder, args)
        record["train_s"] = round(time.time() - t1, 1)
        torch.save(model.stir_state_dict(), pw_path)
        before, after, _ = evaluate_stir(embedder, model, cat)
        record.update(log=log, validation_embedder=before, validation_stir=after)
        print("embedder:\n" + retrieval.format_metrics(before))
        print(f"STIR (top_n {TOP_N}):\n" + retrieval.format_metrics(after))
    else:
        embedder = vit.load_checkpoint(emb_path, vit.CONFIGS[args.config])
        model = export.with_prior(pairwise.load_checkpoint(pw_path, vit.CONFIGS[args.pair_config or args.config]), args.prior, args.config)
        before, after, _ = evaluate_stir(embedder, model, cat)
        record.update(
            embedder_sha256=export.sha256_file(emb_path),
            pairwise_sha256=export.sha256_file(pw_path),
            validation_embedder=before,
            validation_stir=after,
        )
        print("embedder:\n" + retrieval.format_metrics(before))
        print(f"STIR (top_n {TOP_N}):\n" + retrieval.format_metrics(after))
    record["wall_s"] = round(time.time() - t0, 1)
    with open(os.path.join(args.out, f"{args.stage}.json"), "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()

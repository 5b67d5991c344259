"""The STIR pairwise model (method.md §1, OML's ConcatSiamese), written for torch 1.13.

The query and one candidate, each [B,3,224,224] after preprocessing, are stacked along the
height (query on top) and one ViT (vit.py) runs over the 28×14 patches + CLS of the
[B,3,448,224] result, so attention compares the two images patch by patch. The ViT is used
without L2 normalisation (OML builds the pairwise extractor with normalise_features=False):
its CLS token after the final LayerNorm goes through the head

    Linear(D→h, bias) → Sigmoid → Dropout(0.5) → … → Linear(h→1, no bias)

(torchvision's MLP with the last bias and dropout removed, as ConcatSiamese builds it). The
logit means "the pair is DIFFERENT"; sigmoid(logit) is used as a distance.

Module and parameter names follow ConcatSiamese (`extractor.model.<ViT names>`, `head.N.*`),
so an OML postprocessor checkpoint loads strictly with `load_checkpoint`.

Dev-time only: the pipeline runs the ONNX export of `PairwiseGraph`.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Dict, List, Mapping, Optional, Sequence

import torch
from torch import nn

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vit  # noqa: E402

# OML's ConcatSiamese head dropout (torchvision MLP, dropout=0.5), active in training only.
HEAD_DROPOUT = 0.5


def default_hidden(cfg: vit.ViTConfig) -> List[int]:
    """method.md §1: one hidden layer of D/2 (ViT-S/16: 384 → 192 → 1)."""
    return [cfg.dim // 2]


class Extractor(nn.Module):
    """Holds the ViT as `model`, like OML's ViTExtractor, so keys read `extractor.model.*`."""

    def __init__(self, cfg: vit.ViTConfig):
        super().__init__()
        self.model = vit.ViT(cfg, normalize=False)


def make_head(dim: int, hidden: Sequence[int]) -> nn.Sequential:
    """The ConcatSiamese head: per hidden width Linear → Sigmoid → Dropout, then a bias-free
    Linear to one logit and an Identity (where torchvision's last dropout was)."""
    layers: List[nn.Module] = []
    width = dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.Sigmoid(), nn.Dropout(HEAD_DROPOUT)]
        width = h
    layers += [nn.Linear(width, 1, bias=False), nn.Identity()]
    return nn.Sequential(*layers)


class ConcatSiamese(nn.Module):
    """Pairwise model: (x1 [B,3,S,S], x2 [B,3,S,S]) → logits [B,1], "x1 and x2 differ"."""

    def __init__(self, cfg: vit.ViTConfig, hidden: Optional[Sequence[int]] = None):
        super().__init__()
        self.cfg = cfg
        self.hidden = list(default_hidden(cfg) if hidden is None else hidden)
        self.extractor = Extractor(cfg)
        self.head = make_head(cfg.dim, self.hidden)

    @property
    def vit(self) -> vit.ViT:
        """The backbone."""
        return self.extractor.model

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, pos_embed: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = torch.cat((x1, x2), dim=2)  # query on top: [B, 3, 2S, S]
        return self.head(self.vit.features(x, pos_embed=pos_embed))

    def load_embedder(self, embedder: vit.ViT) -> None:
        """Initialises the backbone from a trained embedder, as OML initialises the pairwise
        extractor from the embedding model's checkpoint (the head keeps its init).

        A backbone deeper than the embedder, otherwise of its shape, is grown from it: the
        embedder's blocks come first, and each extra block starts as the identity (its
        attention and MLP output projections zeroed, the rest kept), so the grown backbone
        computes exactly the embedder's features until training changes them."""
        mine, theirs = self.cfg, embedder.cfg
        if mine == theirs:
            self.vit.load_state_dict(embedder.state_dict(), strict=True)
            return
        if dataclasses.replace(mine, depth=theirs.depth) != theirs or mine.depth < theirs.depth:
            raise ValueError(f"a pairwise backbone {mine} cannot start from an embedder {theirs}: only a deeper copy of its shape can")
        state = self.vit.state_dict()
        state.update(embedder.state_dict())  # block indices below the embedder's depth
        self.vit.load_state_dict(state, strict=True)
        with torch.no_grad():
            for blk in self.vit.blocks[theirs.depth :]:
                for lin in (blk.attn.proj, blk.mlp.fc2):
                    lin.weight.zero_()
                    lin.bias.zero_()

    def stir_state_dict(self) -> Dict[str, torch.Tensor]:
        """The state dict in ConcatSiamese's key layout (what `load_checkpoint` reads)."""
        return {k: v.detach().clone() for k, v in self.state_dict().items()}


class WithPrior(nn.Module):
    """A pairwise model plus the embedder's own calibrated verdict on the pair:

        logit = model(x1, x2) + scale·‖E(x1) − E(x2)‖ + offset

    where scale·d + offset is the logistic fit of "different" on the embedder's distance d
    over training pairs (train_stir.py's --distill calibration). The two log-odds add, so
    the reranker orders a query's head by both opinions: the pairwise model's comparison
    patch by patch, and the embedder's ranking it was given. Still a pairwise model in
    OML's sense (two images in, one "different" logit out); the reranking formula is
    unchanged."""

    def __init__(self, model: ConcatSiamese, embedder: vit.ViT, scale: float, offset: float):
        super().__init__()
        if embedder.cfg.img_size != model.cfg.img_size or embedder.cfg.in_chans != model.cfg.in_chans:
            raise ValueError(f"the prior's embedder takes {embedder.cfg.img_size}px images, the pairwise model {model.cfg.img_size}px")
        self.model = model
        self.embedder = embedder
        self.register_buffer("prior", torch.tensor([scale, offset], dtype=torch.float32))

    @property
    def cfg(self) -> vit.ViTConfig:
        return self.model.cfg

    @property
    def vit(self) -> vit.ViT:
        return self.model.vit

    @property
    def hidden(self) -> List[int]:
        return self.model.hidden

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, pos_embed: Optional[torch.Tensor] = None) -> torch.Tensor:
        dist = (self.embedder(x1) - self.embedder(x2)).norm(dim=1, keepdim=True)
        return self.model(x1, x2, pos_embed=pos_embed) + self.prior[0] * dist + self.prior[1]


class PairwiseGraph(nn.Module):
    """What the ONNX file computes: (query, candidate) → logits [B,1], with the positional
    embedding of the stacked input precomputed once (vit.ViT.fixed_pos_embed) and shipped
    as a constant. Eval mode (no dropout)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.eval()
        s = model.cfg.img_size
        self.register_buffer("pos_embed", model.vit.fixed_pos_embed(2 * s, s), persistent=False)
        # The exporter restores the wrapper's mode afterwards, recursively: a wrapper left in
        # training mode would switch the model's dropout on for every later torch call.
        self.eval()

    def forward(self, query: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
        return self.model(query, candidate, pos_embed=self.pos_embed)


def init_head(model: ConcatSiamese, seed: int) -> None:
    """Deterministic head init with torch's own nn.Linear rule (uniform ±1/√fan_in), the
    init ConcatSiamese's head gets in OML."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.head:
            if isinstance(m, nn.Linear):
                bound = m.in_features ** -0.5
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) * 2 * bound - bound)
                if m.bias is not None:
                    m.bias.copy_(torch.rand(m.bias.shape, generator=gen) * 2 * bound - bound)


def split_state(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Maps a ConcatSiamese state dict, whatever wrapper prefix it carries (a Lightning
    PairwiseModule saves `model.extractor.model.*` and `model.head.*`), to our key layout.

    The prefix is what precedes the one `extractor.model.norm.bias` key (the backbone's final
    LayerNorm). Keys outside `<prefix>extractor.model.` and `<prefix>head.` are an error,
    except a loss's `criterion.*` / `loss.*`.
    """
    anchor = "extractor.model.norm.bias"
    finals = [k for k in state if k == anchor or k.endswith("." + anchor)]
    if len(finals) != 1:
        raise ValueError(f"expected exactly one '{anchor}' key (ConcatSiamese layout), found {finals or 'none'}")
    prefix = finals[0][: -len(anchor)]
    out: Dict[str, torch.Tensor] = {}
    stray = []
    for k, v in state.items():
        if k.startswith(prefix + "extractor.model.") or k.startswith(prefix + "head."):
            out[k[len(prefix):]] = v
        elif not k.startswith(("criterion.", "loss.")):
            stray.append(k)
    if stray:
        raise ValueError(f"keys outside the ConcatSiamese prefix {prefix!r}: {stray[:10]}")
    return out


def head_hidden(state: Mapping[str, torch.Tensor]) -> List[int]:
    """The hidden widths of a saved head (`head.0.weight`, `head.3.weight`, …: one Linear
    every 3 modules); the last Linear must map to one logit without bias."""
    idx = sorted(int(k.split(".")[1]) for k in state if k.startswith("head.") and k.endswith(".weight"))
    if not idx or idx != list(range(0, 3 * len(idx), 3)):
        raise ValueError(f"head Linear layers at {idx}, want 0, 3, 6, … (ConcatSiamese MLP)")
    last = state[f"head.{idx[-1]}.weight"]
    if last.shape[0] != 1 or f"head.{idx[-1]}.bias" in state:
        raise ValueError(f"last head layer is {list(last.shape)} with bias={f'head.{idx[-1]}.bias' in state}, want [1, h] without bias")
    return [int(state[f"head.{i}.weight"].shape[0]) for i in idx[:-1]]


def load_checkpoint(path: str, cfg: vit.ViTConfig) -> ConcatSiamese:
    """Builds a ConcatSiamese of backbone shape `cfg` from a checkpoint strictly: an OML
    postprocessor checkpoint (Lightning `{"state_dict": {"model.extractor.model.…",
    "model.head.…"}}`), a bare ConcatSiamese state dict, or one saved by train_stir.py. The
    head widths are read from the file. Missing/unexpected keys or shapes raise."""
    state = split_state(vit.find_state_dict(torch.load(path, map_location="cpu")))
    model = ConcatSiamese(cfg, hidden=head_hidden(state))
    model.load_state_dict(state, strict=True)
    return model.eval()


def random_model(cfg: vit.ViTConfig, seed: int, std: float, hidden: Optional[Sequence[int]] = None) -> ConcatSiamese:
    """An untrained pairwise model: backbone as vit.init_weights(seed, std), head from seed."""
    model = ConcatSiamese(cfg, hidden)
    vit.init_weights(model.vit, seed=seed, std=std)
    init_head(model, seed)
    return model.eval()

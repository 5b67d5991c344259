"""A plain Vision Transformer embedder (method.md §1), written for torch 1.13.

The module tree and parameter names follow the DINO/timm ViT that OML's ViTExtractor wraps
(`cls_token`, `pos_embed`, `patch_embed.proj`, `blocks.N.norm1`, `blocks.N.attn.qkv`,
`blocks.N.attn.proj`, `blocks.N.norm2`, `blocks.N.mlp.fc1`, `blocks.N.mlp.fc2`, `norm`), so
an OML or DINO checkpoint loads strictly with `load_checkpoint`. The output is the CLS token
after the final LayerNorm, divided by its L2 norm when `normalize` is set.

Dev-time only: the pipeline never runs Python; it runs the ONNX export of this module.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, Mapping, Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F


@dataclasses.dataclass(frozen=True)
class ViTConfig:
    """Shape of a ViT. The defaults are ViT-S/16 as DINO and OML's `vits16` build it."""

    img_size: int = 224
    patch_size: int = 16
    dim: int = 384
    depth: int = 12
    heads: int = 6
    mlp_dim: int = 1536
    qkv_bias: bool = True
    ln_eps: float = 1e-6
    in_chans: int = 3

    def __post_init__(self) -> None:
        problems = []
        if self.img_size % self.patch_size:
            problems.append(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if self.dim % self.heads:
            problems.append(f"dim {self.dim} is not a multiple of heads {self.heads}")
        for name in ("img_size", "patch_size", "dim", "depth", "heads", "mlp_dim", "in_chans"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if problems:
            raise ValueError("ViTConfig: " + "; ".join(problems))

    @property
    def grid(self) -> int:
        """Patches per side of the square training image (14 for 224/16)."""
        return self.img_size // self.patch_size


# Named configurations used by export.py and golden.py.
CONFIGS: Dict[str, ViTConfig] = {
    # ViT-S/16, DINO initialisation (method.md §1): ≈ 21.7M parameters, ≈ 87 MB as ONNX.
    "vits16": ViTConfig(),
    # A small stand-in with the same input contract (224×224, patch 16, 14×14 grid) so the
    # preprocessing is identical to the real model; ≈ 0.16M parameters.
    "tiny": ViTConfig(dim=64, depth=2, heads=4, mlp_dim=256),
    # A slightly larger stand-in, same input contract; ≈ 0.43M parameters.
    "small": ViTConfig(dim=96, depth=3, heads=4, mlp_dim=384),
    # `tiny` with more blocks: STIR pairwise backbones grown from a `tiny` embedder
    # (pairwise.ConcatSiamese.load_embedder), more capacity with the embedder's start.
    "tiny-d4": ViTConfig(dim=64, depth=4, heads=4, mlp_dim=256),
    "tiny-d6": ViTConfig(dim=64, depth=6, heads=4, mlp_dim=256),
}


class PatchEmbed(nn.Module):
    """Cuts the image into non-overlapping patches and projects each to `dim` (one conv)."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.patch_size = cfg.patch_size
        self.proj = nn.Conv2d(cfg.in_chans, cfg.dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # [B, C, H, W] → [B, D, H/p, W/p] → [B, N, D], patches in row-major order.
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.heads = cfg.heads
        self.head_dim = cfg.dim // cfg.heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=cfg.qkv_bias)
        self.proj = nn.Linear(cfg.dim, cfg.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        # [B, N, 3D] → [3, B, heads, N, head_dim]
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        weights = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(b, n, d)
        return self.proj(out)


class Mlp(nn.Module):
    """The feed-forward half of a block: Linear → exact GELU → Linear."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.dim, cfg.mlp_dim)
        self.fc2 = nn.Linear(cfg.mlp_dim, cfg.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """A pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim, eps=cfg.ln_eps)
        self.attn = Attention(cfg)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=cfg.ln_eps)
        self.mlp = Mlp(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def interpolate_pos_embed(pos_embed: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
    """Resizes a [1, 1+g·g, D] positional embedding (CLS first, square g×g patch grid) to a
    grid_h × grid_w patch grid, returning [1, 1+grid_h·grid_w, D].

    This reproduces DINO's `interpolate_pos_encoding`, which OML's ViTExtractor runs, bit
    for bit: torch bicubic (a = -0.75, align_corners False) with the scale factors
    (grid_h + 0.1)/g and (grid_w + 0.1)/g passed to the kernel as they are (not recomputed
    from the output size). The 0.1 is DINO's guard against rounding the output size down;
    because the kernel uses those factors, even an axis that keeps its length (14 → 14 with
    factor 14.1/14) is resampled slightly. The CLS position is kept. An unchanged square
    grid returns the input itself.

    The STIR pairwise model (method.md §1) uses it once at export for the 28×14 grid of a
    448×224 query-over-candidate input.
    """
    if pos_embed.dim() != 3 or pos_embed.shape[0] != 1:
        raise ValueError(f"pos_embed must be [1, 1+N, D], got {list(pos_embed.shape)}")
    n = pos_embed.shape[1] - 1
    g = int(math.isqrt(n))
    if g * g != n:
        raise ValueError(f"pos_embed has {n} patch positions, not a square grid")
    if grid_h < 1 or grid_w < 1:
        raise ValueError(f"target grid must be positive, got {grid_h}×{grid_w}")
    if grid_h == g and grid_w == g:
        return pos_embed
    dim = pos_embed.shape[2]
    cls_pos = pos_embed[:, :1]
    patch_pos = pos_embed[:, 1:].reshape(1, g, g, dim).permute(0, 3, 1, 2)
    sh, sw = (grid_h + 0.1) / g, (grid_w + 0.1) / g
    patch_pos = F.interpolate(patch_pos, scale_factor=(sh, sw), mode="bicubic", align_corners=False)
    if tuple(patch_pos.shape[-2:]) != (grid_h, grid_w):
        raise AssertionError(f"interpolated grid {tuple(patch_pos.shape[-2:])}, want {(grid_h, grid_w)}")
    patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, dim)
    return torch.cat((cls_pos, patch_pos), dim=1)


class ViT(nn.Module):
    """ViT embedder: [B, 3, H, W] float32 (normalised RGB) → [B, dim] CLS embeddings.

    H and W must be multiples of the patch size. Inputs other than img_size×img_size use
    `interpolate_pos_embed` on every call, as DINO does; an exporter that fixes the input
    size should precompute it instead (see `fixed_pos_embed`).
    """

    def __init__(self, cfg: ViTConfig, normalize: bool = True):
        super().__init__()
        self.cfg = cfg
        self.normalize = normalize
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + cfg.grid * cfg.grid, cfg.dim))
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.ln_eps)

    def fixed_pos_embed(self, height: int, width: int) -> torch.Tensor:
        """The positional embedding for a height×width input (pixels), detached."""
        p = self.cfg.patch_size
        if height % p or width % p:
            raise ValueError(f"input {height}×{width} is not a multiple of patch {p}")
        return interpolate_pos_embed(self.pos_embed.detach(), height // p, width // p).clone()

    def features(self, x: torch.Tensor, pos_embed: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The CLS token after the final LayerNorm, before L2 normalisation: [B, dim].

        `pos_embed` replaces the on-the-fly interpolation with a precomputed table for this
        input size (`fixed_pos_embed`), so an export ships it as a constant.
        """
        if x.dim() != 4:
            raise ValueError(f"expected [B, C, H, W], got {list(x.shape)}")
        h, w = x.shape[-2:]
        p = self.cfg.patch_size
        tokens = self.patch_embed(x)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat((cls, tokens), dim=1)
        if pos_embed is None:
            pos_embed = interpolate_pos_embed(self.pos_embed, int(h) // p, int(w) // p)
        tokens = tokens + pos_embed
        for blk in self.blocks:
            tokens = blk(tokens)
        return self.norm(tokens)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(x)
        if self.normalize:
            out = out / out.norm(p=2, dim=1, keepdim=True)
        return out


def init_weights(model: ViT, seed: int, std: float = 0.02, patch_std: Optional[float] = None) -> None:
    """Deterministic random initialisation.

    timm/DINO style: every Linear weight, cls_token and pos_embed from a normal distribution
    truncated to ±2 std, biases 0, LayerNorm weight 1 / bias 0. `patch_std` (default `std`)
    is the std of the patch projection, which DINO leaves at PyTorch's default. The tiny
    model uses larger values than DINO's 0.02 (see export.py) so that an untrained network
    still maps different images to clearly different embeddings.
    """
    gen = torch.Generator().manual_seed(seed)

    def trunc_normal(t: torch.Tensor, s: float) -> None:
        # N(0,1) with draws beyond ±2 redrawn, then scaled.
        with torch.no_grad():
            v = torch.randn(t.shape, generator=gen)
            bad = v.abs() > 2
            while bool(bad.any()):
                v[bad] = torch.randn(int(bad.sum()), generator=gen)
                bad = v.abs() > 2
            t.copy_(v * s)

    for name, prm in model.named_parameters():
        if name.endswith(".bias"):
            nn.init.zeros_(prm)
        elif name in ("cls_token", "pos_embed"):
            trunc_normal(prm, std)
        elif name == "patch_embed.proj.weight":
            trunc_normal(prm, std if patch_std is None else patch_std)
        elif prm.dim() == 1:  # LayerNorm weights
            nn.init.ones_(prm)
        else:
            trunc_normal(prm, std)


# Entries of training checkpoints that are not part of the backbone and are dropped.
_KNOWN_NON_MODEL_PREFIXES = ("criterion.", "loss.", "head.")


def find_state_dict(ckpt: object) -> Mapping[str, torch.Tensor]:
    """Picks the tensor dictionary out of a loaded checkpoint file.

    Accepts a bare state dict, a Lightning/OML checkpoint ({"state_dict": ...}), or a DINO
    training checkpoint ({"teacher": ..., "student": ...}: the teacher is used, as DINO's
    own evaluation does).
    """
    if not isinstance(ckpt, Mapping):
        raise ValueError(f"checkpoint is a {type(ckpt).__name__}, not a dictionary")
    for key in ("state_dict", "teacher", "model"):
        inner = ckpt.get(key)
        if isinstance(inner, Mapping) and inner and all(torch.is_tensor(v) for v in inner.values()):
            return inner
    if ckpt and all(torch.is_tensor(v) for v in ckpt.values()):
        return ckpt
    raise ValueError(f"no state dict in checkpoint; top-level keys: {sorted(map(str, ckpt))[:20]}")


def strip_prefix(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Removes the wrapper prefix in front of the ViT's own parameter names.

    Like OML's `remove_prefix_from_state_dict(trial_key="norm.bias")`, the prefix is what
    precedes the final LayerNorm's `norm.bias`. Keys outside that prefix are dropped only
    when they are known non-backbone entries (a loss's `criterion.*`, a pairwise `head.*`);
    anything else is an error, so a wrong file is never half-loaded.
    """
    finals = [k for k in state if k == "norm.bias" or k.endswith(".norm.bias")]
    finals = [k for k in finals if ".blocks." not in "." + k]
    if len(finals) != 1:
        raise ValueError(f"expected exactly one final 'norm.bias' key, found {finals or 'none'}")
    prefix = finals[0][: -len("norm.bias")]
    out: Dict[str, torch.Tensor] = {}
    stray = []
    for k, v in state.items():
        if k.startswith(prefix):
            out[k[len(prefix):]] = v
        elif not k.startswith(_KNOWN_NON_MODEL_PREFIXES):
            stray.append(k)
    if stray:
        raise ValueError(f"keys outside the backbone prefix {prefix!r}: {stray[:10]}")
    return out


def load_checkpoint(path: str, cfg: ViTConfig = CONFIGS["vits16"], normalize: bool = True) -> ViT:
    """Builds a ViT of shape `cfg` and loads the weights of an OML or DINO checkpoint strictly.

    Works for OML's `vits16_sop` / `vits16_inshop` files (Lightning checkpoints whose keys
    carry `model.`-style prefixes) and for DINO's `dino_deitsmall16_pretrain.pth`. A missing
    or unexpected key, or a shape mismatch, raises.
    """
    ckpt = torch.load(path, map_location="cpu")
    state = strip_prefix(find_state_dict(ckpt))
    model = ViT(cfg, normalize=normalize)
    model.load_state_dict(state, strict=True)
    return model.eval()


def config_dict(cfg: ViTConfig) -> Dict[str, object]:
    """The configuration as a plain dictionary (for provenance in JSON and ONNX metadata)."""
    return dataclasses.asdict(cfg)


def param_count(model: nn.Module) -> int:
    """Number of scalar parameters."""
    return sum(p.numel() for p in model.parameters())


def input_shape(cfg: ViTConfig, batch: int = 1) -> Tuple[int, int, int, int]:
    """The model input shape [batch, 3, img, img]."""
    return (batch, cfg.in_chans, cfg.img_size, cfg.img_size)

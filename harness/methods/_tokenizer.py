"""The paper's simple tokenizer for BEiT and SplitMask (in place of DALL-E's dVAE): every patch is mapped to the
element of a pixel-space vocabulary with the highest cosine similarity. The vocabulary is either random patches
of the pre-training set or spherical k-means centroids of such patches (cosine k-means, so that the assignment
rule and the clustering agree).

The vocabulary is a deterministic function of (the exact pre-training images = manifest hash, the tokenizer
parameters, the encoder's image and patch size, the seed). Those are all part of the job's config, so they are
already in the job identity; the vocabulary is built once per such key, cached under the method's cache dir
(file lock + atomic rename, safe for concurrent jobs) and its content hash is kept in ``vocab_hash``.

Tokens are always computed from the exact augmented view the encoder sees (``tokens(images)`` in the
training step); patches are compared in [0, 1] RGB, after undoing the ImageNet normalisation.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from harness.models.tokens import patchify
from harness.results import atomic_torch_save
from harness.transforms import IMAGENET_MEAN, IMAGENET_STD, train_transform

log = logging.getLogger("harness.methods.tokenizer")

TOKENIZER_KINDS = ("kmeans", "random")
PATCH_NORMS = ("none", "center")


@dataclass(frozen=True)
class TokenizerSpec:
    kind: str = "kmeans"  # "kmeans" | "random"
    vocab_size: int = 8192
    img_size: int = 224
    patch_size: int = 16
    num_images: int = 10000  # images sampled (one random crop each) to build the vocabulary
    max_patches: int = 200_000  # patches k-means runs on
    kmeans_iters: int = 20
    patch_norm: str = "none"  # "none": raw pixels; "center": subtract each patch's mean (contrast only)
    seed: int = 0

    def __post_init__(self):
        if self.kind not in TOKENIZER_KINDS:
            raise ValueError(f"tokenizer kind must be one of {TOKENIZER_KINDS}, got {self.kind!r}")
        if self.patch_norm not in PATCH_NORMS:
            raise ValueError(f"tokenizer patch_norm must be one of {PATCH_NORMS}, got {self.patch_norm!r}")

    @property
    def patch_dim(self) -> int:
        return self.patch_size * self.patch_size * 3

    def cache_name(self, data_key: str) -> str:
        text = json.dumps({"data": data_key, **asdict(self)}, sort_keys=True)
        return f"vocab-{self.kind}-{self.vocab_size}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.pt"


def unnormalize(images: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised tensors back to [0, 1] RGB."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return images * std + mean


def patch_features(images: torch.Tensor, patch_size: int, patch_norm: str) -> torch.Tensor:
    """``(B, 3, H, W)`` normalised images -> unit-norm patch vectors ``(B, N, p*p*3)`` in float32."""
    x = patchify(unnormalize(images.float()), patch_size)
    if patch_norm == "center":
        x = x - x.mean(dim=-1, keepdim=True)
    return F.normalize(x, dim=-1)


def assign(features: torch.Tensor, vocab: torch.Tensor) -> torch.Tensor:
    """Index of the most cosine-similar vocabulary row for each (unit-norm) feature row."""
    return (features @ vocab.t()).argmax(dim=-1)


def spherical_kmeans(points: torch.Tensor, init: torch.Tensor, iters: int) -> torch.Tensor:
    """Cosine k-means on unit vectors; an empty cluster keeps its previous centroid."""
    centroids = init.clone()
    for _ in range(iters):
        labels = torch.cat([assign(chunk, centroids) for chunk in points.split(8192)])
        sums = torch.zeros_like(centroids).index_add_(0, labels, points)
        counts = torch.bincount(labels, minlength=len(centroids))
        centroids = torch.where((counts > 0).unsqueeze(1), F.normalize(sums, dim=-1), centroids)
    return centroids


def build_vocabulary(spec: TokenizerSpec, dataset, device: torch.device | None = None) -> torch.Tensor:
    """Sample images, take one random crop each (the pre-training crop), and pick or cluster their patches."""
    g = torch.Generator().manual_seed(spec.seed)
    n_images = min(spec.num_images, len(dataset))
    picks = torch.randperm(len(dataset), generator=g)[:n_images].tolist()
    view = train_transform(spec.img_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        feats = torch.cat([patch_features(view(dataset[i][0]).unsqueeze(0), spec.patch_size, spec.patch_norm)[0]
                           for i in picks])
    feats = feats[feats.norm(dim=-1) > 0.5]  # drop all-zero patches ("center" on flat patches): no direction
    if len(feats) < spec.vocab_size:
        raise ValueError(f"only {len(feats)} usable patches for a vocabulary of {spec.vocab_size}: "
                         f"raise num_images or lower vocab_size")
    feats = feats[torch.randperm(len(feats), generator=g)[:max(spec.max_patches, spec.vocab_size)]]
    feats = feats.to(device or "cpu")
    vocab = feats[:spec.vocab_size]
    if spec.kind == "kmeans":
        vocab = spherical_kmeans(feats, vocab, spec.kmeans_iters)
    return vocab.cpu().contiguous()


def tensor_hash(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def cached_vocabulary(spec: TokenizerSpec, dataset, data_key: str, cache_dir: Path,
                      device: torch.device | None = None) -> tuple[torch.Tensor, str]:
    """The vocabulary for (data_key, spec), built once under a file lock and cached; returns it and its hash."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / spec.cache_name(data_key)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            payload = torch.load(path, map_location="cpu", weights_only=True)
            vocab, digest = payload["vocab"], payload["hash"]
            if tensor_hash(vocab) != digest:
                raise RuntimeError(f"vocabulary cache {path} is corrupt (hash mismatch); delete it")
            return vocab, digest
        vocab = build_vocabulary(spec, dataset, device)
        digest = tensor_hash(vocab)
        atomic_torch_save({"vocab": vocab, "hash": digest, "spec": asdict(spec), "data": data_key}, path)
        log.info("built %s vocabulary of %d tokens (hash %s) at %s", spec.kind, spec.vocab_size, digest, path)
        return vocab, digest


class PatchTokenizer(nn.Module):
    """Holds the vocabulary as a buffer (so it travels with checkpoints) and maps images to patch tokens."""

    def __init__(self, spec: TokenizerSpec):
        super().__init__()
        self.spec = spec
        self.register_buffer("vocab", torch.zeros(spec.vocab_size, spec.patch_dim))
        self.vocab_hash: str | None = None
        self._has_vocab = False  # checked once (not every step: .any() would synchronise the GPU)

    @classmethod
    def from_params(cls, params: dict, img_size: int, patch_size: int) -> "PatchTokenizer":
        return cls(TokenizerSpec(kind=params["tokenizer"], vocab_size=params["vocab_size"], img_size=img_size,
                                 patch_size=patch_size, num_images=params["tokenizer_images"],
                                 max_patches=params["tokenizer_patches"], kmeans_iters=params["kmeans_iters"],
                                 patch_norm=params["tokenizer_patch_norm"], seed=params["tokenizer_seed"]))

    def prepare(self, dataset, data_key: str, cache_dir: Path) -> None:
        vocab, self.vocab_hash = cached_vocabulary(self.spec, dataset, data_key, cache_dir, self.vocab.device)
        self.vocab.copy_(vocab)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` normalised images -> tokens ``(B, N)`` (long), computed in float32."""
        if not self._has_vocab:
            if not bool(self.vocab.any()):
                raise RuntimeError("the tokenizer has no vocabulary: call prepare() first")
            self._has_vocab = True
        with torch.autocast(images.device.type, enabled=False):
            return assign(patch_features(images, self.spec.patch_size, self.spec.patch_norm), self.vocab.float())


TOKENIZER_DEFAULTS = {
    "tiny": {"tokenizer": "kmeans", "vocab_size": 64, "tokenizer_images": 200, "tokenizer_patches": 20000,
             "kmeans_iters": 10, "tokenizer_patch_norm": "none", "tokenizer_seed": 0},
    "paper": {"tokenizer": "kmeans", "vocab_size": 8192, "tokenizer_images": 10000, "tokenizer_patches": 200000,
              "kmeans_iters": 20, "tokenizer_patch_norm": "none", "tokenizer_seed": 0},
}

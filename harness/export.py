"""``harness export ENCODER.pt --format detectron2|mmseg --out PATH``: an exported encoder as a checkpoint that
detectron2's ViTDet or mmsegmentation's ViT backbone loads, with a report of mapped, missing and unexpected keys.

Target layouts (checked against the frameworks' sources):

* ``detectron2``: ``detectron2.modeling.backbone.vit.ViT`` inside ``SimpleFeaturePyramid`` (``backbone.net.``):
  ``patch_embed.proj``, ``pos_embed`` (with the cls position, ``pretrain_use_cls_token=True``),
  ``blocks.i.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``; no cls token and no final norm (those
  are reported as unexpected); ``attn.rel_pos_h/w`` of ViTDet's relative positions have no counterpart (reported
  missing; detectron2 initialises them to zero). Written as ``{"model": state_dict, "matching_heuristics": False}``
  for ``DetectionCheckpointer``.
* ``mmseg``: ``mmseg.models.backbones.VisionTransformer`` (as ``tools/model_converters/vit2mmseg.py`` maps timm):
  ``cls_token``, ``pos_embed``, ``patch_embed.projection``, ``layers.i.{ln1, attn.attn.in_proj_weight/bias,
  attn.attn.out_proj, ln2, ffn.layers.0.0, ffn.layers.1}``, final norm ``ln1`` (``final_norm=True``). Written as
  ``{"state_dict": ..., "meta": ...}`` with bare backbone keys, as ``backbone.init_cfg=dict(type='Pretrained',
  checkpoint=...)`` loads them (``--prefix backbone.`` for ``load_from``). With ``--crop-size`` the position
  embedding is resampled to that grid the way this project's encoder does it at run time (timm's antialiased
  bicubic); mmseg's own resize (plain bicubic) would give other positions. ``harness.mmseg_config`` writes the
  UperNet config that loads the checkpoint (``patch_bias=True``, LayerNorm eps 1e-6: not mmseg's defaults).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported by the conversion only: building the CLI's parser must stay cheap
    import torch

    from harness.models.vit import EncoderConfig

FORMATS = ("detectron2", "mmseg")
DEFAULT_PREFIX = {"detectron2": "backbone.net.", "mmseg": ""}

# timm block-local name -> target block-local name
_D2_BLOCK = {"norm1": "norm1", "attn.qkv": "attn.qkv", "attn.proj": "attn.proj", "norm2": "norm2",
             "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
_MMSEG_BLOCK = {"norm1": "ln1", "attn.qkv": "attn.attn.in_proj_", "attn.proj": "attn.attn.out_proj",
                "norm2": "ln2", "mlp.fc1": "ffn.layers.0.0", "mlp.fc2": "ffn.layers.1"}
_TOP_LEVEL = {
    "detectron2": {"pos_embed": "pos_embed", "patch_embed.proj.weight": "patch_embed.proj.weight",
                   "patch_embed.proj.bias": "patch_embed.proj.bias"},
    "mmseg": {"cls_token": "cls_token", "pos_embed": "pos_embed",
              "patch_embed.proj.weight": "patch_embed.projection.weight",
              "patch_embed.proj.bias": "patch_embed.projection.bias", "norm.weight": "ln1.weight",
              "norm.bias": "ln1.bias"},
}


def _block_key(fmt: str, key: str) -> str | None:
    m = re.fullmatch(r"blocks\.(\d+)\.(norm1|attn\.qkv|attn\.proj|norm2|mlp\.fc1|mlp\.fc2)\.(weight|bias)", key)
    if m is None:
        return None
    i, part, kind = m.groups()
    if fmt == "mmseg":
        target = _MMSEG_BLOCK[part]
        # nn.MultiheadAttention names the fused projection in_proj_weight / in_proj_bias
        return f"layers.{i}.{target}{kind}" if part == "attn.qkv" else f"layers.{i}.{target}.{kind}"
    return f"blocks.{i}.{_D2_BLOCK[part]}.{kind}"


def target_key(fmt: str, key: str) -> str | None:
    """The target name of one timm encoder key, or None when the target architecture has no such weight."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r} (known: {', '.join(FORMATS)})")
    return _TOP_LEVEL[fmt].get(key) or _block_key(fmt, key)


def target_layout(fmt: str, cfg: EncoderConfig, rel_pos: bool = True) -> list[str]:
    """Every backbone weight the target architecture has for ``cfg`` (without prefix), in its module order."""
    block_parts = ["norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"]
    keys = []
    if fmt == "detectron2":
        keys += ["pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"]
        for i in range(cfg.depth):
            for part in block_parts:
                keys += [f"blocks.{i}.{part}.weight", f"blocks.{i}.{part}.bias"]
                if part == "attn.qkv" and rel_pos:
                    keys += [f"blocks.{i}.attn.rel_pos_h", f"blocks.{i}.attn.rel_pos_w"]
        return keys
    keys += ["cls_token", "pos_embed", "patch_embed.projection.weight", "patch_embed.projection.bias"]
    for i in range(cfg.depth):
        for part in block_parts:
            keys += [_block_key("mmseg", f"blocks.{i}.{part}.{kind}") for kind in ("weight", "bias")]
    return keys + ["ln1.weight", "ln1.bias"]


@dataclass
class ExportReport:
    format: str
    out: str
    mapped: dict[str, str] = field(default_factory=dict)  # source key -> target key (with prefix)
    missing: list[str] = field(default_factory=list)  # target weights the encoder does not provide
    unexpected: list[str] = field(default_factory=list)  # encoder weights the target has no place for

    def summary(self) -> str:
        lines = [f"{self.format}: wrote {self.out}", f"  mapped {len(self.mapped)} tensors"]
        shown = ", ".join(self.missing[:6]) + (" ..." if len(self.missing) > 6 else "")
        lines.append(f"  missing in the target (left to the framework's initialisation): {len(self.missing)}"
                     + (f" -> {shown}" if self.missing else ""))
        lines.append(f"  unexpected (no counterpart, not written): {len(self.unexpected)}"
                     + (f" -> {', '.join(self.unexpected)}" if self.unexpected else ""))
        return "\n".join(lines)


def convert_state(state: dict[str, torch.Tensor], cfg: EncoderConfig, fmt: str, prefix: str | None = None,
                  rel_pos: bool = True) -> tuple[dict[str, torch.Tensor], ExportReport]:
    prefix = DEFAULT_PREFIX[fmt] if prefix is None else prefix
    report = ExportReport(fmt, "")
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        target = target_key(fmt, key)
        if target is None:
            report.unexpected.append(key)
            continue
        out[prefix + target] = value.detach().cpu().clone()
        report.mapped[key] = prefix + target
    report.missing = [prefix + k for k in target_layout(fmt, cfg, rel_pos) if prefix + k not in out]
    return out, report


def resample_pos_embed(state: dict[str, torch.Tensor], cfg: EncoderConfig, crop_size: int) -> dict[str, torch.Tensor]:
    """``state`` with its position embedding on the ``crop_size`` grid, as the encoder resamples it at run time."""
    from timm.layers import resample_abs_pos_embed

    if crop_size % cfg.patch_size:
        raise ValueError(f"crop size {crop_size} is not a multiple of the patch size {cfg.patch_size}")
    grid = crop_size // cfg.patch_size
    pos_embed = resample_abs_pos_embed(state["pos_embed"], new_size=(grid, grid),
                                       old_size=(cfg.grid_size, cfg.grid_size), num_prefix_tokens=1)
    return {**state, "pos_embed": pos_embed}


def export_encoder(encoder_path: Path, fmt: str, out: Path, prefix: str | None = None,
                   crop_size: int | None = None) -> ExportReport:
    """``crop_size`` (mmseg): the input size the position embedding is resampled to (default: the encoder's)."""
    import torch

    from harness.models.vit import EncoderConfig
    from harness.results import atomic_torch_save

    payload = torch.load(encoder_path, map_location="cpu", weights_only=True)
    cfg = EncoderConfig(**payload["config"])
    source = payload["state_dict"]
    meta = {"source": str(encoder_path), "encoder_config": cfg.to_dict(), "converted_by": "harness export"}
    if crop_size is not None:
        if fmt != "mmseg":
            raise ValueError("--crop-size applies to --format mmseg only")
        source = resample_pos_embed(source, cfg, crop_size)
        meta["crop_size"] = crop_size
    state, report = convert_state(source, cfg, fmt, prefix)
    if fmt == "detectron2":
        document = {"model": state, "matching_heuristics": False, "meta": meta}
    else:
        document = {"state_dict": state, "meta": meta}
    atomic_torch_save(document, out)
    report.out = str(out)
    return report


def cmd_export(args) -> int:
    crop_size = args.crop_size if args.format == "mmseg" else None
    report = export_encoder(Path(args.encoder), args.format, Path(args.out), args.prefix, crop_size)
    print(report.summary())
    prefix = DEFAULT_PREFIX[args.format] if args.prefix is None else args.prefix
    if args.format == "mmseg" and prefix in ("", "backbone."):  # init_cfg or load_from
        import torch

        from harness.mmseg_config import write_upernet_config
        from harness.models.encoders import EncoderConfig

        payload = torch.load(args.encoder, map_location="cpu", weights_only=True)
        config = Path(args.config) if args.config else Path(args.out).with_name(Path(args.out).stem + "_upernet.py")
        write_upernet_config(EncoderConfig(**payload["config"]), Path(args.out), config, crop_size, prefix)
        print(f"  UperNet config (BEiT's ADE20k settings): {config}")
    if args.report:
        Path(args.report).write_text(json.dumps(asdict(report), indent=1))
    return 0


def add_export_command(subparsers) -> None:
    p = subparsers.add_parser("export", help="write an encoder.pt as a detectron2 (ViTDet) or mmseg (ViT) checkpoint")
    p.add_argument("encoder", help="an encoder.pt written by a pre-training job")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, help="the checkpoint to write (.pth)")
    p.add_argument("--prefix", default=None,
                   help="key prefix (default: 'backbone.net.' for detectron2, none for mmseg; 'backbone.' for load_from)")
    p.add_argument("--crop-size", type=int, default=512,
                   help="mmseg: the training crop; the position embedding is resampled to it (default: BEiT's 512)")
    p.add_argument("--config", default=None,
                   help="mmseg: where the UperNet config goes (default: OUT's name + '_upernet.py' beside it)")
    p.add_argument("--report", default=None, help="also write the mapped/missing/unexpected report as JSON here")
    p.set_defaults(fn=cmd_export)

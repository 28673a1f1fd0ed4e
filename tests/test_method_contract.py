"""The contract every registered pre-training method passes, automatically (parametrised over METHODS.names()):
a few tiny-scale training steps through the shared engine with a finite loss that goes down on a fixed batch,
a checkpoint whose encoder loads strictly into a plain timm VisionTransformer of the same config, and a
downstream fine-tune that starts from exactly that encoder."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Subset, default_collate

from harness.data import get_index, get_manifest
from harness.data.images import ImageListDataset
from harness.engine import TrainConfig, seed_everything, train
from harness.methods import METHODS, PretrainData
from harness.models.vit import build_encoder, encoder_config, load_encoder_weights, save_encoder
from harness.transforms import eval_transform

ENCODER = encoder_config("vit-tiny-32")
DATASET = "synthetic-objects"
BATCH, STEPS = 16, 12


def _method(name: str):
    cls = METHODS.get(name)
    params = cls.resolved_params("tiny", {"batch_size": BATCH, "warmup_epochs": 0})
    return cls(ENCODER, params, num_classes=10)


def _fixed_loss(method, batch, seed: int = 123) -> float:
    """The training step's loss on a fixed batch, with fixed randomness (masks, splits), without side effects."""
    method.eval()
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        loss = method.training_step(batch)[0].item()
    method.train()
    return loss


@pytest.mark.slow
@pytest.mark.parametrize("name", METHODS.names())
def test_method_contract(name, tmp_path):
    torch.set_num_threads(1)
    seed_everything(0)
    method = _method(name)
    encoder_path = tmp_path / "encoder.pt"
    if method.uses_data:
        index = get_index(DATASET, "train")
        manifest = get_manifest(DATASET, "train", 0.05, 0)
        method.prepare(PretrainData(ImageListDataset(index, manifest.indices), 10, manifest.content_hash,
                                    tmp_path / "cache"))
        images = Subset(ImageListDataset(index, manifest.indices, transform=method.train_transform()), range(BATCH))
        collate = method.collate_fn() or default_collate
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            fixed_batch = collate([images[i] for i in range(BATCH)])
        initial = {k: v.clone() for k, v in method.optimized_module().state_dict().items()}
        cfg = TrainConfig(batch_size=BATCH, total_updates=STEPS, warmup_updates=0, lr=method.params["lr"],
                          weight_decay=method.params["weight_decay"], clip_grad=method.params["clip_grad"])
        state = train(method, method.training_step, images, cfg, tmp_path / "checkpoint.pt",
                      after_step=method.after_step, collate_fn=method.collate_fn(),
                      device=torch.device("cpu"), optimizer_model=method.optimized_module())
        losses = [row["loss"] for row in state.history]
        assert len(losses) == STEPS and all(torch.isfinite(torch.tensor(losses)))
        # Judge the optimiser against the targets as they are now (tokenizer, EMA teacher, DINO's centre): the
        # initial trainable weights vs the trained ones, everything else at its final state. A moving target
        # (DINO) makes the raw loss non-monotone, so comparing raw losses across training would be flaky.
        after = _fixed_loss(method, fixed_batch)
        final = {k: v.clone() for k, v in method.optimized_module().state_dict().items()}
        method.optimized_module().load_state_dict(initial)
        before = _fixed_loss(method, fixed_batch)
        method.optimized_module().load_state_dict(final)
        assert after < before, f"{name}: loss on a fixed batch did not go down ({before:.4f} -> {after:.4f})"
        assert (tmp_path / "checkpoint.pt").exists()
    save_encoder(method.exported_encoder(), ENCODER, encoder_path)

    # the exported encoder loads strictly into a plain timm ViT of the same config
    payload = torch.load(encoder_path, map_location="cpu", weights_only=True)
    plain = build_encoder(encoder_config(payload["config"]))
    plain.load_state_dict(payload["state_dict"], strict=True)

    # a downstream fine-tune starts from it: same features before the first step, then it trains
    model = build_encoder(ENCODER, num_classes=10)
    load_encoder_weights(model, encoder_path)
    val = ImageListDataset(get_index(DATASET, "val"), None, transform=eval_transform(ENCODER.img_size))
    images, labels = default_collate([val[i] for i in range(0, 80, 5)])
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model.forward_features(images), method.exported_encoder().eval().forward_features(images),
                              atol=1e-5)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    first = None
    for _ in range(3):
        loss = F.cross_entropy(model(images), labels)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.isfinite(loss) and loss.item() < first


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dino", "splitmask"])
def test_resuming_restores_the_method_state(name, tmp_path):
    """EMA teacher, DINO's centre and progress, the tokenizer vocabulary: all in the checkpoint, so a run that
    stops and resumes ends with the weights of one that never stopped."""
    from harness.engine import InterruptedTraining

    torch.set_num_threads(1)
    index = get_index(DATASET, "train")
    manifest = get_manifest(DATASET, "train", 0.05, 0)
    finals = []
    for run, stop in (("straight", None), ("resumed", 2)):
        seed_everything(0)
        method = _method(name)
        method.prepare(PretrainData(ImageListDataset(index, manifest.indices), 10, manifest.content_hash,
                                    tmp_path / "cache"))
        images = Subset(ImageListDataset(index, manifest.indices, transform=method.train_transform()), range(8))
        cfg = TrainConfig(batch_size=4, total_updates=4, warmup_updates=0, lr=1e-3)
        kwargs = dict(after_step=method.after_step, collate_fn=method.collate_fn(), device=torch.device("cpu"),
                      optimizer_model=method.optimized_module())
        ckpt = tmp_path / f"{run}.pt"
        if stop:
            with pytest.raises(InterruptedTraining):
                train(method, method.training_step, images, cfg, ckpt, stop_after_updates=stop, **kwargs)
            seed_everything(99)  # a fresh process would not share the RNG state
            method = _method(name)
            method.prepare(PretrainData(ImageListDataset(index, manifest.indices), 10, manifest.content_hash,
                                        tmp_path / "cache"))
            kwargs.update(after_step=method.after_step, optimizer_model=method.optimized_module())
            images.dataset.transform = method.train_transform()
        train(method, method.training_step, images, cfg, ckpt, **kwargs)
        finals.append(method.state_dict())
    for key, value in finals[0].items():
        assert torch.allclose(value.float(), finals[1][key].float(), atol=1e-6), key

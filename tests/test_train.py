"""One loop for every schedule: phases, checkpoints, resume, NaN stop, distributed ranks."""

import ast
import inspect
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tests_helpers import synthetic

from bfutils import metrics, pairs, registry, train


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """One intra-op thread: on a busy 2-core machine OpenMP threads spin against each other
    and made these tiny steps ~15x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def setup():
    m, images = synthetic(n_groups=14, per_group=6, size=32)
    m["split"] = pairs.assign_splits(m, seed=0)
    ev = {s: pairs.make_pairs(m, images, split=s, n_pairs=40, seed=0, progress=False)
          for s in ("val", "test")}  # fmt: skip
    return m, images, ev


AUC = metrics.roc_auc


def cfg(**kw):
    base = dict(encoder="resnet18", pretrained=None, input_size=32, projector_widths=(32, 32, 16),
                head_hidden=16, epochs=2, steps_per_epoch=2, batch_size=16, cache_views=3,
                device="cpu")  # fmt: skip
    return train.TrainConfig(**(base | kw))


def test_schedules_map_to_phases():
    seq = train.phases(cfg(schedule="sequential"))
    assert [p.name for p in seq] == ["barlow_twins", "bce"]
    assert seq[0].losses == {"bt": 1.0} and seq[1].trainable == ("head",)
    joint = train.phases(cfg(schedule="joint", bt_weight=0.25))
    assert joint[0].losses == {"bce": 1.0, "bt": 0.25}
    assert "encoder" in train.phases(cfg(schedule="joint", freeze_backbone=False))[0].trainable
    with pytest.raises(ValueError, match="schedule must be one of"):
        cfg(schedule="both")


def _auc(model, data, ev, c, split="test") -> float:
    pred = train.predictions(model, data, ev, c, name=c.schedule)
    assert set(pred["split"]) == {"val", "test"} and np.isfinite(pred["score"]).all()
    if registry.scoring(c.schedule) == "head":
        assert pred["score"].between(0, 1).all()
    t = pred[pred["split"] == split]
    return metrics.roc_auc(t["label"].to_numpy(), t["score"].to_numpy())


def smooth_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Smooth random colour fields (8x8 noise, upsampled): a copy keeps the layout under the
    catalogue's alterations, distinct images do not; uniform noise would leave nothing to learn.
    """
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 8, 8, generator=gen)
    fine = F.interpolate(coarse, size=(size, size), mode="bilinear")
    return (fine * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


@pytest.fixture(scope="module")
def learnable():
    """Data a frozen pretrained encoder plus a trained projector/head can learn in seconds.

    ~260 training images of smooth fields, 300 val and 300 test pairs of the evaluation rules;
    the frozen ImageNet EfficientNet-Lite0 (shipped on PyPI, no download) at 32 px, its features
    cached once and shared by every run of the module (:func:`bfutils.train.train` restarts the
    shared provider's random streams, so a run does not depend on the runs before it).
    """
    m, _ = synthetic(n_groups=64, per_group=6)
    images = smooth_images(len(m))
    m["split"] = pairs.assign_splits(m, seed=0)
    ev = {s: pairs.make_pairs(m, images, split=s, n_pairs=300, seed=0, progress=False)
          for s in ("val", "test")}  # fmt: skip
    return {"m": m, "images": images, "ev": ev, "data": None}


def learn_cfg(**kw):
    # redundancy_weight ~1/D: the paper's 5e-3 is tuned for D = 8192, here D = 32
    base = dict(encoder="efficientnet_lite0", pretrained="lite0-offline", input_size=32,
                projector_widths=(32, 32, 32), head_hidden=16, epochs=10, steps_per_epoch=20,
                batch_size=64, cache_views=8, redundancy_weight=0.05, lr_start=3e-3,
                lr_end=3e-3, patience=100, device="cpu")  # fmt: skip
    return train.TrainConfig(**(base | kw))


def _learned_auc(learnable: dict, c) -> float:
    """Test ROC-AUC of a model trained with config ``c`` on the shared learnable data."""
    model, learnable["data"], _ = train.train(
        c, learnable["m"], learnable["images"], learnable["ev"], val_metric=metrics.roc_auc,
        progress=False, data=learnable["data"],
    )  # fmt: skip
    return _auc(model, learnable["data"], learnable["ev"], c)


GAIN = 0.15  # trained minus untrained test ROC-AUC; seed 0 gains 0.24-0.37, zero-LR runs <= 0.09


@pytest.mark.parametrize("schedule", registry.SCHEDULES)
def test_training_beats_the_same_model_untrained(learnable, schedule):
    # epochs=0: the very weights the trained run starts from (same seed), never trained
    untrained = _learned_auc(learnable, learn_cfg(schedule=schedule, epochs=0))
    trained = _learned_auc(learnable, learn_cfg(schedule=schedule))
    assert untrained < 0.65, f"{schedule}: the untrained model already solves the task"
    assert trained >= untrained + GAIN, f"{schedule}: {untrained:.3f} -> {trained:.3f}"


@pytest.mark.parametrize("schedule", registry.SCHEDULES)
def test_zero_learning_rate_fails_the_training_check(learnable, schedule):
    """The check above is not passed by what moves without the optimiser (BatchNorm statistics)."""
    untrained = _learned_auc(learnable, learn_cfg(schedule=schedule, epochs=0))
    frozen = _learned_auc(learnable, learn_cfg(schedule=schedule, lr_start=0.0, lr_end=0.0))
    assert frozen < untrained + GAIN, f"{schedule}: {untrained:.3f} -> {frozen:.3f} at lr 0"


def test_sequential_phase_two_leaves_the_projector_alone(setup):
    m, images, ev = setup
    c = cfg(schedule="sequential", epochs=1)
    model, data, _ = train.train(c, m, images, ev, val_metric=AUC, progress=False)
    before = {k: v.clone() for k, v in model.projector.state_dict().items()}
    train.run_phase(model, data, train.phases(c)[1], c, 1, log=[], val_metric=AUC)
    after = model.projector.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_validation_leaves_a_frozen_projector_in_eval_mode(setup):
    m, images, ev = setup
    c = cfg(schedule="sequential", epochs=1)
    model, data, _ = train.train(c, m, images, ev, val_metric=AUC, progress=False)
    train._set_trainable(model, train.phases(c)[1])
    assert not model.projector.training and model.head.training
    data.eval_logits_or_cos(model, "val", "head")  # what run_phase does after every epoch
    assert not model.projector.training and model.head.training


def test_pixel_path_trains_the_encoder(setup):
    m, images, ev = setup

    def run(**kw):
        c = cfg(**({"schedule": "joint", "freeze_backbone": False, "epochs": 1} | kw))
        return train.train(c, m, images, ev, val_metric=AUC, progress=False)

    untrained, _, _ = run(epochs=0)
    still, _, _ = run(lr_start=0.0, lr_end=0.0)
    trained, data, _ = run()
    assert isinstance(data, train.PixelData)
    w0 = untrained.encoder.conv1.weight
    # same seed, same start: without a learning rate the steps leave the weights where they were
    assert torch.equal(still.encoder.conv1.weight, w0)
    assert not torch.equal(trained.encoder.conv1.weight, w0)


def test_the_validation_scorer_picks_the_epoch_and_names_the_column(setup):
    m, images, ev = setup
    calls = []

    def flat(labels, scores):
        calls.append((len(labels), len(scores)))
        return 0.5

    c = cfg(schedule="bce_only", epochs=6, patience=2)
    _, _, hist = train.train(c, m, images, ev, val_metric=flat, progress=False)
    # epoch 0 is the best (nothing beats it later), so the phase stops after two more epochs
    assert list(hist["epoch"]) == [0, 1, 2] and (hist["val_flat"] == 0.5).all()
    assert calls == [(len(ev["val"][0]), len(ev["val"][0]))] * 3
    assert train.score_column(metrics.roc_auc) == "val_roc_auc"
    assert train.score_column(lambda y, s: 0.0) == "val_score"


def test_training_imports_no_evaluation_code():
    """Model selection gets its scorer from the caller (val_metric), never by import."""
    tree = ast.parse(inspect.getsource(train))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not names & {"metrics", "report", "results", "plots", "retrieval", "baselines"}
    assert not any(n.startswith("sklearn") for n in names)


def test_the_last_phase_scores_as_the_registry_says():
    for schedule in registry.SCHEDULES:
        assert train.phases(cfg(schedule=schedule))[-1].score == registry.scoring(schedule)


def test_checkpoint_resume_and_saved_model(setup, tmp_path):
    m, images, ev = setup
    c = cfg(schedule="joint", epochs=2, patience=10)
    ck = tmp_path / "ck.pt"
    model, data, hist = train.train(c, m, images, ev, val_metric=AUC, checkpoint=ck,
                                   progress=False)  # fmt: skip
    saved = torch.load(ck, weights_only=False)
    assert saved["config"]["schedule"] == "joint" and saved["epoch"] == 2
    c3 = cfg(schedule="joint", epochs=3, patience=10)
    _, _, hist3 = train.train(c3, m, images, ev, val_metric=AUC, resume=ck, progress=False)
    assert list(hist3["epoch"]) == [0, 1, 2]
    train.save_model(model, c, tmp_path / "m.pt")
    loaded, c2 = train.load_model(tmp_path / "m.pt")
    x = torch.rand(2, 3, 32, 32)
    assert c2 == c and torch.equal(loaded.score(x, x.flip(0)), model.eval().score(x, x.flip(0)))


def test_nan_loss_stops_with_a_clear_error(setup):
    m, images, ev = setup
    c = cfg(schedule="joint", lr_start=1e30, lr_end=1e30, epochs=3, steps_per_epoch=4)
    with pytest.raises(FloatingPointError, match="loss is"):
        train.train(c, m, images, ev, val_metric=AUC, progress=False)


@pytest.mark.slow
def test_two_gloo_ranks_end_with_identical_weights(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(out=str(tmp_path)))
    here = os.path.dirname(os.path.abspath(__file__))
    env = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": here}
    with socket.socket() as probe:  # a free port: two test runs on one machine must not clash
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           f"--master_port={port}", str(script)]  # fmt: skip
    subprocess.run(cmd, check=True, env=env, timeout=600, cwd=here)
    w0 = torch.load(tmp_path / "rank0.pt")
    w1 = torch.load(tmp_path / "rank1.pt")
    assert w0.keys() == w1.keys()
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    assert any(not torch.equal(w0[k], torch.load(tmp_path / "init.pt")[k]) for k in w0)


DDP_SCRIPT = """
import torch, torch.distributed as dist
from bfutils import metrics, pairs, train, models
from tests_helpers import synthetic
m, images = synthetic(n_groups=14, per_group=6, size=32)
m["split"] = pairs.assign_splits(m, seed=0)
ev = {{s: pairs.make_pairs(m, images, split=s, n_pairs=40, seed=0, progress=False)
      for s in ("val", "test")}}
c = train.TrainConfig(schedule="joint", encoder="resnet18", pretrained=None, input_size=32,
    projector_widths=(32, 32, 16), head_hidden=16, epochs=2, steps_per_epoch=3, batch_size=16,
    freeze_backbone=False, device="cpu", patience=10)
torch.manual_seed(0)
init = models.build_model(encoder="resnet18", projector_widths=(32, 32, 16), head_hidden=16)
model, data, hist = train.train(c, m, images, ev, val_metric=metrics.roc_auc, progress=False)
rank = dist.get_rank()
torch.save(model.state_dict(), "{out}/rank%d.pt" % rank)
if rank == 0:
    torch.save(init.state_dict(), "{out}/init.pt")
dist.destroy_process_group()
"""


def test_figure_pairs_and_residual_train_save_and_load(setup, tmp_path):
    """Figure-realistic pairs are cached per training image and drawn as labelled pairs: a
    positive is the (source, query) of one figure pair of one image; the residual head's
    weight is saved and restored."""
    m, images, ev = setup
    c = cfg(schedule="joint", figure_pairs=2, figure_share=1.0, residual=True)
    model, data, _ = train.train(c, m, images, ev, val_metric=AUC, progress=False)
    n_train = int((m["split"] == "train").sum())
    assert data.figure[0].shape[:2] == data.figure[1].shape[:2] == (2, n_train)
    fa, fb, y = data.pair_batch(64)
    src, qry = data.figure[0].reshape(-1, fa.shape[1]), data.figure[1].reshape(-1, fa.shape[1])
    assert 0 < y.sum() < len(y)
    for a, b, label in zip(fa, fb, y, strict=True):  # share 1.0: every pair is figure panels
        k = (src == a).all(1).nonzero()[:, 0]
        assert len(k) and (qry == b).all(1).any()
        if label:  # a positive's two sides are the source and query of one figure pair
            assert (qry[k] == b).all(1).any()
    train.save_model(model, c, tmp_path / "m.pt")
    loaded, c2 = train.load_model(tmp_path / "m.pt")
    assert c2.residual and torch.equal(loaded.head.cos_weight, model.head.cos_weight)
    with pytest.raises(ValueError, match="figure_pairs needs freeze_backbone"):
        cfg(figure_pairs=2, freeze_backbone=False)


def test_last_stage_trains_on_cached_trunk_maps_and_the_rest_stays(setup, tmp_path):
    """``train_stages=1``: the trunk's maps are cached once, the last stage learns, every
    earlier weight stays; the saved model scores pixels as training scored the cached maps;
    the untrained encoder's reference cosine is that of the encoder before training."""
    m, images, ev = setup
    c = cfg(schedule="joint", train_stages=1, figure_pairs=1, figure_share=0.5, residual=True)
    untrained, _, _ = train.train(cfg(schedule="joint", epochs=0), m, images, ev,
                                  val_metric=AUC, progress=False)  # fmt: skip
    model, data, _ = train.train(c, m, images, ev, val_metric=AUC, progress=False)
    assert isinstance(data, train.FeatureData) and data.views.ndim == 5  # (V, N, C, h, w) maps
    assert torch.equal(
        model.encoder.layer3[0].conv1.weight, untrained.encoder.layer3[0].conv1.weight
    )
    assert not torch.equal(model.encoder.layer4[0].conv1.weight,
                           untrained.encoder.layer4[0].conv1.weight)  # fmt: skip
    # the reference cosine is the untrained encoder's, not the trained tail's
    ref = train.reference_predictions(data, ev)
    plain = train.reference_predictions(
        train.train(cfg(schedule="joint", epochs=0), m, images, ev, val_metric=AUC,
                    progress=False)[1], ev)  # fmt: skip
    np.testing.assert_allclose(ref["score"], plain["score"], atol=1e-5)
    train.save_model(model, c, tmp_path / "m.pt")
    loaded, c2 = train.load_model(tmp_path / "m.pt")
    assert c2.train_stages == 1
    _, a, b = ev["val"]

    def x(im):
        t = torch.from_numpy(im).permute(0, 3, 1, 2).float() / 255
        return F.interpolate(t, size=32, mode="bilinear", antialias=True)

    np.testing.assert_allclose(
        loaded.score(x(a), x(b)).numpy(), data.eval_logits_or_cos(model, "val", "head"),
        atol=1e-4,
    )  # fmt: skip
    with pytest.raises(ValueError, match="train_stages=1.*freeze_backbone=True"):
        cfg(train_stages=1, freeze_backbone=False)
    with pytest.raises(ValueError, match="train_stages must be in 1..3"):
        train.train(cfg(train_stages=4), m, images, ev, val_metric=AUC, progress=False)

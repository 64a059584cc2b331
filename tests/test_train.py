"""One loop for every schedule: phases, checkpoints, resume, NaN stop, distributed ranks."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from tests_helpers import synthetic

from bfutils import pairs, train


@pytest.fixture(scope="module")
def setup():
    m, images = synthetic(n_groups=14, per_group=6, size=32)
    m["split"] = pairs.assign_splits(m, seed=0)
    ev = {s: pairs.make_pairs(m, images, split=s, n_pairs=40, seed=0, progress=False)
          for s in ("val", "test")}  # fmt: skip
    return m, images, ev


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


@pytest.mark.parametrize("schedule", ["sequential", "joint", "bce_only", "barlow_twins", "simclr"])
def test_every_schedule_trains_and_scores(setup, schedule):
    m, images, ev = setup
    c = cfg(schedule=schedule)
    model, data, hist = train.train(c, m, images, ev, progress=False)
    assert len(hist) >= 2 and np.isfinite(hist["val_roc_auc"]).all()
    pred = train.predictions(model, data, ev, c, name=schedule)
    assert set(pred["split"]) == {"val", "test"} and np.isfinite(pred["score"]).all()
    if schedule in ("sequential", "joint", "bce_only"):
        assert pred["score"].between(0, 1).all()


def test_sequential_phase_two_leaves_the_projector_alone(setup):
    m, images, ev = setup
    c = cfg(schedule="sequential", epochs=1)
    model, data, _ = train.train(c, m, images, ev, progress=False)
    before = {k: v.clone() for k, v in model.projector.state_dict().items()}
    train.run_phase(model, data, train.phases(c)[1], c, 1, log=[])
    after = model.projector.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_validation_leaves_a_frozen_projector_in_eval_mode(setup):
    m, images, ev = setup
    c = cfg(schedule="sequential", epochs=1)
    model, data, _ = train.train(c, m, images, ev, progress=False)
    train._set_trainable(model, train.phases(c)[1])
    assert not model.projector.training and model.head.training
    data.eval_logits_or_cos(model, "val", "head")  # what run_phase does after every epoch
    assert not model.projector.training and model.head.training


def test_pixel_path_trains_the_encoder(setup):
    m, images, ev = setup
    c = cfg(schedule="joint", freeze_backbone=False, epochs=1)
    model = train.models.build_model(encoder="resnet18", projector_widths=(32, 32, 16),
                                     head_hidden=16)  # fmt: skip
    w0 = model.encoder.conv1.weight.detach().clone()
    torch.manual_seed(0)
    trained, data, _ = train.train(c, m, images, ev, progress=False)
    assert isinstance(data, train.PixelData)
    assert not torch.equal(trained.encoder.conv1.weight, w0)


def test_checkpoint_resume_and_saved_model(setup, tmp_path):
    m, images, ev = setup
    c = cfg(schedule="joint", epochs=2, patience=10)
    ck = tmp_path / "ck.pt"
    model, data, hist = train.train(c, m, images, ev, checkpoint=ck, progress=False)
    saved = torch.load(ck, weights_only=False)
    assert saved["config"]["schedule"] == "joint" and saved["epoch"] == 2
    c3 = cfg(schedule="joint", epochs=3, patience=10)
    _, _, hist3 = train.train(c3, m, images, ev, resume=ck, progress=False)
    assert list(hist3["epoch"]) == [0, 1, 2]
    train.save_model(model, c, tmp_path / "m.pt")
    loaded, c2 = train.load_model(tmp_path / "m.pt")
    x = torch.rand(2, 3, 32, 32)
    assert c2 == c and torch.equal(loaded.score(x, x.flip(0)), model.eval().score(x, x.flip(0)))


def test_nan_loss_stops_with_a_clear_error(setup):
    m, images, ev = setup
    c = cfg(schedule="joint", lr_start=1e30, lr_end=1e30, epochs=3, steps_per_epoch=4)
    with pytest.raises(FloatingPointError, match="loss is"):
        train.train(c, m, images, ev, progress=False)


@pytest.mark.slow
def test_two_gloo_ranks_end_with_identical_weights(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(out=str(tmp_path)))
    here = os.path.dirname(os.path.abspath(__file__))
    env = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": here}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_port=29517", str(script)]  # fmt: skip
    subprocess.run(cmd, check=True, env=env, timeout=600, cwd=here)
    w0 = torch.load(tmp_path / "rank0.pt")
    w1 = torch.load(tmp_path / "rank1.pt")
    assert w0.keys() == w1.keys()
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    assert any(not torch.equal(w0[k], torch.load(tmp_path / "init.pt")[k]) for k in w0)


DDP_SCRIPT = """
import torch, torch.distributed as dist
from bfutils import pairs, train, models
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
model, data, hist = train.train(c, m, images, ev, progress=False)
rank = dist.get_rank()
torch.save(model.state_dict(), "{out}/rank%d.pt" % rank)
if rank == 0:
    torch.save(init.state_dict(), "{out}/init.pt")
dist.destroy_process_group()
"""

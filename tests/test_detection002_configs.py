"""Paper 002's detection configs carry App. B.2 / Table 1's settings (schedules checked through the scheduler)."""

import pytest

from ticketlab.config import load_config
from ticketlab.train import schedule_from_config


def test_yolov4_config_is_table_1s_downstream_detection():
    cfg = load_config("configs/voc0712_yolov4_r50.yaml")
    t = cfg.train
    assert (cfg.model.family, cfg.model.backbone, t.batch_size, t.duration) == ("yolov4", "resnet50", 8, "50ep")
    sched = schedule_from_config(t, steps_per_epoch=100)
    assert t.lr * sched.factor(0) == pytest.approx(1e-4) and t.lr * sched.factor(5000) == pytest.approx(1e-6)
    assert (t.momentum, t.weight_decay, cfg.prune.rate, cfg.prune.levels) == (0.9, 5e-4, 0.2, 18)
    assert cfg.prune.scope is None and cfg.prune.rewind == "pretrained"  # the model's default: layer1 … layer4
    assert (cfg.data.train, cfg.data.val) == ("VOC2007/trainval+VOC2012/trainval", "VOC2007/test")


def test_faster_rcnn_config_is_app_b2s_poly_schedule():
    cfg = load_config("configs/voc0712_fasterrcnn_r50.yaml")
    t = cfg.train
    assert (t.duration, t.batch_size, t.lr, t.weight_decay, t.schedule, t.power) == \
        ("24000it", 4, 0.005, 1e-4, "poly", 0.9)
    sched = schedule_from_config(t, steps_per_epoch=1000)
    assert sched.factor(12000) == pytest.approx(0.5**0.9)


def test_ssd_config_is_app_b2s_multistep_schedule():
    cfg = load_config("configs/voc0712_ssd_r50.yaml")
    t = cfg.train
    sched = schedule_from_config(t, steps_per_epoch=1000)
    assert (t.duration, t.batch_size, t.lr, t.weight_decay) == ("120000it", 32, 0.001, 5e-4)
    assert [sched.factor(s) for s in (79999, 80000, 110000)] == pytest.approx([1.0, 0.1, 0.01])
    assert cfg.model.ssd.input_size == 300 and len(cfg.model.ssd.scales) == 7


def test_voc_ap_coco_headlines_cocos_ap_and_keeps_vocs():
    from ticketlab.tasks.voc_detection import voc_task

    task = voc_task("coco")({"images": [{"id": 1, "width": 10, "height": 10}], "annotations": [],
                             "categories": [{"id": 1, "name": "cat"}]}, {1: 1})
    assert task.headline == "bbox_AP" and task.scores_voc and task.record().metrics == ("bbox_AP", "voc07_mAP", "voc_mAP")
    assert load_config("configs/voc0712_ssd_r50.yaml").data.voc_ap == "coco"

"""The segmentation scenes (determinism, coverage, splits) and the mIoU metric on hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.models.seg.data import CLASS_NAMES, NUM_CLASSES, make_scenes
from edgekit.models.seg.metrics import SegScore, confusion_matrix, score, score_outputs, to_class_map
from edgekit.runtimes.errors import UsageError


def test_scenes_are_deterministic_and_independent_of_n():
    a_images, a_labels = make_scenes(6, 32, split="train", seed=3)
    b_images, b_labels = make_scenes(3, 32, split="train", seed=3)
    assert np.array_equal(a_images[:3], b_images) and np.array_equal(a_labels[:3], b_labels)
    c_images, _ = make_scenes(3, 32, split="train", seed=3, first=3)
    assert np.array_equal(a_images[3:], c_images)
    assert not np.array_equal(make_scenes(1, 32, split="train", seed=4)[0], a_images[:1])


def test_types_shapes_and_any_resolution():
    for size in (32, 96):
        images, labels = make_scenes(2, size)
        assert images.shape == (2, 3, size, size) and images.dtype == np.float32
        assert labels.shape == (2, size, size) and labels.dtype == np.int64
        assert labels.min() >= 0 and labels.max() < NUM_CLASSES


def test_every_class_appears_and_background_does_not_dominate():
    _, labels = make_scenes(64, 64, split="val")
    counts = np.bincount(labels.ravel(), minlength=NUM_CLASSES)
    assert len(CLASS_NAMES) == NUM_CLASSES >= 7 and (counts > 0).all()
    assert counts[0] / counts.sum() < 0.85
    assert (counts[1:] / counts[1:].sum()).min() > 0.05  # no object class is rare


def test_train_and_val_share_no_scene():
    train, _ = make_scenes(128, 32, split="train")
    val, _ = make_scenes(128, 32, split="val")
    train_keys = {image.tobytes() for image in train}
    assert not train_keys & {image.tobytes() for image in val}


def test_bad_arguments():
    with pytest.raises(UsageError, match="split 'test' is not a split"):
        make_scenes(1, 32, split="test")
    with pytest.raises(UsageError, match="n and first must be >= 0"):
        make_scenes(-1, 32)


def test_confusion_and_iou_exact_numbers():
    label = np.array([[[0, 0, 1, 1], [2, 2, 2, 2]]])
    pred = np.array([[[0, 1, 1, 1], [2, 2, 0, 3]]])
    confusion = confusion_matrix(pred, label, 4)
    assert confusion.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 2, 1], [0, 0, 0, 0]]
    s = score(pred, label, 4)
    # IoU: class 0: 1 / (1 + 1 + 1) ; class 1: 2 / 3 ; class 2: 2 / 4 ; class 3: 0 / 1 (predicted only)
    assert s.per_class_iou == pytest.approx((1 / 3, 2 / 3, 0.5, 0.0))
    assert s.miou == pytest.approx((1 / 3 + 2 / 3 + 0.5 + 0.0) / 4)
    assert s.pixel_accuracy == pytest.approx(5 / 8) and s.samples == 1
    assert score(pred, label, 5).per_class_iou[4] != score(pred, label, 5).per_class_iou[4]  # NaN: absent
    assert score(pred, label, 5).miou == pytest.approx(s.miou)  # an absent class does not count
    assert s == SegScore(s.miou, s.per_class_iou, s.pixel_accuracy, np.zeros(1), 1)  # confusion not compared
    assert score(pred, label, 5).to_json()["per_class_iou"][4] is None


def test_to_class_map_and_its_errors():
    logits = np.zeros((1, 3, 2, 2), np.float32)
    logits[0, 2, 0, 0] = 1
    assert to_class_map(logits, num_classes=3, name="logits").tolist() == [[[2, 0], [0, 0]]]
    assert to_class_map(np.ones((1, 2, 2), np.int32), num_classes=3, name="y").dtype == np.int64
    with pytest.raises(UsageError, match=r"output 'logits' has shape \(1, 4, 2, 2\) float32: 4 classes on axis 1"):
        to_class_map(np.zeros((1, 4, 2, 2), np.float32), num_classes=3, name="logits")
    with pytest.raises(UsageError, match=r"output 'y' has shape \(1, 10\) float32: expected segmentation logits"):
        to_class_map(np.zeros((1, 10), np.float32), num_classes=3, name="y")
    with pytest.raises(UsageError, match=r"values 0..7"):
        to_class_map(np.array([[[0, 7]]]), num_classes=3, name="y")
    with pytest.raises(UsageError, match="differ in shape"):
        score(np.zeros((1, 2, 2), int), np.zeros((1, 3, 3), int), 3)


def test_score_outputs_over_batches_matches_score():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 4, 6, 6)).astype(np.float32)
    labels = rng.integers(0, 4, (5, 6, 6))
    whole = score(logits.argmax(1), labels, 4)
    batched = score_outputs([{"logits": logits[:2]}, {"logits": logits[2:]}], labels, 4)
    assert batched == whole and np.array_equal(batched.confusion, whole.confusion)
    with pytest.raises(UsageError, match="expected maps of"):
        score_outputs([{"logits": logits[:, :, :3]}], labels, 4)

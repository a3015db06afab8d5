"""The detector's box coding, target assignment, decoding with NMS, and its mAP against torchmetrics."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.detection import MeanAveragePrecision

from cnnlab.analysis.detection import (
    CORRECT_COLOUR,
    WRONG_COLOUR,
    correct_detections,
    detections_figure,
    image_recall,
    precision_at_50,
)
from cnnlab.errors import ConfigError
from cnnlab.models.backbone import Backbone
from cnnlab.models.detector import Detector, assign_targets, cell_centres, decode_boxes, encode_boxes
from cnnlab.models.smallcnn import SmallCNN


def test_encoded_boxes_decode_to_the_same_boxes() -> None:
    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(50, 2, generator=generator) * 40
    boxes = torch.cat([corners, corners + 2 + torch.rand(50, 2, generator=generator) * 20], dim=1)
    points = torch.rand(50, 2, generator=generator) * 64
    codes = encode_boxes(boxes, points, stride=4)
    assert torch.allclose(decode_boxes(codes, points, stride=4), boxes, atol=1e-4)


def test_every_object_gets_cells_near_its_centre_and_padding_none() -> None:
    points = cell_centres(16, 16, stride=4)
    boxes = torch.tensor([[[4.0, 4.0, 24.0, 30.0], [40.0, 10.0, 44.0, 30.0], [0.0, 0.0, 0.0, 0.0]]])
    labels = torch.tensor([[3, 7, -1]])
    positive, matched_boxes, matched_labels = assign_targets(points, boxes, labels, stride=4)
    assert set(matched_labels[positive].tolist()) == {3, 7}  # the 4-pixel-wide "1" too; never the padding
    assert (matched_labels[~positive] == -1).all()
    for label, box in ((3, boxes[0, 0]), (7, boxes[0, 1])):
        cells = points[positive[0] & (matched_labels[0] == label)]
        centre = (box[:2] + box[2:]) / 2
        assert ((cells - centre).abs() <= 1.5 * 4).all()
        assert torch.equal(matched_boxes[0][positive[0] & (matched_labels[0] == label)][0], box)


def outputs_for(detector: Detector, cells: list[tuple[int, tuple[float, ...], int, float]]) -> torch.Tensor:
    """A (1, 5 + C, 16, 16) output whose listed cells (index, box, class, score) are confident."""
    output = torch.zeros(1, 5 + detector.num_classes, 16, 16)
    output[:, 0] = -20.0  # no object elsewhere
    flat = output.view(1, 5 + detector.num_classes, -1)
    points = cell_centres(16, 16, detector.stride)
    for cell, box, label, score in cells:
        flat[0, 1:5, cell] = encode_boxes(torch.tensor(box), points[cell], detector.stride)
        flat[0, 0, cell] = torch.logit(torch.tensor(score))
        flat[0, 5 + label, cell] = 30.0  # class probability ~1, so the score is the objectness
    return output


def test_nms_keeps_the_best_of_overlapping_boxes_of_one_class_only() -> None:
    detector = Detector(1, 10)
    box = (10.0, 10.0, 30.0, 34.0)
    shifted = (11.0, 10.0, 31.0, 34.0)  # IoU > 0.9 with box
    apart = (40.0, 40.0, 60.0, 60.0)
    outputs = outputs_for(
        detector, [(50, box, 2, 0.9), (51, shifted, 2, 0.8), (52, shifted, 5, 0.7), (200, apart, 2, 0.02)]
    )
    (detection,) = detector.decode(outputs, (64, 64))
    assert detection["labels"].tolist() == [2, 5]  # the weaker 2 suppressed, the 5 kept, 0.02 under threshold
    assert detection["scores"].tolist() == pytest.approx([0.9, 0.7], abs=1e-4)
    assert torch.allclose(detection["boxes"][0], torch.tensor(box), atol=1e-3)


def test_map_on_hand_made_predictions_matches_torchmetrics_and_the_hand_computed_ap() -> None:
    targets = [
        {
            "boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]]),
            "labels": torch.tensor([1, 1]),
        }
    ]
    predictions = [
        {
            "boxes": torch.tensor(
                [[0.0, 0.0, 10.0, 10.0], [40.0, 40.0, 50.0, 50.0], [20.0, 20.0, 30.0, 31.0]]
            ),
            "scores": torch.tensor([0.9, 0.8, 0.7]),
            "labels": torch.tensor([1, 1, 1]),
        }
    ]
    metric = MeanAveragePrecision(class_metrics=True, extended_summary=True, backend="faster_coco_eval")
    metric.update(predictions, targets)
    values = metric.compute()
    _, ap_50 = precision_at_50(values)
    # COCO's 101-point AP: precision 1 up to recall 0.5, then 2/3 up to recall 1
    expected = (51 * 1.0 + 50 * 2 / 3) / 101
    assert ap_50 == [pytest.approx(expected, abs=1e-6)]
    assert float(values["map_50"]) == pytest.approx(expected, abs=1e-6)
    reference = MeanAveragePrecision(backend="faster_coco_eval")
    reference.update(predictions, targets)
    assert float(reference.compute()["map_50"]) == pytest.approx(ap_50[0], abs=1e-6)
    assert image_recall(predictions[0], targets[0]) == 1.0  # both objects matched at score >= 0.5
    predictions[0]["labels"] = torch.tensor([1, 1, 4])
    assert image_recall(predictions[0], targets[0]) == 0.5  # the right box with the wrong class


def test_backbone_refuses_a_classifier_of_other_channels_or_architecture() -> None:
    backbone = Backbone("smallcnn", in_channels=1)
    rgb = SmallCNN(in_channels=3, num_classes=10)
    with pytest.raises(ConfigError, match="3-channel images but these canvases have 1"):
        backbone.load_classifier_stages(rgb.state_dict(), "rgb.ckpt", 3)
    with pytest.raises(ConfigError, match="does not fit model.backbone=smallcnn"):
        backbone.load_classifier_stages(SmallCNN(1, 10, widths=(16, 32, 64)).state_dict(), "narrow.ckpt", 1)
    grey = SmallCNN(in_channels=1, num_classes=10)
    backbone.load_classifier_stages(grey.state_dict(), "grey.ckpt", 1)
    assert torch.equal(backbone.stages[0][0][0].weight, grey.stages[0][0][0].weight)


def test_detection_labels_are_large_white_on_the_colour_of_right_or_wrong() -> None:
    """evaluate's detections.png / worst.png: a detection matching a true box is blue, one that does not
    (here the right box with the wrong class, and one scoring under 0.5 not drawn) red."""
    from matplotlib.colors import to_rgba

    canvas = torch.zeros(1, 1, 64, 64, dtype=torch.uint8)
    target = {
        "boxes": torch.tensor([[10.0, 20.0, 30.0, 40.0], [40.0, 0.0, 60.0, 20.0]]),
        "labels": torch.tensor([3, 7]),
    }
    detection = {
        "boxes": torch.tensor([[10.0, 21.0, 30.0, 40.0], [40.0, 0.0, 60.0, 20.0], [0.0, 50.0, 9.0, 60.0]]),
        "labels": torch.tensor([3, 1, 5]),
        "scores": torch.tensor([0.9, 0.8, 0.3]),
    }
    assert correct_detections(detection, target) == [True, False, False]
    figure = detections_figure(canvas, [detection], [target], [str(c) for c in range(10)], ["#0"], "caption")
    texts = {text.get_text(): text for text in figure.axes[0].texts}
    assert set(texts) == {"3 0.90", "1 0.80"}
    for text, colour in ((texts["3 0.90"], CORRECT_COLOUR), (texts["1 0.80"], WRONG_COLOUR)):
        assert text.get_fontsize() >= 10 and text.get_fontweight() == "bold"  # was 7, normal
        assert to_rgba(text.get_color()) == to_rgba("white")
        assert text.get_bbox_patch().get_facecolor()[:3] == pytest.approx(to_rgba(colour)[:3])
    # above a box with room over it; inside one that touches the canvas's top edge
    assert texts["3 0.90"].get_va() == "bottom" and texts["1 0.80"].get_va() == "top"


def test_predicts_box_labels_are_filled_patches_of_the_class_colour(tmp_path) -> None:
    """predict's annotated image: labels were the default 11-pixel font in red on the black canvas."""
    from types import SimpleNamespace

    import numpy as np

    from cnnlab.analysis.dense_prediction import annotate
    from cnnlab.analysis.segmentation import mask_colours

    model = SimpleNamespace(class_names=[str(c) for c in range(10)])
    canvas = torch.zeros(1, 64, 64, dtype=torch.uint8)  # drawn 6x larger: 384 pixels
    drawn = np.asarray(annotate(model, canvas, {"boxes": [("3", 0.9, (10.0, 30.0, 40.0, 60.0))]}))
    assert drawn.shape == (384, 384, 3)
    colour = np.array([round(255 * c) for c in mask_colours(10).colors[4]])  # class 3's
    filled = (drawn == colour).all(axis=-1)
    label_rows = np.where(filled[: 30 * 6, 60:120].any(axis=1))[0]  # above the box's top edge (180)
    assert len(label_rows) >= 16 and label_rows.max() == 179  # a patch of a 16-pixel font, on the box
    patch = drawn[label_rows.min() : 180, 60:120]
    assert (patch > 200).all(axis=-1).sum() > 30  # white text: the class colour is dark
    assert filled[180:361, 60].all()  # the box's left edge in the class colour

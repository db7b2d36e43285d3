"""Crop boxes of the multi-crop views: torchvision's RandomResizedCrop, for many crops at once."""

import math
from collections import Counter

import pytest
import torch
from scipy import stats
from torchvision.transforms import RandomResizedCrop

from imc_cluster.augmentation.crop_boxes import sample_crop_boxes


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def uniform_p_value(sample: torch.Tensor, low: float, high: float) -> float:
    return stats.kstest(sample.double().numpy(), stats.uniform(loc=low, scale=high - low).cdf).pvalue


def test_crop_area_and_aspect_ratio_distributions():
    height = width = 1000
    scale, ratio = (0.1, 0.5), (3 / 4, 4 / 3)
    boxes = sample_crop_boxes(4000, height, width, scale, ratio, generator())
    box_width, box_height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    area = box_width * box_height / (height * width)
    log_aspect = torch.log(box_width / box_height)
    assert uniform_p_value(area, *scale) > 0.01
    assert uniform_p_value(log_aspect, math.log(ratio[0]), math.log(ratio[1])) > 0.01
    assert scale[0] - 2e-3 <= area.min() and area.max() <= scale[1] + 2e-3
    assert math.log(ratio[0]) - 3e-3 <= log_aspect.min() and log_aspect.max() <= math.log(ratio[1]) + 3e-3
    assert uniform_p_value(boxes[:, 0] / (width - box_width + 1), 0, 1) > 0.01  # whole-pixel positions
    assert uniform_p_value(boxes[:, 1] / (height - box_height + 1), 0, 1) > 0.01


def test_crop_positions_are_uniform_over_whole_pixels():
    boxes = sample_crop_boxes(6000, 10, 12, (0.25, 0.25), (1.2, 1.2), generator())  # always 5 x 6
    assert torch.equal(boxes[:, 2:] - boxes[:, :2], torch.tensor([6.0, 5.0]).expand(6000, 2))
    for start, slack in ((boxes[:, 0], 6), (boxes[:, 1], 5)):
        counts = torch.bincount(start.long(), minlength=slack + 1)
        assert len(counts) == slack + 1
        assert stats.chisquare(counts.numpy()).pvalue > 1e-3


@pytest.mark.parametrize("height, width", [(5, 7), (1, 17), (24, 3), (32, 32)])
def test_crop_boxes_inside_image_and_distributed_as_torchvision(height, width):
    scale, ratio, n = (0.08, 1.0), (3 / 4, 4 / 3), 3000
    boxes = sample_crop_boxes(n, height, width, scale, ratio, generator())
    assert torch.equal(boxes, boxes.round())
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
    assert (boxes[:, 2:] - boxes[:, :2] >= 1).all()
    ours = Counter((int(y2 - y1), int(x2 - x1)) for x1, y1, x2, y2 in boxes.tolist())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        image = torch.empty(1, height, width)
        theirs = Counter(RandomResizedCrop.get_params(image, list(scale), list(ratio))[2:] for _ in range(n))
    frequent = [size for size in ours | theirs if ours[size] + theirs[size] >= 20]
    table = [
        [counts[size] for size in frequent] + [n - sum(counts[size] for size in frequent)]
        for counts in (ours, theirs)
    ]
    if table[0][-1] + table[1][-1] == 0:
        table = [row[:-1] for row in table]
    assert len(table[0]) >= 2
    assert stats.chi2_contingency(table).pvalue > 1e-3


@pytest.mark.parametrize(
    "height, width, ratio, expected",
    [(1, 17, (1.0, 1.0), (8, 0, 9, 1)), (20, 3, (1.0, 1.0), (0, 8, 3, 11)), (6, 6, (1.5, 1.5), (0, 1, 6, 5))],
)
def test_central_crop_when_no_attempt_fits(height, width, ratio, expected):
    boxes = sample_crop_boxes(5, height, width, (1.0, 1.0), ratio, generator())
    assert (boxes == torch.tensor(expected, dtype=torch.float32)).all()
    top, left, box_height, box_width = RandomResizedCrop.get_params(
        torch.empty(1, height, width), [1.0, 1.0], list(ratio)
    )
    assert expected == (left, top, left + box_width, top + box_height)

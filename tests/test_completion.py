"""Completion: a sufficient mask grown until its removal takes the evidence away, on classifiers that
read their evidence redundantly (either of two regions decides)."""

from __future__ import annotations

import pytest
import torch
from conftest import BlobDetector, blob_image
from torch import nn

from medcam_dicom.explain.completion import complete_evidence, removal_scores
from medcam_dicom.explain.config import MedCAMConfig
from medcam_dicom.explain.losses import target_log_odds
from medcam_dicom.explain.medcam import MedCAM
from medcam_dicom.explain.verification import apply_mask, masked_log_odds

SIZE = 16


def _square(top: int, left: int, side: int) -> torch.Tensor:
    mask = torch.zeros((SIZE, SIZE), dtype=torch.bool)
    mask[top : top + side, left : left + side] = True
    return mask


FIRST, SECOND, AGAINST = _square(2, 2, 3), _square(10, 10, 3), _square(2, 10, 3)


class EitherSquare(nn.Module):
    """Class-1 log-odds = max(bright voxels of ``FIRST``, of ``SECOND``) - 4.5 - 2 x bright voxels of
    ``AGAINST``: either square alone decides, ``AGAINST`` speaks against class 1."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        counts = [(x[:, 0] * region).flatten(1).sum(dim=1) for region in (FIRST, SECOND, AGAINST)]
        evidence = self.scale * (torch.maximum(counts[0], counts[1]) - 4.5 - 2.0 * counts[2])
        return torch.stack([torch.zeros_like(evidence), evidence], dim=1)


def _setting():
    classifier = EitherSquare().eval()
    image, baseline = torch.ones(1, SIZE, SIZE), torch.zeros(1, SIZE, SIZE)
    image[0, AGAINST] = 0.0  # nothing speaks against class 1 in the image itself
    with torch.no_grad():
        full = float(target_log_odds(classifier(image.unsqueeze(0)), torch.tensor([1]))[0])
    return classifier, image, baseline, full


def _removed_probability(classifier, image, mask, baseline) -> float:
    with torch.no_grad():
        logits = classifier(apply_mask(image, ~mask, baseline).unsqueeze(0))
    return float(torch.softmax(logits, dim=1)[0, 1])


def test_a_sufficient_mask_is_grown_over_the_redundant_evidence_its_removal_left_standing():
    classifier, image, baseline, full = _setting()
    assert _removed_probability(classifier, image, FIRST, baseline) > 0.98  # SECOND still decides
    scores = removal_scores(classifier, image, baseline, FIRST, 1, guide=None, gradient_weight=1.0)
    outside = scores[~FIRST]
    assert float(scores[SECOND].min()) > float(outside.sort(descending=True).values[SECOND.sum()])
    grown = complete_evidence(classifier, image, baseline, FIRST, 1, full, "preserved", 0.3, scores)
    # removing 6 of SECOND's 9 voxels leaves log-odds 3 - 4.5 (p 0.18); 5 would leave p 0.38: the refined
    # size is 15 voxels, between the coarse growths of 13.5 (1.5x) and 18 (2x)
    assert bool((grown >= FIRST).all()) and int((grown & SECOND).sum()) == 6 and int(grown.sum()) == 15
    coarse = complete_evidence(classifier, image, baseline, FIRST, 1, full, "preserved", 0.3, scores, refine=0)
    assert torch.equal(coarse, FIRST | SECOND)  # without refining: the 2x growth
    assert _removed_probability(classifier, image, grown, baseline) <= 0.3
    kept, odds = masked_log_odds(classifier, image, grown.unsqueeze(0), 1, baseline)
    assert bool(kept[0]) and float(odds[0]) >= full  # still as convincing as the full image


def test_a_mask_whose_removal_already_takes_the_decision_is_left_as_it_is():
    classifier, image, baseline, full = _setting()
    both = FIRST | SECOND
    scores = removal_scores(classifier, image, baseline, both, 1, guide=None, gradient_weight=1.0)
    assert torch.equal(complete_evidence(classifier, image, baseline, both, 1, full, "preserved", 0.3, scores), both)


def test_no_growth_along_a_ranking_that_misses_the_evidence_leaves_the_mask_as_it_is():
    classifier, image, baseline, full = _setting()
    away = -SECOND.float()  # the guide ranks the second square last: 16x the mask never reaches it
    scores = removal_scores(classifier, image, baseline, FIRST, 1, guide=away, gradient_weight=0.0)
    assert torch.equal(complete_evidence(classifier, image, baseline, FIRST, 1, full, "preserved", 0.3, scores),
                       FIRST)


def test_a_growth_that_would_no_longer_convince_is_not_taken():
    classifier, image, baseline, full = _setting()
    image = image.clone()
    image[0, AGAINST] = 1.0  # now AGAINST is bright: kept, it speaks against class 1
    with torch.no_grad():
        full = float(target_log_odds(classifier(image.unsqueeze(0)), torch.tensor([1]))[0])
    against_first = torch.zeros(SIZE, SIZE)
    against_first[AGAINST], against_first[SECOND] = 2.0, 1.0  # the guide adds AGAINST before SECOND
    scores = removal_scores(classifier, image, baseline, FIRST, 1, guide=against_first, gradient_weight=0.0)
    grown = complete_evidence(classifier, image, baseline, FIRST, 1, full, "decision", 0.3, scores)
    assert torch.equal(grown, FIRST)  # every growth that reached SECOND held AGAINST too and lost the decision


def test_bad_arguments_are_refused():
    classifier, image, baseline, full = _setting()
    with pytest.raises(ValueError, match="removed_probability"):
        complete_evidence(classifier, image, baseline, FIRST, 1, full, "preserved", 1.0, torch.zeros(SIZE, SIZE))
    with pytest.raises(ValueError, match="criterion"):
        complete_evidence(classifier, image, baseline, FIRST, 1, full, "tiny", 0.3, torch.zeros(SIZE, SIZE))
    with pytest.raises(ValueError, match="gradient_weight"):
        removal_scores(classifier, image, baseline, FIRST, 1, None, 1.5)
    with pytest.raises(ValueError, match="prune_complete"):
        MedCAMConfig(prune_complete=1.0)
    with pytest.raises(ValueError, match="prune_complete_gradient"):
        MedCAMConfig(prune_complete_gradient=-0.1)


def test_medcam_completes_a_mask_over_both_blobs_a_max_pooling_classifier_reads(fast_config):
    classifier = BlobDetector().eval()
    image, first = blob_image(size=32, centre=(9, 9), radius=3.5)
    second_image, second = blob_image(size=32, centre=(23, 23), radius=3.5)
    image = torch.maximum(image, second_image)  # two bright blobs: either decides
    fast_config.prune_search, fast_config.prune_search_guide = 40, 0.5
    searched = MedCAM(classifier, config=fast_config).explain(image)
    fast_config.prune_complete = 0.3
    completed = MedCAM(classifier, config=fast_config).explain(image)
    baseline = MedCAM(classifier, config=fast_config).baseline(image)
    assert _removed_probability(classifier, image, searched.mask, baseline) > 0.5  # one blob was enough
    assert _removed_probability(classifier, image, completed.mask, baseline) <= 0.3
    assert bool((completed.mask >= searched.mask).all()) and completed.area_fraction > searched.area_fraction
    assert bool((completed.mask & first).any()) and bool((completed.mask & second).any())
    assert completed.faithful and completed.masked_probability >= completed.probability - 1e-6

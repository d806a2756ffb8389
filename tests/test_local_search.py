"""The evidence search: voxels traded by the classifier's gradient, on classifiers whose evidence is known."""

from __future__ import annotations

import pytest
import torch
from conftest import BlobDetector, blob_image
from torch import nn

from medcam_dicom.explain.config import MedCAMConfig
from medcam_dicom.explain.local_search import GROW_STEPS, _candidates, guided_scores, search_evidence
from medcam_dicom.explain.losses import target_log_odds
from medcam_dicom.explain.medcam import MedCAM
from medcam_dicom.explain.pruning import mask_gradient
from medcam_dicom.explain.verification import masked_log_odds

SIZE = 16


def _square(top: int, left: int, side: int) -> torch.Tensor:
    mask = torch.zeros((SIZE, SIZE), dtype=torch.bool)
    mask[top : top + side, left : left + side] = True
    return mask


EVIDENCE = _square(5, 5, 3)  # the 9 voxels the classifier counts


class CountsEvidence(nn.Module):
    """Class-1 log-odds = (bright voxels of ``EVIDENCE``) - ``bias``: nothing else in the image matters."""

    def __init__(self, bias: float = 0.0, evidence: torch.Tensor = EVIDENCE) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.bias, self.evidence = bias, evidence

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        evidence = self.scale * (x[:, 0] * self.evidence).flatten(1).sum(dim=1) - self.bias
        return torch.stack([torch.zeros_like(evidence), evidence], dim=1)


def _setting(bias: float = 0.0, evidence: torch.Tensor = EVIDENCE):
    classifier = CountsEvidence(bias, evidence).eval()
    image, baseline = torch.ones(1, SIZE, SIZE), torch.zeros(1, SIZE, SIZE)
    with torch.no_grad():
        full = float(target_log_odds(classifier(image.unsqueeze(0)), torch.tensor([1]))[0])
    return classifier, image, baseline, full


def test_gradient_is_the_worth_of_each_voxel():
    classifier, image, baseline, _ = _setting()
    gradient = mask_gradient(classifier, image, baseline, _square(0, 0, 4), 1)
    assert torch.equal(gradient == 1.0, EVIDENCE) and float(gradient[~EVIDENCE].abs().max()) == 0.0


def test_search_drops_what_the_decision_does_not_read():
    classifier, image, baseline, full = _setting()
    mask = EVIDENCE | _square(10, 10, 5)  # the evidence and 25 voxels it does not need
    found = search_evidence(classifier, image, baseline, mask, 1, full, "preserved")
    assert torch.equal(found, EVIDENCE)


def test_search_grows_a_mask_that_falls_short_to_the_full_images_log_odds():
    classifier, image, baseline, full = _setting()
    part = _square(5, 5, 2)  # 4 of the 9 voxels: log-odds 4 < 9
    found = search_evidence(classifier, image, baseline, part, 1, full, "preserved")
    assert torch.equal(found, EVIDENCE)
    # while it falls short, voxels are added from anywhere: from a corner, out of ``reach`` of the evidence,
    # the evidence is found and the corner dropped
    corner = _square(0, 0, 1)
    for reach in (2, None):
        assert torch.equal(search_evidence(classifier, image, baseline, corner, 1, full, reach=reach), EVIDENCE)


def test_a_mask_that_falls_short_grows_by_up_to_1024_voxels_a_round():
    # evidence of 64 voxels, all needed: one round adds them all (32 a round would take two)
    region = _square(2, 2, 8)
    classifier, image, baseline, full = _setting(evidence=region)
    empty = torch.zeros((SIZE, SIZE), dtype=torch.bool)
    assert torch.equal(search_evidence(classifier, image, baseline, empty, 1, full, rounds=1), region)
    assert GROW_STEPS[-1] == 1024


def test_swapped_in_voxels_lie_within_reach_and_added_ones_anywhere():
    corner = _square(0, 0, 2)
    gradient = torch.zeros((SIZE, SIZE))
    gradient[EVIDENCE] = 1.0  # the most useful voxels lie far from the mask
    gradient[0, 2] = 0.5  # the most useful one within reach 1 of the mask
    candidates, counts = _candidates(corner, gradient, 1, True, (1,), (1,))
    dropped, swapped, grown = candidates
    assert counts.tolist() == [3, 4, 5]
    assert torch.equal(dropped & ~corner, torch.zeros_like(corner))
    assert torch.equal(swapped & ~corner, _square(0, 2, 1))  # not the better voxels out of reach
    assert int((grown & ~corner).sum()) == 1 and bool((grown & EVIDENCE).any())  # but for a grown mask
    # a mask that passes the test is not grown
    assert len(_candidates(corner, gradient, 1, False, (1,), (1,))[0]) == 2


def test_an_empty_mask_that_falls_short_is_grown_from_anywhere():
    # a "normal"-like decision the blurred image alone keeps, but less convincingly than the full image:
    # the search starts from nothing, its first voxels from anywhere, as for any mask that falls short
    classifier, image, baseline, full = _setting()
    empty = torch.zeros((SIZE, SIZE), dtype=torch.bool)
    for reach in (2, None):
        assert torch.equal(search_evidence(classifier, image, baseline, empty, 1, full, reach=reach), EVIDENCE)
    # an empty mask that passes the test is already the smallest: kept as it is
    classifier, image, baseline, full = _setting(bias=-1.0)  # class 1 on the blurred image too
    assert torch.equal(search_evidence(classifier, image, baseline, empty, 1, full, "decision"), empty)


def test_decision_criterion_keeps_only_what_tips_the_decision():
    classifier, image, baseline, full = _setting(bias=4.5)  # class 1 from 5 evidence voxels on
    found = search_evidence(classifier, image, baseline, EVIDENCE | _square(0, 0, 3), 1, full, "decision")
    assert int(found.sum()) == 5 and not (found & ~EVIDENCE).any()
    kept, _ = masked_log_odds(classifier, image, found.unsqueeze(0), 1, baseline)
    assert bool(kept[0])


def test_search_swaps_voxels_for_better_ones_at_the_same_size():
    # four voxels of which two read as evidence: the others are traded for evidence voxels, then the
    # mask, now of 4 evidence voxels, grows to all nine
    classifier, image, baseline, full = _setting()
    mask = _square(5, 5, 1) | _square(5, 6, 1) | _square(8, 5, 1) | _square(8, 6, 1)
    found = search_evidence(classifier, image, baseline, mask, 1, full, "preserved", reach=2)
    assert torch.equal(found, EVIDENCE)


def test_search_off_and_bad_arguments():
    classifier, image, baseline, full = _setting()
    mask = _square(0, 0, 3)
    for criterion, rounds in (("none", 40), ("preserved", 0)):
        assert torch.equal(search_evidence(classifier, image, baseline, mask, 1, full, criterion, rounds), mask)
    with pytest.raises(ValueError, match="prune criterion"):
        search_evidence(classifier, image, baseline, mask, 1, full, "smallest")
    with pytest.raises(ValueError, match="reach"):
        search_evidence(classifier, image, baseline, mask, 1, full, reach=-1)
    with pytest.raises(ValueError, match="prune_search"):
        MedCAMConfig(prune_search=-1)
    with pytest.raises(ValueError, match="prune_search_reach"):
        MedCAMConfig(prune_search_reach=-2)


def test_medcam_with_the_search_keeps_the_blob_at_the_full_images_probability(fast_config):
    classifier = BlobDetector().eval()
    image, disk = blob_image(size=32, centre=(10, 20), radius=4.0)
    without = MedCAM(classifier, config=fast_config).explain(image)
    fast_config.prune_search = 40
    explainer = MedCAM(classifier, config=fast_config)
    searched = explainer.explain(image)
    assert searched.faithful and searched.masked_probability >= searched.probability - 1e-6
    assert searched.area_fraction <= without.area_fraction
    assert float((searched.mask & disk).sum()) / float(searched.mask.sum()) >= 0.9


def test_guided_scores_add_the_scaled_guide_to_the_scaled_gradient():
    gradient, guide = torch.tensor([2.0, -1.0, 0.0]), torch.tensor([10.0, 30.0, 20.0])
    assert torch.equal(guided_scores(gradient, None, 0.5), gradient)
    assert torch.equal(guided_scores(gradient, guide, 0.0), gradient)
    assert torch.allclose(guided_scores(gradient, guide, 0.5), torch.tensor([1.0, 0.0, 0.25]))
    assert torch.allclose(guided_scores(gradient, torch.ones(3), 0.5), torch.tensor([1.0, -0.5, 0.0]))  # flat map


def test_a_guide_picks_which_of_two_equally_convincing_regions_is_kept():
    # two 3x3 regions the classifier counts alike; any 5 of their 18 voxels keep the decision
    first, second = _square(1, 1, 3), _square(10, 10, 3)
    classifier, image, baseline, full = _setting(bias=4.5, evidence=first | second)
    both = first | second
    unguided = search_evidence(classifier, image, baseline, both, 1, full, "decision")
    guided = search_evidence(classifier, image, baseline, both, 1, full, "decision", guide=first.float(),
                             guide_weight=0.5)
    kept = masked_log_odds(classifier, image, torch.stack([unguided, guided]), 1, baseline)[0]
    assert bool(kept.all()) and int(unguided.sum()) == int(guided.sum()) == 5
    assert not bool((unguided & first).any())  # ties fall to the voxels listed last: the second region
    assert bool((guided <= first).all())  # the guide's region


def test_a_negative_guide_weight_is_refused():
    classifier, image, baseline, full = _setting()
    with pytest.raises(ValueError, match="guide_weight"):
        search_evidence(classifier, image, baseline, EVIDENCE, 1, full, guide=EVIDENCE.float(), guide_weight=-1)
    with pytest.raises(ValueError, match="prune_search_guide"):
        MedCAMConfig(prune_search_guide=-0.5)


def test_medcam_guides_the_search_by_its_warm_starts_map(fast_config, monkeypatch):
    from medcam_dicom.explain import medcam as medcam_module

    seen = []

    def recording(*args, **kwargs):  # the real search, its guide noted
        seen.append((kwargs.get("guide"), kwargs.get("guide_weight")))
        return search_evidence(*args, **kwargs)

    monkeypatch.setattr(medcam_module, "search_evidence", recording)
    classifier = BlobDetector().eval()
    image, disk = blob_image(size=32, centre=(10, 20), radius=4.0)
    fast_config.prune_search, fast_config.prune_search_guide = 40, 0.5
    guided = MedCAM(classifier, config=fast_config).explain(image)
    (guide, weight), = seen
    assert weight == 0.5 and guide is not None and tuple(guide.shape) == (32, 32)
    assert float(guide[disk].mean()) > float(guide[~disk].mean())  # the occlusion map marks the blob
    assert guided.faithful and guided.masked_probability >= guided.probability - 1e-6
    assert float((guided.mask & disk).sum()) / float(guided.mask.sum()) >= 0.9

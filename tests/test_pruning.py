"""Pruning an optimised mask to its smallest part that is still as convincing as the whole."""

from __future__ import annotations

import pytest
import torch
from conftest import BlobDetector, blob_image
from scipy import ndimage

from medcam_dicom.explain.config import MedCAMConfig
from medcam_dicom.explain.losses import target_log_odds
from medcam_dicom.explain.medcam import MedCAM
from medcam_dicom.explain.pruning import (
    blended_scores,
    drop_unneeded_parts,
    gradient_scores,
    level_masks,
    prune_mask,
    prune_reranked,
    ranking_scores,
)
from medcam_dicom.explain.verification import apply_mask, verify_mask


def _square(size: int, top: int, left: int, side: int) -> torch.Tensor:
    mask = torch.zeros((size, size), dtype=torch.bool)
    mask[top : top + side, left : left + side] = True
    return mask


def _closeness(size: int, centre: tuple[float, float]) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    return -((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2).sqrt()


def _full_odds(classifier: torch.nn.Module, image: torch.Tensor) -> float:
    with torch.no_grad():
        return float(target_log_odds(classifier(image.unsqueeze(0)), torch.tensor([1])))


def test_level_masks_keep_the_top_scores_inside_the_mask_only():
    mask = _square(8, 0, 0, 4)  # 16 voxels
    scores = torch.arange(64.0).view(8, 8)  # highest outside the mask, bottom right
    levels = level_masks(mask, scores, (0.25, 0.5))
    assert levels.shape == (2, 8, 8)
    assert [int(level.sum()) for level in levels] == [4, 8]
    assert not (levels & ~mask).any()
    assert levels[0].nonzero().tolist() == [[3, 0], [3, 1], [3, 2], [3, 3]]  # the mask's highest row
    grown = level_masks(mask, scores, (1.5,))[0]  # all of the mask, then the best voxels outside it
    assert int(grown.sum()) == 24 and bool(grown[mask].all()) and bool(grown[7, :].all())


def test_pruning_keeps_the_blob_and_drops_the_fringe():
    classifier = BlobDetector().eval()
    image, disk = blob_image(size=32, centre=(10, 20), radius=4.0)
    baseline = torch.zeros_like(image)
    mask = _square(32, 2, 12, 18)  # 324 voxels around the 49-voxel disk
    pruned = prune_mask(classifier, image, baseline, mask, _closeness(32, (10, 20)), 1, _full_odds(classifier, image))
    assert int(pruned.sum()) < int(mask.sum()) // 2
    assert not (pruned & ~mask).any()
    faithful, _ = verify_mask(classifier, image, pruned, 1, baseline)
    assert faithful
    assert (pruned & disk).sum() >= 0.9 * pruned.sum()


def test_pruning_ranked_away_from_the_evidence_keeps_what_the_decision_needs():
    classifier = BlobDetector().eval()
    image, disk = blob_image(size=32, centre=(10, 20), radius=4.0)
    baseline = torch.zeros_like(image)
    mask = _square(32, 2, 12, 18)
    # the ranking puts the mask's far corner first: small levels miss the disk and fail the test
    odds = _full_odds(classifier, image)
    pruned = prune_mask(classifier, image, baseline, mask, _closeness(32, (19, 29)), 1, odds)
    well_ranked = prune_mask(classifier, image, baseline, mask, _closeness(32, (10, 20)), 1, odds)
    assert verify_mask(classifier, image, pruned, 1, baseline)[0]
    assert (pruned & disk).sum() >= 0.5 * disk.sum()
    assert int(pruned.sum()) > 2 * int(well_ranked.sum())


def test_a_mask_short_of_the_full_image_grows_along_the_scores_until_it_is_not():
    classifier = BlobDetector().eval()
    image, disk = blob_image(size=32, centre=(10, 20), radius=4.0)
    baseline = torch.zeros_like(image)
    mask = _square(32, 7, 17, 4)  # part of the disk: keeps the decision, far less convincing than the image
    odds = _full_odds(classifier, image)
    assert 0 < _full_odds(classifier, apply_mask(image, mask, baseline)) < odds - 5
    scores = _closeness(32, (10, 20))
    grown = prune_mask(classifier, image, baseline, mask, scores, 1, odds, fractions=(0.5, 2.0, 4.0, 8.0))
    assert int(grown.sum()) > int(mask.sum()) and (grown & mask).sum() == mask.sum()
    assert _full_odds(classifier, apply_mask(image, grown, baseline)) >= odds
    # without growth levels it only prunes, and never below the unpruned mask's own conviction
    pruned = prune_mask(classifier, image, baseline, mask, scores, 1, odds, fractions=(0.25, 0.5))
    assert int(pruned.sum()) <= int(mask.sum())
    assert _full_odds(classifier, apply_mask(image, pruned, baseline)) >= _full_odds(
        classifier, apply_mask(image, mask, baseline)
    )


def test_sufficient_grows_a_mask_still_short_over_the_image_an_empty_one_too_until_the_whole_image_ends_it():
    classifier = BlobDetector().eval()
    image, disk = blob_image(size=32, centre=(10, 20), radius=4.0)
    baseline, empty = torch.zeros_like(image), torch.zeros((32, 32), dtype=torch.bool)
    odds = _full_odds(classifier, image)
    assert _full_odds(classifier, apply_mask(image, empty, baseline)) < 0  # blurred away, the blob is gone
    # an empty mask (the explainer found nothing) grows along its ranking to 5 % of the image: the disk
    grown = prune_mask(classifier, image, baseline, empty, _closeness(32, (10, 20)), 1, odds, "sufficient",
                       image_fractions=(0.02, 0.05, 0.1, 1.0))
    assert int(grown.sum()) == round(0.05 * 32 * 32) and bool(grown[disk].all())
    assert _full_odds(classifier, apply_mask(image, grown, baseline)) >= odds
    # ranked away from the disk, half the image misses it: the whole image, the full image itself, ends it
    far = _closeness(32, (31, 0))
    assert not bool(prune_mask(classifier, image, baseline, empty, far, 1, odds, "sufficient",
                               image_fractions=(0.5,)).any())
    whole = prune_mask(classifier, image, baseline, empty, far, 1, odds, "sufficient", image_fractions=(0.5, 1.0))
    assert bool(whole.all())
    # a non-empty mask past its own growth levels grows the same way, keeping all of itself
    corner = _square(32, 28, 0, 4)
    grown = prune_mask(classifier, image, baseline, corner, _closeness(32, (10, 20)), 1, odds, "sufficient",
                       fractions=(0.5, 2.0), image_fractions=(0.1, 1.0))
    assert int(grown.sum()) == round(0.1 * 32 * 32) and bool(grown[corner].all()) and bool(grown[disk].all())
    # "preserved" and "decision" never grow over the image
    for criterion in ("preserved", "decision"):
        assert not bool(prune_mask(classifier, image, baseline, empty, far, 1, odds, criterion,
                                   image_fractions=(0.5, 1.0)).any())
        kept = prune_mask(classifier, image, baseline, corner, _closeness(32, (10, 20)), 1, odds, criterion,
                          fractions=(0.5, 2.0), image_fractions=(0.1, 1.0))
        assert int(kept.sum()) <= 2 * int(corner.sum())  # its own levels only


class _VoxelCounter(torch.nn.Module):
    """"Lesion" (class 1) when more than ``needed`` voxels of an all-ones image are kept (a blurred-away
    voxel is 0): its logit is the kept count, capped at ``cap``; "normal" is ``needed``."""

    def __init__(self, needed: float, cap: float) -> None:
        super().__init__()
        self.needed, self.cap = needed, cap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept = x.flatten(1).sum(dim=1).clamp(max=self.cap)
        return torch.stack([torch.full_like(kept, self.needed), kept], dim=1)


def test_refinement_finds_the_smallest_passing_level_between_the_fractions_steps():
    classifier = _VoxelCounter(needed=37.5, cap=60.0)  # the decision needs 38 voxels, the full image's odds 60
    image, baseline = torch.ones((1, 16, 16)), torch.zeros((1, 16, 16))
    mask, scores, odds = _square(16, 0, 0, 10), _closeness(16, (0, 0)), _full_odds(classifier, image)
    coarse = prune_mask(classifier, image, baseline, mask, scores, 1, odds, "decision")
    fine = prune_mask(classifier, image, baseline, mask, scores, 1, odds, "decision", refine=8)
    assert int(coarse.sum()) == 40  # 0.4 of the 100 voxels: 0.3 fails
    assert int(fine.sum()) == 38 and not (fine & ~coarse).any()  # the top 38 of the same ranking
    # a 49-voxel mask keeps the decision (log-odds 11.5) short of the full image's (22.5): "preserved" keeps
    # its fallback test (as convincing as the whole mask), which no finer level below the mask passes
    short = _square(16, 0, 0, 7)
    assert torch.equal(prune_mask(classifier, image, baseline, short, scores, 1, odds, "preserved", refine=8), short)
    # "sufficient" grows it over the image's steps (51 voxels fail, 77 pass), then finds the first finer
    # level reaching the full image (60 voxels; the levels between 51 and 77 are 5 % apart)
    grown = prune_mask(classifier, image, baseline, short, scores, 1, odds, "sufficient",
                       image_fractions=(0.1, 0.2, 0.3, 1.0))
    finer = prune_mask(classifier, image, baseline, short, scores, 1, odds, "sufficient",
                       image_fractions=(0.1, 0.2, 0.3, 1.0), refine=8)
    assert int(grown.sum()) == round(0.3 * 256) and 60 <= int(finer.sum()) <= 63
    assert bool(finer[short].all())
    with pytest.raises(ValueError, match="prune_refine"):
        MedCAMConfig(prune_refine=-1)


def test_decision_criterion_prunes_at_least_as_far_as_preserved():
    classifier = BlobDetector().eval()
    image, _ = blob_image(size=32, centre=(10, 20), radius=4.0)
    baseline = torch.zeros_like(image)
    mask, scores, odds = _square(32, 2, 12, 18), _closeness(32, (10, 20)), _full_odds(classifier, image)
    preserved = prune_mask(classifier, image, baseline, mask, scores, 1, odds, "preserved")
    decision = prune_mask(classifier, image, baseline, mask, scores, 1, odds, "decision")
    assert int(decision.sum()) <= int(preserved.sum())
    assert torch.equal(prune_mask(classifier, image, baseline, mask, scores, 1, odds, "none"), mask)
    empty = torch.zeros_like(mask)
    assert torch.equal(prune_mask(classifier, image, baseline, empty, scores, 1, odds), empty)
    with pytest.raises(ValueError, match="prune criterion"):
        prune_mask(classifier, image, baseline, mask, scores, 1, odds, "smallest")


def test_medcam_with_pruning_returns_a_smaller_verified_mask(fast_config):
    classifier = BlobDetector().eval()
    image, disk = blob_image(size=32, centre=(10, 20), radius=4.0)
    plain = MedCAM(classifier, config=MedCAMConfig(**{**fast_config.__dict__, "prune": "none"})).explain(image, 1)
    pruned_config = MedCAMConfig(**{**fast_config.__dict__, "prune": "preserved"})
    pruned = MedCAM(classifier, config=pruned_config).explain(image, target=1)
    assert pruned.faithful
    assert pruned.area_fraction <= plain.area_fraction
    assert not (pruned.mask & ~plain.mask).any()
    assert torch.equal(pruned.soft_mask, plain.soft_mask)  # the optimisation itself is unchanged
    assert (pruned.mask & disk).sum() >= 0.5 * pruned.mask.sum()
    # per-image Med-CAM takes the same criteria: "sufficient" is never below the full image's conviction
    sufficient = MedCAM(classifier, config=MedCAMConfig(**{**fast_config.__dict__, "prune": "sufficient"}))
    explanation = sufficient.explain(image, target=1)
    assert explanation.faithful and explanation.masked_probability >= explanation.probability - 1e-6
    # and prune_refine: the decision's smallest level found between the fractions' steps (from a start of
    # side-by-side occlusion windows, which leaves the optimised mask room between the steps)
    coarse, fine = (MedCAM(classifier, config=MedCAMConfig(**{**fast_config.__dict__, "prune": "decision",
                                                              "prune_refine": refine,
                                                              "warm_start_occlusion": (0.125, 0.0)})).explain(image, 1)
                    for refine in (0, 8))
    assert fine.faithful and fine.area_fraction < coarse.area_fraction and not (fine.mask & ~coarse.mask).any()
    with pytest.raises(ValueError, match="prune"):
        MedCAMConfig(prune="smallest")
    with pytest.raises(ValueError, match="prune_fractions"):
        MedCAMConfig(prune_fractions=(0.5, 0.0))
    with pytest.raises(ValueError, match="prune_image_fractions"):
        MedCAMConfig(prune_image_fractions=(0.5, 1.5))


def test_the_classifiers_gradient_ranks_the_blob_above_the_fringe_of_a_mask():
    classifier = BlobDetector().eval()
    image, disk = blob_image(size=32, centre=(10, 20), radius=4.0)
    baseline = torch.zeros_like(image)
    mask = _square(32, 2, 12, 18)  # 324 voxels around the 49-voxel disk
    scores = gradient_scores(classifier, image, baseline, mask, 1)
    assert scores.shape == (32, 32)
    assert float(scores[disk].mean()) > 10 * float(scores[mask & ~disk].mean())
    pruned = prune_mask(classifier, image, baseline, mask, scores, 1, _full_odds(classifier, image))
    assert verify_mask(classifier, image, pruned, 1, baseline)[0]
    assert (pruned & disk).sum() >= 0.9 * pruned.sum() and int(pruned.sum()) < int(mask.sum()) // 2


@pytest.mark.parametrize("ranking", ["gradient", "blend"])
def test_medcam_prunes_by_the_gradient_when_asked(ranking):
    image, disk = blob_image(size=32, centre=(10, 20), radius=4.0)
    settings = dict(max_steps=40, min_steps=5, unet_channels=(8, 16), unet_strides=(2,))
    explanation = MedCAM(BlobDetector(), config=MedCAMConfig(**settings, prune_ranking=ranking)).explain(image)
    assert explanation.faithful and explanation.target == 1
    assert (explanation.mask & disk).sum() >= 0.5 * explanation.mask.sum()
    with pytest.raises(ValueError, match="prune_ranking"):
        MedCAMConfig(prune_ranking="occlusion")
    with pytest.raises(ValueError, match="prune_gradient_weight"):
        MedCAMConfig(prune_gradient_weight=1.5)


def test_the_default_ranking_is_the_blend_amortised_and_the_warm_start_map_per_image():
    assert MedCAMConfig().prune_ranking == "auto"
    assert MedCAMConfig().pruning_ranking(amortized=True) == "blend"
    assert MedCAMConfig().pruning_ranking(amortized=False) == "start"
    for ranking in ("soft", "gradient", "blend", "start"):
        assert MedCAMConfig(prune_ranking=ranking).pruning_ranking(amortized=True) == ranking
        assert MedCAMConfig(prune_ranking=ranking).pruning_ranking(amortized=False) == ranking
    image, _ = blob_image(size=32, centre=(10, 20), radius=4.0)
    settings = dict(max_steps=40, min_steps=5, unet_channels=(8, 16), unet_strides=(2,), prune="decision")
    by_default = MedCAM(BlobDetector(), config=MedCAMConfig(**settings)).explain(image)
    by_start = MedCAM(BlobDetector(), config=MedCAMConfig(**settings, prune_ranking="start")).explain(image)
    assert torch.equal(by_default.mask, by_start.mask)
    # without a warm start there is no map: "start" is the soft mask's order
    cold = dict(settings, warm_start="none")
    by_start = MedCAM(BlobDetector(), config=MedCAMConfig(**cold, prune_ranking="start")).explain(image)
    by_soft = MedCAM(BlobDetector(), config=MedCAMConfig(**cold, prune_ranking="soft")).explain(image)
    assert torch.equal(by_start.mask, by_soft.mask)
    with pytest.raises(ValueError, match="prune_start_weight"):
        MedCAMConfig(prune_start_weight=-0.1)


def test_the_blend_mixes_each_rankings_order_within_the_mask():
    mask = _square(4, 0, 0, 2)  # voxels (0,0), (0,1), (1,0), (1,1)
    outside = torch.arange(16.0).view(4, 4)
    corner = torch.zeros(4, 4)
    corner[:2, :2] = torch.tensor([[40.0, 30.0], [20.0, 10.0]])
    first = torch.where(mask, 1000.0 + corner, outside)  # the mask on top of the image's scale
    corner[:2, :2] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    second = torch.where(mask, corner, -outside)
    # within the mask: first's percentiles 1, 2/3, 1/3, 0 and second's 0, 1/3, 2/3, 1, whatever the scale
    quarter = blended_scores(first, second, mask, 0.25)[mask]
    assert quarter.tolist() == pytest.approx([0.75, 7 / 12, 5 / 12, 0.25])
    assert blended_scores(first, second, mask, 0.75)[mask].tolist() == pytest.approx([0.25, 5 / 12, 7 / 12, 0.75])
    assert torch.equal(blended_scores(first, second, mask, 0.0)[mask], torch.tensor([1.0, 2 / 3, 1 / 3, 0.0]))
    # the rest is ranked among itself: by second alone, highest where ``outside`` is lowest
    rest = blended_scores(first, second, mask, 1.0)[~mask]
    assert float(rest.max()) == 1.0 and int(rest.argmax()) == 0 and float(rest.min()) == 0.0
    # a ranking tied within the mask leaves the order to the other, ties at their mean percentile
    tied = blended_scores(torch.where(mask, 5.0, outside), second, mask, 0.25)[mask]
    assert tied.tolist() == pytest.approx([0.375 + 0.25 * p for p in (0, 1 / 3, 2 / 3, 1)])


def test_the_pruning_ranking_is_the_configs_soft_gradient_or_blend():
    classifier = BlobDetector().eval()
    image, _ = blob_image(size=32, centre=(10, 20), radius=4.0)
    baseline = torch.zeros_like(image)
    mask = _square(32, 2, 12, 18)
    own = _closeness(32, (2, 12))  # ranks the mask's far corner first
    assert ranking_scores("soft", own, torch.nn.Identity(), image, baseline, mask, 1, 0.25) is own  # no pass
    gradient = gradient_scores(classifier, image, baseline, mask, 1)
    assert torch.equal(ranking_scores("gradient", own, classifier, image, baseline, mask, 1, 0.25), gradient)
    assert torch.equal(ranking_scores("blend", own, classifier, image, baseline, mask, 1, 0.25),
                       blended_scores(own, gradient, mask, 0.25))
    start = _closeness(32, (10, 20))  # a warm start's map: no pass either
    assert torch.equal(ranking_scores("start", own, torch.nn.Identity(), image, baseline, mask, 1, 0.25, start, 0.5),
                       blended_scores(own, start, mask, 0.5))
    assert ranking_scores("start", own, torch.nn.Identity(), image, baseline, mask, 1, 0.25, None, 0.5) is own
    for unresolved in ("occlusion", "auto"):  # "auto" is the config's to resolve
        with pytest.raises(ValueError, match="ranking"):
            ranking_scores(unresolved, own, classifier, image, baseline, mask, 1, 0.25)


@pytest.mark.parametrize("criterion", ["decision", "preserved"])
def test_reranking_at_the_pruned_mask_prunes_further_along_the_gradient_and_never_for_the_soft_mask(criterion):
    classifier = BlobDetector().eval()
    image, disk = blob_image(size=32, centre=(10, 20), radius=4.0)
    baseline = torch.zeros_like(image)
    mask = _square(32, 2, 12, 18)  # 324 voxels around the 49-voxel disk
    odds = _full_odds(classifier, image)
    own = torch.zeros(32, 32)  # the explainer's own scores: the gradient ranking does not read them
    once = prune_reranked(classifier, image, baseline, mask, own, 1, odds, criterion, "gradient")
    again = prune_reranked(classifier, image, baseline, mask, own, 1, odds, criterion, "gradient", rounds=3)
    # measured: decision 16 -> 13 voxels, preserved 32 -> 26, all on the disk
    assert int(again.sum()) < int(once.sum())
    assert not (again & ~once).any()  # a level of the first pruning's mask
    assert verify_mask(classifier, image, again, 1, baseline)[0]
    assert (again & disk).sum() >= 0.9 * again.sum()
    if criterion == "preserved":
        assert _full_odds(classifier, apply_mask(image, again.unsqueeze(0), baseline)[0]) >= odds
    soft = _closeness(32, (4, 14))  # a soft mask's order does not depend on the mask: one pruning
    assert torch.equal(prune_reranked(classifier, image, baseline, mask, soft, 1, odds, criterion, "soft", rounds=3),
                       prune_mask(classifier, image, baseline, mask, soft, 1, odds, criterion))


def test_the_warm_start_map_orders_the_pruning_of_a_nearly_binary_soft_mask():
    classifier = BlobDetector().eval()
    image, disk = blob_image(size=32, centre=(10, 20), radius=4.0)
    baseline = torch.zeros_like(image)
    mask = _square(32, 2, 12, 18)  # 324 voxels around the 49-voxel disk
    odds = _full_odds(classifier, image)
    # an optimised soft mask is nearly binary: inside the mask its order is noise, not evidence
    noise = torch.rand(32, 32, generator=torch.Generator().manual_seed(0))
    soft = torch.where(mask, 0.99 + 1e-4 * noise, 0.01)
    start = _closeness(32, (10, 20))  # the warm start's map peaks on the disk
    by_soft = prune_reranked(classifier, image, baseline, mask, soft, 1, odds, "preserved", "soft")
    by_start = {weight: prune_reranked(classifier, image, baseline, mask, soft, 1, odds, "preserved", "start",
                                       start=start, start_weight=weight) for weight in (0.5, 0.75)}
    for pruned in (by_soft, *by_start.values()):
        assert verify_mask(classifier, image, pruned, 1, baseline)[0] and not (pruned & ~mask).any()

    def precision(pruned: torch.Tensor) -> float:
        return float((pruned & disk).sum()) / float(pruned.sum())

    # measured: the soft order keeps all 324 voxels (precision 0.15); half on the map 194 (0.25); three
    # quarters 97 (0.51)
    assert torch.equal(by_soft, mask)
    assert int(by_start[0.5].sum()) < 0.7 * int(mask.sum()) and precision(by_start[0.5]) > 0.2
    assert int(by_start[0.75].sum()) < 0.6 * int(by_start[0.5].sum()) and precision(by_start[0.75]) > 0.45


class TwoSpots(torch.nn.Module):
    """Class 1 iff both 4x4 spots, at the top left and the bottom right of a 32x32 image, are bright: the
    decision needs the two together."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        both = x[:, 0, 4:8, 4:8].mean(dim=(1, 2)) + x[:, 0, 20:24, 20:24].mean(dim=(1, 2))
        return torch.stack([1.5 - both, both - 1.5], dim=1) * 10.0


def _parts(mask: torch.Tensor) -> int:
    return ndimage.label(mask.numpy(), structure=torch.ones((3, 3), dtype=torch.bool).numpy())[1]


@pytest.mark.parametrize("criterion", ["preserved", "decision", "sufficient"])
def test_parts_of_a_mask_the_decision_does_not_need_are_left_out(criterion):
    classifier = BlobDetector().eval()
    image, disk = blob_image(size=32, centre=(10, 20), radius=4.0)
    baseline = torch.zeros_like(image)
    specks = _square(32, 26, 2, 3) | _square(32, 24, 26, 2)  # dark voxels apart from the disk
    mask = disk | specks
    odds = _full_odds(classifier, image)
    kept = drop_unneeded_parts(classifier, image, baseline, mask, 1, odds, criterion)
    assert torch.equal(kept, disk)
    assert verify_mask(classifier, image, kept, 1, baseline)[0]
    # nothing to leave out: off, one part, "none"
    assert torch.equal(drop_unneeded_parts(classifier, image, baseline, mask, 1, odds, criterion, max_parts=0), mask)
    assert torch.equal(drop_unneeded_parts(classifier, image, baseline, disk, 1, odds, criterion), disk)
    assert torch.equal(drop_unneeded_parts(classifier, image, baseline, mask, 1, odds, "none"), mask)
    with pytest.raises(ValueError, match="prune criterion"):
        drop_unneeded_parts(classifier, image, baseline, mask, 1, odds, "smallest")


def test_parts_the_decision_needs_together_all_stay_and_of_interchangeable_ones_one_does():
    image = torch.full((1, 32, 32), 0.02)
    image[0, 4:8, 4:8] = image[0, 20:24, 20:24] = 1.0
    baseline = torch.zeros_like(image)
    spots = _square(32, 4, 4, 4) | _square(32, 20, 20, 4)
    speck = _square(32, 28, 2, 2)
    kept = drop_unneeded_parts(TwoSpots(), image, baseline, spots | speck, 1, _full_odds(TwoSpots(), image),
                               "decision")
    assert torch.equal(kept, spots)  # either spot alone loses the decision
    # two disks either of which makes the decision: each can go alone, not both; one stays
    first, first_disk = blob_image(size=32, centre=(8, 8), radius=3.0)
    second, second_disk = blob_image(size=32, centre=(22, 22), radius=3.0)
    image = torch.maximum(first, second)
    classifier = BlobDetector().eval()
    mask = first_disk | second_disk | speck
    kept = drop_unneeded_parts(classifier, image, baseline, mask, 1, _full_odds(classifier, image), "decision")
    assert torch.equal(kept, first_disk) or torch.equal(kept, second_disk)
    assert verify_mask(classifier, image, kept, 1, baseline)[0]


def test_medcam_leaves_out_a_second_disk_the_decision_does_not_need(fast_config):
    first, first_disk = blob_image(size=32, centre=(8, 8), radius=3.0)
    second, second_disk = blob_image(size=32, centre=(22, 22), radius=3.0)
    image = torch.maximum(first, second)  # BlobDetector decides on its brightest spot: either disk will do
    explanations = {parts: MedCAM(BlobDetector(), config=MedCAMConfig(**{**fast_config.__dict__,
                                                                         "prune_parts": parts})).explain(image, 1)
                    for parts in (0, 64)}
    every, needed = explanations[0], explanations[64]
    assert _parts(every.mask) == 2 and bool((every.mask & first_disk).any() and (every.mask & second_disk).any())
    assert _parts(needed.mask) == 1 and needed.faithful
    assert not (needed.mask & ~every.mask).any()
    assert needed.masked_probability >= needed.probability - 1e-6  # "preserved": as convincing as the image
    assert MedCAMConfig().prune_parts == 64
    with pytest.raises(ValueError, match="prune_parts"):
        MedCAMConfig(prune_parts=-1)

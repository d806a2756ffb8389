"""Configuration of the Med-CAM explainer: loss weights, schedule, baselines, mask network.

Defaults were chosen by measurement on the ground-truth benchmark (``medcam-dicom benchmark``);
see ``docs/design-notes.md`` for how they were chosen and ``docs/benchmark.md`` for the figures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

BASELINES = ("zero", "mean", "blur", "noise")
ROBUSTNESS_BACKGROUNDS = ("zero", "blur", "gaussian", "uniform")
WARM_STARTS = ("none", "occlusion", "gradcam")
PRUNE_CRITERIA = ("none", "preserved", "decision", "sufficient")
PRUNE_RANKINGS = ("auto", "soft", "gradient", "blend", "start")
ACTIVATION_CHANNELS = ("all", "decision")
#: the pruning's levels, as fractions of the optimised mask's voxel count: shrinking, and growing (for a
#: mask that falls short of the full image's probability)
PRUNE_SHRINK_FRACTIONS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
PRUNE_GROW_FRACTIONS = (1.25, 1.5, 2.0, 3.0)
#: the areas, as fractions of the image, the ``"sufficient"`` pruning grows a mask that still falls short
#: of the full image's probability to along its ranking (an empty one too), up to the whole image: 0.25 %
#: to 100 %, each 20 % above the last (the benchmark's minimality search uses the same grid)
PRUNE_IMAGE_FRACTIONS = tuple(sorted({min(1.0, 0.0025 * 1.2**k) for k in range(34)} | {1.0}))
#: the options that act on a mask once it is made - its pruning and its null check - not on how it is
#: made: a saved explainer is loaded with today's defaults for these (:meth:`MedCAMConfig.explain_time_defaults`),
#: not with those of the day it was trained
EXPLAIN_TIME_OPTIONS = ("prune", "prune_ranking", "prune_fractions", "prune_image_fractions", "prune_refine",
                        "prune_gradient_weight", "prune_start_weight", "prune_rerank", "prune_parts",
                        "prune_search", "prune_search_reach", "prune_search_guide",
                        "prune_complete", "prune_complete_gradient",
                        "null_masks", "null_limit")
#: the loss weights :meth:`MedCAMConfig.amortized` changes: the amortised explainer is trained without the
#: activation-matching term (chosen on the benchmark's tuning split; docs/benchmark.md)
AMORTIZED_WEIGHTS = {"act": 0.0}


@dataclass
class LossWeights:
    """Weights (lambda) of the loss terms: the paper's seven, a log-odds hinge and a deletion term.

    ``act``: activation matching; ``ce``: cross-entropy of the masked image on the target;
    ``kl``: KL divergence between softened outputs of full and masked image; ``area``: mean of the
    soft mask; ``bin``: ``p (1 - p)`` binarisation; ``tv``: total variation; ``rob``: cross-entropy
    on the evidence pasted onto random backgrounds; ``margin``: hinge asking the masked image's
    log-odds of the target to reach the full image's plus ``MedCAMConfig.margin_log_odds`` (not in the
    paper; 0 disables it); ``deletion``: ``-log(1 - p_y)`` on the image with the mask *removed* (the
    evidence replaced by the baseline), which asks the mask to hold all of the evidence, not only enough
    of it (Dabkowski & Gal's deletion objective; not in the paper; 0 disables it and saves one classifier
    pass per step). Default 10, chosen on the plain-trained tuning classifiers (docs/benchmark.md): the
    target's probability after the mask is removed fell from 0.13 to 0.08.
    """

    act: float = 10.0
    ce: float = 15.0
    kl: float = 5.0
    area: float = 100.0
    bin: float = 1.0
    tv: float = 500.0
    rob: float = 100.0
    margin: float = 3.0
    deletion: float = 10.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or value < 0 or value != value:
                raise ValueError(f"LossWeights.{f.name} must be a non-negative number, got {value!r}")


@dataclass
class MedCAMConfig:
    """Everything that controls one Med-CAM explanation.

    Attributes:
        weights: loss-term weights, see :class:`LossWeights`.
        temperature: softmax temperature of the KL term.
        baseline: what replaces the image outside the mask: ``"zero"`` (0 in the classifier's
            normalised space), ``"mean"`` (per-channel image mean), ``"blur"`` (strongly blurred image)
            or ``"noise"`` (fixed Gaussian noise with the image's per-channel mean and std).
        robustness_backgrounds: backgrounds for the robustness term, drawn anew every step and
            batched with the masked image into one classifier forward: ``zero``, ``blur`` (the image
            blurred with a random sigma), ``gaussian`` and ``uniform`` noise. The noise backgrounds of
            the paper are available but not the default: the benchmark's CT classifier calls pure noise
            "lesion" with probability 1.0, which makes the term meaningless for "lesion" and forbids
            any shrinking for "normal".
        layer_weights: weight per matched layer (same order as the layers); ``None`` = increasing with
            depth, ``2**i`` normalised to sum to the number of layers.
        learning_rate: Adam learning rate of the per-image U-Net.
        max_steps: hard cap on optimisation steps.
        min_steps: never stop before this many steps.
        convergence_window: steps over which the hard-mask area must be stable to stop early.
        area_tolerance, area_relative_tolerance: stable means max - min of the hard-mask area fraction
            over the window is at most ``max(area_tolerance, area_relative_tolerance * mean area)``, so
            a lesion-sized mask must be still to a few percent of its own size, not of the image.
        max_converged_area: early stopping also needs the hard mask to keep less than this fraction:
            without a warm start the mask starts as "keep all", which is faithful and, for its first
            tens of steps, stable.
        require_preserved: early stopping also needs the evidence to be at least as convincing as the
            full image (target log-odds on the hard-masked image >= on the full image, i.e. masked
            probability >= original); a run that never gets there stops at ``max_steps`` — unless its
            mask is empty and keeps the decision (nothing smaller exists), which stops as a preserved mask
            does. Measured 2026-11-30: 6 of 120 held-out runs (normal decisions) stopped at 60 steps
            instead of 300 with the same empty mask; no other mask changed on either split.
        preserve_tolerance: with ``require_preserved``, the masked probability may fall short of the full
            image's by this much (probability units): on a saturated classifier (p = 0.99999) the
            evidence alone often reaches 0.99998, and the strict rule then never stops before
            ``max_steps``. Default 0.001 (median steps on the plain-trained tuning classifiers 146 -> 70);
            0 keeps the strict rule. The pruning still asks for the full image's log-odds first.
        stall_window: also stop when the smallest mask that kept the decision and was as convincing as
            the full image (the same test as ``require_preserved``) has not shrunk by more than the area
            tolerance for this many steps, and return that mask: some runs keep a faithful, preserved
            mask whose area jitters between two sizes for ever (the sufficiency and deletion terms
            pulling against each other) and would otherwise run to ``max_steps``. ``None`` (default)
            disables it: a speed knob, not a default, because at 60 steps the plain-trained classifiers'
            masks came out larger (tuning precision 0.726 -> 0.699, held out 0.702 -> 0.689) for 6 % less
            time — the runs it cuts short were still shrinking, slowly.
        decided_tolerance: optionally also require ``mean(p (1 - p))`` below this; ``None`` (default)
            does not: with the straight-through mask, soft values near the threshold are harmless and
            the measure stays at 0.1-0.25 long after the hard mask has settled.
        margin_log_odds: the log-odds the ``margin`` term asks the evidence to exceed the full image by.
        unet_channels, unet_strides, unet_res_units: the MONAI U-Net that produces the mask logits.
        mask_grid: the mask's logits are averaged over cells of this many voxels per axis and
            interpolated back linearly (:func:`~medcam_dicom.explain.mask_network.coarse_logits`): a
            smooth mask with fewer degrees of freedom; 1 (default) = one logit per voxel, the paper's.
        activation_channels: which channels of the matched layers the activation term asks the evidence
            to reproduce: ``"all"`` (default, the paper's) or ``"decision"`` = each channel weighted by
            how much it supports the decision on the full image (the positive part of the target
            log-odds' gradient with respect to the channel's mean, as Grad-CAM weighs channels; one
            backward pass per explanation): the mask then need not reproduce what the classifier sees
            but does not decide on (bright anatomy far from the finding). Per-image Med-CAM only.
        warm_start: where a fresh optimisation starts: ``"occlusion"`` (default) or ``"gradcam"`` = the
            smallest of the masks keeping the top ``warm_start_levels`` of that saliency map that keeps
            the decision (one batched classifier run, see :mod:`medcam_dicom.explain.warm_start`);
            ``"none"`` = "keep all", the paper's start (also the fallback when the saliency method does
            not apply or no level keeps the decision). Measured on the benchmark: the same or better
            masks in a fraction of the steps.
        warm_start_levels: the fractions of the image the level search tries, smallest first.
        warm_start_occlusion: ``(window, overlap)`` of the occlusion warm start: the occluded window's
            side as a fraction of the image's longest axis, and the windows' overlap (0 = side by side).
            Default: windows of 3/16 overlapping by half (24 px at 128², ~100 classifier passes). Chosen
            on the tuning classifiers over an eighth side by side (the default until 2026-11-30): the
            start's share on the finding 0.67 -> 0.83 and the per-image masks' 0.771 -> 0.818; held out
            0.759 -> 0.780. A 3D warm start costs twice as much (2 -> 4 s at 32x64x64 on one thread).
        warm_start_logits: ``(inside, outside)``: the fixed logits added to the U-Net's output on and
            off the start mask. Leaving the mask is cheap (0.5 to 0), joining it takes evidence (-2 to
            0): started at a small faithful mask, the activation-matching term would otherwise grow it.
        initial_keep_probability: initial soft-mask value everywhere without a warm start (the mask
            starts as "keep all", which is faithful, and shrinks).
        area_gate: factor on the area term while the current hard mask is not faithful. The area
            pressure backs off as soon as the decision is lost, so the mask settles on the boundary of
            faithfulness instead of collapsing (a saturated sigmoid cannot recover); 1.0 disables it.
        backtrack_patience: when the hard mask has not been faithful for this many steps in a row,
            the U-Net returns to its last faithful state and the learning rate is halved.
        threshold: soft-mask value above which a voxel is evidence.
        prune: after the optimisation, keep the smallest level set of the soft mask (``prune_fractions``
            of the mask's voxels, one batched pass) that passes: ``"preserved"`` = keeps the decision and
            is at least as convincing as the full image (else as the unpruned mask); ``"sufficient"`` =
            always as convincing as the full image: as ``"preserved"``, and a mask no level of which gets
            there grows over the image (``prune_image_fractions``) until it does; ``"decision"`` =
            keeps the decision; ``"none"`` = the optimised mask as it is (see
            :mod:`medcam_dicom.explain.pruning`). Default ``"preserved"``.
        prune_ranking: what orders the voxels the pruning keeps (:meth:`pruning_ranking`): ``"auto"``
            (default) = ``"blend"`` for an amortised explainer, ``"start"`` for per-image Med-CAM (each
            chosen by measurement: docs/benchmark.md, "blend" and "start"); ``"soft"`` = the optimised soft
            mask (an amortised explainer's: its decoder's logits); ``"gradient"`` = the classifier's own
            gradient of the target log-odds with respect to the mask at the optimised hard mask
            (``grad_x . (x - baseline)``, smoothed over 1/32 of the smallest side): the voxels whose
            removal would cost the decision most come first. Measured on the plain-trained classifiers
            (per-image): tuning IoU 0.611 -> 0.578, p removed 0.077 -> 0.179, held out precision 0.744 ->
            0.765; amortised it ranks small but off the finding (held-out precision 0.86). ``"blend"`` =
            both: ``1 - prune_gradient_weight`` times a voxel's percentile within the mask by the soft
            mask plus ``prune_gradient_weight`` times its percentile by the gradient
            (:func:`~medcam_dicom.explain.pruning.blended_scores`; one backward pass more). Amortised,
            chosen on the tuning classifiers (``preserved`` precision 0.779 -> 0.800, ``decision``
            minimality 1.01 -> 0.98; held out 0.831 -> 0.844 and 1.08 -> 1.03); per image no better on
            the tuning classifiers and worse held out (precision on the finding), so not used there.
            ``"start"`` = per image, the soft mask blended the same way with the warm start's saliency
            map (the occlusion map the optimisation started from; ``prune_start_weight`` on the map, no
            extra pass); without a warm-start map (``warm_start="none"``, a refinement, an amortised
            explainer) it is ``"soft"``. Chosen on the tuning classifiers (per image: precision gap to RISE
            at equal area -0.056 -> -0.035; docs/benchmark.md, "start").
        prune_gradient_weight: the gradient's weight in the ``"blend"`` ranking, in [0, 1] (0 = the soft
            mask's order, 1 = the gradient's). Default 0.25, chosen on the tuning classifiers over 0.5
            (docs/benchmark.md, "blend").
        prune_start_weight: the warm-start map's weight in the ``"start"`` ranking, in [0, 1] (0 = the
            soft mask's order, 1 = the map's). Default 0.5, chosen on the tuning classifiers
            (docs/benchmark.md, "start").
        prune_rerank: with a ranking that depends on the mask (``"gradient"``, ``"blend"``), up to this
            many more rounds take the ranking again at the pruned mask and prune it again, while it shrinks
            (:func:`~medcam_dicom.explain.pruning.prune_reranked`; each round one backward pass and the
            pruning's batches); 0 = prune once. The soft and start rankings (the latter per-image
            Med-CAM's default) do not depend on the mask and prune once. Default 3, chosen on the
            plain-trained tuning classifiers (amortised ``decision``: minimality 0.98 -> 0.87, precision
            0.963 -> 0.973; held out 1.03 -> 0.96 and 0.977 -> 0.982; docs/benchmark.md, "prune_rerank");
            1 round gave nearly as much (0.88) for less time.
        prune_fractions: the fractions of the mask's voxel count the pruning tries; above 1 the mask
            grows along the soft mask (for a mask that falls short of the full image's probability).
        prune_image_fractions: ``"sufficient"`` only: when no level of ``prune_fractions`` reaches the full
            image's probability, the mask (an empty one too) keeps growing along its ranking to these
            fractions of the image, up to the whole image (which always reaches it).
        prune_refine: after the pruning's batch, this many voxel counts between the chosen level and the
            next smaller one tried (evenly spaced in ratio; one more batched pass) are tried too and the
            smallest passing one is kept, so the level is found to a few per cent rather than to the
            fractions' steps (up to a factor 2 at the small end); 0 = the fractions' levels only. Default 8,
            chosen on the plain-trained tuning classifiers (docs/benchmark.md, "prune_refine").
        prune_parts: after the pruning, the pruned mask's connected parts (up to this many, the smallest
            first; never the largest) are each left out in one batched pass, and those the pruning's test
            passes without are left out together (one more pass;
            :func:`~medcam_dicom.explain.pruning.drop_unneeded_parts`): a level set can hold a speck or a
            distractor apart from the evidence. 0 = keep every part. Default 64, chosen on the
            plain-trained tuning classifiers (per image: precision 0.824 -> 0.841, gap to RISE at equal
            area -0.035 -> -0.027; amortised level, 0.784 -> 0.786; held out 0.802 -> 0.831 per image, 0.798 ->
            0.816 amortised; docs/benchmark.md, "prune_parts").
        prune_search: after that, up to this many rounds of the evidence search
            (:func:`~medcam_dicom.explain.local_search.search_evidence`): voxels of the mask are dropped,
            swapped or (while it falls short) added by the classifier's gradient at the mask, one backward
            pass and one batched pass a round, and the smallest mask passing the pruning's test is kept.
            0 = off (the default). With 40 the per-image ``preserved`` masks keep the full image's
            probability on all 38 tuning and all 59 held-out lesion decisions and on 93.3 % of the
            held-out images (70.0 % without), at about a quarter of the area (held out: median minimality
            ratio 2.55 -> 0.52, precision 0.834 -> 0.827); but RISE cut to that smaller area is more
            precise still (gap -0.046 -> -0.145) and blurring the mask away leaves the decision (p removed
            0.309 -> 0.923) (docs/benchmark.md, "The evidence search").
        prune_search_reach: how far from the mask, in voxels, the evidence search may swap a voxel in
            (``None``: anywhere; voxels added to a mask that falls short may lie anywhere). Default 2,
            chosen on the tuning classifiers.
        prune_search_guide: the weight of a map of where the evidence lies in the evidence search's
            ranking of voxels, beside the classifier's gradient (each scaled to at most 1;
            :func:`~medcam_dicom.explain.local_search.guided_scores`): per image the warm start's
            occlusion map, amortised the decoder's logits; 0 = the gradient alone (the default). 0.5,
            chosen on the tuning classifiers, moves the masks onto the finding at a slightly larger
            area (held out, per image with ``prune_search=40``: precision 0.827 -> 0.912, gap to RISE at
            equal area -0.145 -> -0.062, median minimality ratio 0.52 -> 0.99; docs/benchmark.md, "The
            search guided by the warm start's map").
        prune_complete: last, the mask is grown to the smallest of a few sizes (1.25 to 16 times its
            voxels, then four finer ones below the size chosen) whose removal (blurred away, as the
            benchmark's comprehensiveness) leaves the target's probability at most this, while the grown
            mask still passes the pruning's test
            (:func:`~medcam_dicom.explain.completion.complete_evidence`; one backward and four batched
            passes); a mask no size completes stays as it is. 0 = off (the default).
        prune_complete_gradient: the weight of the classifier's gradient at the image with the mask
            removed in the ranking completion grows the mask along, against the map of where the evidence
            lies (the warm start's occlusion map per image, the decoder's logits amortised). Default 0.5.
        null_masks: random smooth masks of the explanation's area classified for the null check
            (``Explanation.random_keep``; one batched pass); 0 skips it.
        null_limit: the share of those random masks keeping the decision from which the explanation is
            reported as not specific (``Explanation.specific = False``).
        seed: seed of the U-Net initialisation and of the random backgrounds.
    """

    weights: LossWeights = field(default_factory=LossWeights)
    temperature: float = 2.0
    baseline: str = "blur"
    robustness_backgrounds: tuple[str, ...] = ("zero", "blur")
    layer_weights: tuple[float, ...] | None = None
    learning_rate: float = 3e-2
    max_steps: int = 300
    min_steps: int = 60
    convergence_window: int = 20
    area_tolerance: float = 0.002
    area_relative_tolerance: float = 0.05
    max_converged_area: float = 0.95
    require_preserved: bool = True
    preserve_tolerance: float = 0.001
    stall_window: int | None = None
    decided_tolerance: float | None = None
    margin_log_odds: float = 0.1
    unet_channels: tuple[int, ...] = (16, 32, 64)
    unet_strides: tuple[int, ...] = (2, 2)
    unet_res_units: int = 1
    mask_grid: int = 1
    activation_channels: str = "all"
    warm_start: str = "occlusion"
    warm_start_levels: tuple[float, ...] = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)
    warm_start_occlusion: tuple[float, float] = (0.1875, 0.5)
    warm_start_logits: tuple[float, float] = (0.5, -2.0)
    initial_keep_probability: float = 0.55
    area_gate: float = 0.1
    backtrack_patience: int = 5
    threshold: float = 0.5
    prune: str = "preserved"
    prune_ranking: str = "auto"
    prune_fractions: tuple[float, ...] = PRUNE_SHRINK_FRACTIONS + PRUNE_GROW_FRACTIONS
    prune_image_fractions: tuple[float, ...] = PRUNE_IMAGE_FRACTIONS
    prune_refine: int = 8
    prune_gradient_weight: float = 0.25
    prune_start_weight: float = 0.5
    prune_rerank: int = 3
    prune_parts: int = 64
    prune_search: int = 0
    prune_search_reach: int | None = 2
    prune_search_guide: float = 0.0
    prune_complete: float = 0.0
    prune_complete_gradient: float = 0.5
    null_masks: int = 32
    null_limit: float = 0.25
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.weights, dict):
            self.weights = LossWeights(**self.weights)
        self.robustness_backgrounds = tuple(self.robustness_backgrounds)
        self.unet_channels = tuple(self.unet_channels)
        self.unet_strides = tuple(self.unet_strides)
        self.warm_start_levels = tuple(float(v) for v in self.warm_start_levels)
        self.prune_fractions = tuple(float(v) for v in self.prune_fractions)
        self.prune_image_fractions = tuple(float(v) for v in self.prune_image_fractions)
        self.warm_start_logits = (float(self.warm_start_logits[0]), float(self.warm_start_logits[1]))
        self.warm_start_occlusion = (float(self.warm_start_occlusion[0]), float(self.warm_start_occlusion[1]))
        if self.layer_weights is not None:
            self.layer_weights = tuple(float(w) for w in self.layer_weights)
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first attribute that is out of range."""
        if self.baseline not in BASELINES:
            raise ValueError(f"MedCAMConfig.baseline must be one of {BASELINES}, got {self.baseline!r}")
        for name in self.robustness_backgrounds:
            if name not in ROBUSTNESS_BACKGROUNDS:
                raise ValueError(
                    f"MedCAMConfig.robustness_backgrounds: unknown background {name!r}, "
                    f"expected any of {ROBUSTNESS_BACKGROUNDS}"
                )
        if self.temperature <= 0:
            raise ValueError(f"MedCAMConfig.temperature must be > 0, got {self.temperature}")
        if self.learning_rate <= 0:
            raise ValueError(f"MedCAMConfig.learning_rate must be > 0, got {self.learning_rate}")
        if self.max_steps < 1 or self.min_steps < 0 or self.min_steps > self.max_steps:
            raise ValueError(
                "MedCAMConfig needs 0 <= min_steps <= max_steps and max_steps >= 1, "
                f"got min_steps={self.min_steps}, max_steps={self.max_steps}"
            )
        if self.convergence_window < 1:
            raise ValueError(f"MedCAMConfig.convergence_window must be >= 1, got {self.convergence_window}")
        if self.stall_window is not None and self.stall_window < 1:
            raise ValueError(f"MedCAMConfig.stall_window must be >= 1 or None, got {self.stall_window}")
        if self.area_tolerance < 0 or self.area_relative_tolerance < 0:
            raise ValueError(
                "MedCAMConfig.area_tolerance and area_relative_tolerance must be >= 0, "
                f"got {self.area_tolerance} and {self.area_relative_tolerance}"
            )
        if not 0.0 < self.max_converged_area <= 1.0:
            raise ValueError(f"MedCAMConfig.max_converged_area must lie in (0, 1], got {self.max_converged_area}")
        if not 0.0 <= self.preserve_tolerance < 1.0:
            raise ValueError(f"MedCAMConfig.preserve_tolerance must lie in [0, 1), got {self.preserve_tolerance}")
        if self.decided_tolerance is not None and self.decided_tolerance <= 0:
            raise ValueError(f"MedCAMConfig.decided_tolerance must be > 0 or None, got {self.decided_tolerance}")
        if self.warm_start not in WARM_STARTS:
            raise ValueError(f"MedCAMConfig.warm_start must be one of {WARM_STARTS}, got {self.warm_start!r}")
        levels = self.warm_start_levels
        if not levels or any(not 0.0 <= v <= 1.0 for v in levels) or list(levels) != sorted(levels):
            raise ValueError(
                f"MedCAMConfig.warm_start_levels must be increasing fractions in [0, 1], got {levels}"
            )
        window, overlap = self.warm_start_occlusion
        if not 0.0 < window <= 1.0 or not 0.0 <= overlap < 1.0:
            raise ValueError(
                "MedCAMConfig.warm_start_occlusion must be (window in (0, 1], overlap in [0, 1)), "
                f"got {self.warm_start_occlusion}"
            )
        inside, outside = self.warm_start_logits
        if not inside > 0 > outside:
            raise ValueError(
                "MedCAMConfig.warm_start_logits must be (inside > 0, outside < 0), "
                f"got {self.warm_start_logits}"
            )
        if not 0.0 < self.initial_keep_probability < 1.0:
            raise ValueError(
                "MedCAMConfig.initial_keep_probability must lie in (0, 1), "
                f"got {self.initial_keep_probability}"
            )
        if not 0.0 <= self.area_gate <= 1.0:
            raise ValueError(f"MedCAMConfig.area_gate must lie in [0, 1], got {self.area_gate}")
        if self.backtrack_patience < 1:
            raise ValueError(f"MedCAMConfig.backtrack_patience must be >= 1, got {self.backtrack_patience}")
        if self.prune not in PRUNE_CRITERIA:
            raise ValueError(f"MedCAMConfig.prune must be one of {PRUNE_CRITERIA}, got {self.prune!r}")
        if self.prune_ranking not in PRUNE_RANKINGS:
            raise ValueError(
                f"MedCAMConfig.prune_ranking must be one of {PRUNE_RANKINGS}, got {self.prune_ranking!r}"
            )
        if not self.prune_fractions or any(not 0.0 < v < 100.0 for v in self.prune_fractions):
            raise ValueError(
                f"MedCAMConfig.prune_fractions must be positive multiples of the mask (< 100), "
                f"got {self.prune_fractions}"
            )
        if any(not 0.0 < v <= 1.0 for v in self.prune_image_fractions):
            raise ValueError(
                f"MedCAMConfig.prune_image_fractions must be fractions of the image in (0, 1], "
                f"got {self.prune_image_fractions}"
            )
        if not 0.0 <= self.prune_gradient_weight <= 1.0:
            raise ValueError(
                f"MedCAMConfig.prune_gradient_weight must lie in [0, 1], got {self.prune_gradient_weight}"
            )
        if not 0.0 <= self.prune_start_weight <= 1.0:
            raise ValueError(
                f"MedCAMConfig.prune_start_weight must lie in [0, 1], got {self.prune_start_weight}"
            )
        if self.prune_rerank < 0:
            raise ValueError(f"MedCAMConfig.prune_rerank must be >= 0, got {self.prune_rerank}")
        if self.prune_parts < 0:
            raise ValueError(f"MedCAMConfig.prune_parts must be >= 0, got {self.prune_parts}")
        if self.prune_search < 0:
            raise ValueError(f"MedCAMConfig.prune_search must be >= 0, got {self.prune_search}")
        if self.prune_search_guide < 0:
            raise ValueError(f"MedCAMConfig.prune_search_guide must be >= 0, got {self.prune_search_guide}")
        if self.prune_search_reach is not None and self.prune_search_reach < 0:
            raise ValueError(f"MedCAMConfig.prune_search_reach must be >= 0 or None, got {self.prune_search_reach}")
        if not 0.0 <= self.prune_complete < 1.0:
            raise ValueError(f"MedCAMConfig.prune_complete must lie in [0, 1) (0 = off), got {self.prune_complete}")
        if not 0.0 <= self.prune_complete_gradient <= 1.0:
            raise ValueError(
                f"MedCAMConfig.prune_complete_gradient must lie in [0, 1], got {self.prune_complete_gradient}"
            )
        if self.prune_refine < 0:
            raise ValueError(f"MedCAMConfig.prune_refine must be >= 0, got {self.prune_refine}")
        if self.activation_channels not in ACTIVATION_CHANNELS:
            raise ValueError(f"MedCAMConfig.activation_channels must be one of {ACTIVATION_CHANNELS}, "
                             f"got {self.activation_channels!r}")
        if self.mask_grid < 1:
            raise ValueError(f"MedCAMConfig.mask_grid must be >= 1, got {self.mask_grid}")
        if self.null_masks < 0:
            raise ValueError(f"MedCAMConfig.null_masks must be >= 0, got {self.null_masks}")
        if not 0.0 < self.null_limit <= 1.0:
            raise ValueError(f"MedCAMConfig.null_limit must lie in (0, 1], got {self.null_limit}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"MedCAMConfig.threshold must lie in (0, 1), got {self.threshold}")
        if len(self.unet_strides) != len(self.unet_channels) - 1:
            raise ValueError(
                "MedCAMConfig.unet_strides must have one entry fewer than unet_channels, "
                f"got {self.unet_strides} and {self.unet_channels}"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy (used in reports and checkpoints)."""
        return asdict(self)

    @classmethod
    def amortized(cls, **settings: Any) -> MedCAMConfig:
        """The defaults of an amortised explainer's training: these settings with :data:`AMORTIZED_WEIGHTS`
        (no activation-matching term). Measured on the plain-trained tuning classifiers, it put the
        amortised masks ahead of RISE and occlusion at equal area, where the paper's loss was level with
        them (docs/benchmark.md). ``settings``: as the constructor's; a ``weights`` mapping overrides single
        weights on top (``MedCAMConfig.amortized(weights={"act": 10.0})`` is the paper's loss again)."""
        weights = settings.pop("weights", {})
        if isinstance(weights, dict):
            weights = {**AMORTIZED_WEIGHTS, **weights}
        return cls(weights=weights, **settings)

    def explain_time_defaults(self) -> MedCAMConfig:
        """A copy with every option of :data:`EXPLAIN_TIME_OPTIONS` (pruning, null check) at its default and
        everything else - what a trained explainer learned with - as it is: how a saved explainer's config
        is loaded, so that a file trained before a pruning default changed prunes as today's do."""
        defaults = MedCAMConfig()
        return replace(self, **{name: getattr(defaults, name) for name in EXPLAIN_TIME_OPTIONS})

    def pruning_ranking(self, amortized: bool) -> str:
        """The ranking the pruning uses (:attr:`prune_ranking` with ``"auto"`` resolved): ``"blend"`` for
        an amortised explainer (``amortized=True``), ``"start"`` for per-image Med-CAM."""
        if self.prune_ranking != "auto":
            return self.prune_ranking
        return "blend" if amortized else "start"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MedCAMConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"MedCAMConfig: unknown setting(s) {unknown}")
        return cls(**data)

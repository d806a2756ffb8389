"""Configuration of the Med-CAM explainer: loss weights, schedule, baselines, mask network.

Defaults were chosen by measurement on the ground-truth benchmark (``medcam-dicom benchmark``);
see README section "Choosing the defaults" for the figures behind them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

BASELINES = ("zero", "mean", "blur", "noise")
ROBUSTNESS_BACKGROUNDS = ("zero", "blur", "gaussian", "uniform")


@dataclass
class LossWeights:
    """Weights (lambda) of the seven loss terms.

    ``act``: activation matching; ``ce``: cross-entropy of the masked image on the target;
    ``kl``: KL divergence between softened outputs of full and masked image; ``area``: mean of the
    soft mask; ``bin``: ``p (1 - p)`` binarisation; ``tv``: total variation; ``rob``: cross-entropy
    on the evidence pasted onto random backgrounds.
    """

    act: float = 10.0
    ce: float = 15.0
    kl: float = 5.0
    area: float = 100.0
    bin: float = 1.0
    tv: float = 500.0
    rob: float = 100.0

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
        area_tolerance: stable means max - min of the area fraction over the window below this.
        decided_tolerance: the soft mask counts as decided when ``mean(p (1 - p))`` is below this;
            early stopping also needs a decided mask, so a mask that has not moved yet never "converges".
        unet_channels, unet_strides, unet_res_units: the MONAI U-Net that produces the mask logits.
        initial_keep_probability: initial soft-mask value everywhere (the mask starts as "keep all",
            which is faithful, and shrinks).
        area_gate: factor on the area term while the current hard mask is not faithful. The area
            pressure backs off as soon as the decision is lost, so the mask settles on the boundary of
            faithfulness instead of collapsing (a saturated sigmoid cannot recover); 1.0 disables it.
        backtrack_patience: when the hard mask has not been faithful for this many steps in a row,
            the U-Net returns to its last faithful state and the learning rate is halved.
        threshold: soft-mask value above which a voxel is evidence.
        seed: seed of the U-Net initialisation and of the random backgrounds.
    """

    weights: LossWeights = field(default_factory=LossWeights)
    temperature: float = 2.0
    baseline: str = "blur"
    robustness_backgrounds: tuple[str, ...] = ("zero", "blur")
    layer_weights: tuple[float, ...] | None = None
    learning_rate: float = 3e-2
    max_steps: int = 300
    min_steps: int = 30
    convergence_window: int = 10
    area_tolerance: float = 0.01
    decided_tolerance: float = 0.05
    unet_channels: tuple[int, ...] = (16, 32, 64)
    unet_strides: tuple[int, ...] = (2, 2)
    unet_res_units: int = 1
    initial_keep_probability: float = 0.55
    area_gate: float = 0.1
    backtrack_patience: int = 5
    threshold: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.weights, dict):
            self.weights = LossWeights(**self.weights)
        self.robustness_backgrounds = tuple(self.robustness_backgrounds)
        self.unet_channels = tuple(self.unet_channels)
        self.unet_strides = tuple(self.unet_strides)
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
        if not 0.0 < self.initial_keep_probability < 1.0:
            raise ValueError(
                "MedCAMConfig.initial_keep_probability must lie in (0, 1), "
                f"got {self.initial_keep_probability}"
            )
        if not 0.0 <= self.area_gate <= 1.0:
            raise ValueError(f"MedCAMConfig.area_gate must lie in [0, 1], got {self.area_gate}")
        if self.backtrack_patience < 1:
            raise ValueError(f"MedCAMConfig.backtrack_patience must be >= 1, got {self.backtrack_patience}")
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
    def from_dict(cls, data: dict[str, Any]) -> MedCAMConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"MedCAMConfig: unknown setting(s) {unknown}")
        return cls(**data)

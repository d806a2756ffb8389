"""``medcam-dicom benchmark``: every method on every ground-truth dataset, as a table, JSON and a gallery.

For each test image the classifier's top-1 class is explained by Med-CAM; Grad-CAM and occlusion
sensitivity are thresholded to Med-CAM's area on the same image, so all methods are compared at equal
area and verified the same way (re-running the classifier on the hard-masked image). Localisation
(IoU, pointing game) is measured on images whose explained decision is "lesion", where the lesion is the
ground-truth evidence. The amortised explainer (``amortized``, and ``amortized+refine`` with automatic
refinement) is compared with its own masks, verified the same way. On the lesion decisions each ranking
method is also measured at *equal evidence*: its smallest top-k mask whose target log-odds reach those of
Med-CAM's mask (what the classifier reads off that mask), so that a ranking is not credited with
precision at Med-CAM's area by a mask that holds less of the evidence. ``lesion`` (not run by default) is
the finding itself as the mask: how much of the decision a mask entirely on the finding holds.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from medcam_dicom.benchmark.metrics import (
    deletion_insertion_auc,
    equal_evidence_mask,
    iou,
    necessity,
    pointing_game,
    precision,
    removal,
    smallest_faithful_area,
)
from medcam_dicom.benchmark.names import (
    DATASETS,
    DEFAULT_METHODS,
    MEDCAM_METHODS,
    METHODS,
    RANKING_METHODS,
    ZOO_ARCHS,
    ZOO_DATASETS,
)
from medcam_dicom.benchmark.training import TEST_SEED, train_classifier
from medcam_dicom.benchmark.zoo import ZooMember, load_zoo_classifier, load_zoo_explainer, zoo_members
from medcam_dicom.data.synthetic import GroundTruthSet, generate
from medcam_dicom.explain.amortized import AmortizedMedCAM
from medcam_dicom.explain.baselines import make_baseline
from medcam_dicom.explain.comparison import GradCAMSaliency, OcclusionSaliency, RISESaliency, explain_at_area
from medcam_dicom.explain.config import PRUNE_CRITERIA, MedCAMConfig
from medcam_dicom.explain.explanation import Explanation
from medcam_dicom.explain.medcam import MedCAM
from medcam_dicom.explain.null_check import random_keep_rate
from medcam_dicom.explain.verification import masked_log_odds
from medcam_dicom.models.demo import TrainedClassifier, demo_checkpoint_path, demo_explainer_path

AMORTIZED_METHODS = {"amortized": 0, "amortized+refine": "auto"}  # method -> refine_steps
LESION = 1
CACHE_DIR = Path.home() / ".cache" / "medcam-dicom"


@dataclass
class ImageResult:
    """One method on one test image."""

    dataset: str
    index: int
    label: int
    method: str
    target: int
    probability: float
    masked_probability: float
    faithful: bool
    area_fraction: float
    necessity: float
    deletion_auc: float
    insertion_auc: float
    seconds: float
    steps: int
    removed_probability: float = 0.0
    removal_flips: bool = False
    random_keep: float = 0.0
    iou: float | None = None
    precision: float | None = None
    pointing: bool | None = None
    smallest_faithful_area: float | None = None
    smallest_preserving_area: float | None = None
    # a ranking method's smallest top-k mask as convincing as Med-CAM's (lesion decisions): area, precision
    equal_evidence_area: float | None = None
    equal_evidence_precision: float | None = None


def load_classifier(dataset: str, arch: str, progress: bool = True) -> TrainedClassifier:
    """The shipped demo checkpoint for ``arch``, else one trained once and cached under ~/.cache."""
    shipped = demo_checkpoint_path(dataset, arch)
    if shipped.is_file():
        return TrainedClassifier.load(shipped)
    cached = CACHE_DIR / shipped.name
    if not cached.is_file():
        model = train_classifier(dataset, arch=arch, progress=progress)
        model.save(cached)
    return TrainedClassifier.load(cached)


def load_explainer(dataset: str, classifier: TrainedClassifier, config: MedCAMConfig) -> AmortizedMedCAM:
    """The shipped amortised explainer of a demo classifier (``scripts/train_demo_models.py --explainers``)."""
    path = demo_explainer_path(dataset)
    if not path.is_file():
        raise ValueError(
            f"no amortised explainer for dataset {dataset!r} at {path}; "
            "run scripts/train_demo_models.py --explainers"
        )
    return AmortizedMedCAM.load(path, classifier.network, config=config)


def _result(
    dataset: str, index: int, label: int, explanation: Any, classifier: torch.nn.Module, image: torch.Tensor,
    saliency: torch.Tensor, baseline: torch.Tensor, lesion: torch.Tensor, removal_baseline: torch.Tensor,
) -> ImageResult:
    deletion, insertion = deletion_insertion_auc(classifier, image, saliency, explanation.target, baseline)
    removed_probability, flips = removal(classifier, image, explanation.mask, explanation.target, removal_baseline)
    result = ImageResult(
        dataset=dataset,
        index=index,
        label=label,
        method=explanation.method,
        target=explanation.target,
        probability=explanation.probability,
        masked_probability=explanation.masked_probability,
        faithful=explanation.faithful,
        area_fraction=explanation.area_fraction,
        necessity=necessity(classifier, image, explanation.mask, explanation.target, baseline),
        deletion_auc=deletion,
        insertion_auc=insertion,
        seconds=explanation.seconds,
        steps=explanation.steps,
        removed_probability=removed_probability,
        removal_flips=flips,
        # Med-CAM's explanations carry the null check already (same baseline, 32 masks, seed 0 by default)
        random_keep=explanation.random_keep if explanation.random_keep is not None
        else random_keep_rate(classifier, image, explanation.mask, explanation.target, baseline),
    )
    if label == LESION and explanation.target == LESION:
        result.iou = iou(explanation.mask, lesion)
        result.precision = precision(explanation.mask, lesion)
        result.pointing = pointing_game(saliency, lesion)
    return result


def _evidence_bar(
    classifier: torch.nn.Module, image: torch.Tensor, reference: Explanation, baseline: torch.Tensor
) -> float:
    """The target log-odds a ranking method's mask must reach to hold as much evidence as ``reference``'s
    mask: the reference mask's, or the full image's when the mask convinces the classifier more than the
    image itself (no top-k mask may be asked for more than the whole image gives)."""
    masks = torch.stack([reference.mask.bool(), torch.ones_like(reference.mask, dtype=torch.bool)])
    _, odds = masked_log_odds(classifier, image, masks, reference.target, baseline)
    return float(odds.min())


def _lesion_explanation(
    classifier: torch.nn.Module, image: torch.Tensor, lesion: torch.Tensor, target: int, baseline: torch.Tensor
) -> Explanation:
    """The finding itself as the mask, verified like any explanation (the ``lesion`` row: how much of the
    decision a mask entirely on the finding holds)."""
    mask = lesion.bool().cpu()
    kept, odds = masked_log_odds(classifier, image, torch.stack([mask, torch.ones_like(mask)]), target, baseline)
    probabilities = torch.sigmoid(odds.double())  # the target's softmax probability, from its log-odds
    return Explanation(mask=mask, soft_mask=mask.float(), target=target, probability=float(probabilities[1]),
                       masked_probability=float(probabilities[0]), faithful=bool(kept[0]),
                       area_fraction=float(mask.float().mean()), steps=0, seconds=0.0, method="lesion")


def summarise(results: list[ImageResult]) -> dict[str, Any]:
    """Aggregate figures of one method on one dataset (the row of the table)."""
    localised = [r for r in results if r.iou is not None]

    def mean(values: list[float]) -> float | None:
        return float(np.mean(values)) if values else None

    def median(values: list[float]) -> float | None:
        return float(statistics.median(values)) if values else None

    return {
        "images": len(results),
        "decision_kept_pct": 100.0 * mean([r.faithful for r in results]),
        "masked_ge_original_pct": 100.0 * mean([r.masked_probability >= r.probability for r in results]),
        # probabilities of 0.9999 and 0.99995 differ in the fourth decimal: also count "not lower by > 0.01"
        "masked_within_001_pct": 100.0 * mean([r.masked_probability >= r.probability - 0.01 for r in results]),
        "probability": mean([r.probability for r in results]),
        "masked_probability": mean([r.masked_probability for r in results]),
        "necessity": mean([r.necessity for r in results]),
        "removed_probability": mean([r.removed_probability for r in results]),
        "removal_flips_pct": 100.0 * mean([r.removal_flips for r in results]),
        "random_keep_pct": 100.0 * mean([r.random_keep for r in results]),
        "smallest_faithful_area": median([r.smallest_faithful_area for r in localised
                                          if r.smallest_faithful_area is not None]),
        "smallest_preserving_area": median([r.smallest_preserving_area for r in localised
                                            if r.smallest_preserving_area is not None]),
        "equal_evidence_area": mean([r.equal_evidence_area for r in localised
                                     if r.equal_evidence_area is not None]),
        "precision_equal_evidence": mean([r.equal_evidence_precision for r in localised
                                          if r.equal_evidence_precision is not None]),
        "area_fraction": mean([r.area_fraction for r in results]),
        "lesion_images": len(localised),
        "iou": mean([r.iou for r in localised]),
        "precision": mean([r.precision for r in localised]),
        # on a "normal" decision the blurred image is normal already: an empty mask keeps it, nothing can be
        # removed and any random region keeps it too, so these are reported on the lesion decisions
        "lesion_area_fraction": mean([r.area_fraction for r in localised]),
        "lesion_removed_probability": mean([r.removed_probability for r in localised]),
        "lesion_flips_pct": None if not localised else 100.0 * mean([r.removal_flips for r in localised]),
        "lesion_random_keep_pct": None if not localised else 100.0 * mean([r.random_keep for r in localised]),
        "pointing_pct": None if not localised else 100.0 * mean([r.pointing for r in localised]),
        "deletion_auc": mean([r.deletion_auc for r in results]),
        "insertion_auc": mean([r.insertion_auc for r in results]),
        "seconds_per_image": mean([r.seconds for r in results]),
        "median_steps": float(statistics.median([r.steps for r in results])),
    }


def quantus_cross_check(
    classifier: TrainedClassifier, test: GroundTruthSet, saliencies: dict[str, dict[int, torch.Tensor]],
    baseline_value: float = 0.0,
) -> dict[str, dict[str, float]]:
    """Independent figures from the ``quantus`` package on the lesion images of a 2D dataset:
    its pointing game (to compare with ours) and its region-perturbation MoRF curve (8x8 patches removed
    most relevant first; quantus records the drop of the target output, so a higher mean drop = more
    faithful, the mirror image of our deletion AUC where lower is better). Raises ``ImportError`` naming the
    extra to install when quantus is missing (it is not a runtime dependency)."""
    try:
        import quantus
    except ImportError as error:
        raise ImportError("quantus is not installed: pip install 'medcam-dicom[benchmark]' for the cross-check, "
                          "or pass --no-quantus") from error

    figures: dict[str, dict[str, float]] = {}
    for method, maps in saliencies.items():
        indices = sorted(maps)
        if not indices:
            continue
        x = classifier.preprocess(test.images[indices]).numpy()
        y = np.full(len(indices), LESION)
        a = np.stack([maps[i].numpy()[None] for i in indices]).astype(np.float32)
        s = np.stack([test.lesions[i].numpy()[None] for i in indices]).astype(np.float32)
        pointing = quantus.PointingGame(disable_warnings=True)(
            model=classifier.network, x_batch=x, y_batch=y, a_batch=a, s_batch=s, device="cpu"
        )
        curves = quantus.RegionPerturbation(
            patch_size=8, regions_evaluation=20, perturb_baseline=baseline_value, normalise=False,
            disable_warnings=True,
        )(model=classifier.network, x_batch=x, y_batch=y, a_batch=a, softmax=True, device="cpu")
        figures[method] = {
            "quantus_pointing_pct": 100.0 * float(np.mean(pointing)),
            "quantus_morf_mean_drop": float(np.mean([np.mean(curve) for curve in curves])),
        }
    return figures


def _gallery(rows: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = ("image", "ground truth", "Grad-CAM (equal area)", "Med-CAM")
    figure, axes = plt.subplots(len(rows), 4, figsize=(8, 2.1 * len(rows)), squeeze=False)
    for row, (title, image, truth, gradcam, medcam) in enumerate(rows):
        for column, overlay in enumerate((None, truth, gradcam, medcam)):
            axis = axes[row, column]
            axis.imshow(image, cmap="gray" if image.ndim == 2 else None)
            if overlay is not None:
                shown = np.ma.masked_where(~overlay, overlay.astype(float))
                axis.imshow(shown, cmap="autumn", alpha=0.55, vmin=0, vmax=1)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(columns[column], fontsize=8)
        axes[row, 0].set_ylabel(title, fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _display(image: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[np.ndarray, int | None]:
    """A 2D picture of an image (C, *spatial) in [0, 1]: the slice with most mask for volumes."""
    array = image.numpy()
    index = None
    if array.ndim == 4:
        index = int(mask.flatten(1).sum(1).argmax()) if mask is not None and mask.any() else array.shape[1] // 2
        array = array[:, index]
    array = array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)
    return np.clip(array, 0, 1), index


@dataclass
class BenchmarkClassifier:
    """One classifier a benchmark run explains: its key in the report, dataset, the classifier, and (for
    the zoo) its architecture, training and split."""

    key: str
    dataset: str
    classifier: TrainedClassifier
    training: str = "demo"
    split: str = "held-out"
    member: ZooMember | None = None


def _classifiers_to_run(
    datasets: tuple[str, ...], arch: str, group: str, split: str, progress: bool,
    classifiers: dict[str, TrainedClassifier] | None, zoo_archs: tuple[str, ...] = ZOO_ARCHS,
) -> list[BenchmarkClassifier]:
    if group == "demo":
        missing = [d for d in datasets if d not in DATASETS and d not in (classifiers or {})]
        if missing:
            raise ValueError(f"no demo classifier for {missing} (a classifier zoo dataset: use --classifiers plain)")
        return [BenchmarkClassifier(dataset, dataset, (classifiers or {}).get(dataset)
                                    or load_classifier(dataset, arch, progress)) for dataset in datasets]
    # the zoo is 2D: a list that includes the 3D set is cut to its 2D part
    chosen = tuple(d for d in datasets if d in ZOO_DATASETS) or datasets
    members = zoo_members(group, split, chosen, zoo_archs)
    return [BenchmarkClassifier(m.name, m.dataset, load_zoo_classifier(m, progress), m.training, m.split, m)
            for m in members]


def _ranking_method(name: str, network: torch.nn.Module) -> Any:
    if name in ("gradcam", "gradcam++"):
        return GradCAMSaliency(network, plus_plus=name == "gradcam++")
    if name == "occlusion":
        return OcclusionSaliency(network)
    return RISESaliency(network)


def run_benchmark(
    datasets: tuple[str, ...] | None = None,
    images: int = 20,
    methods: tuple[str, ...] = DEFAULT_METHODS,
    config: MedCAMConfig | None = None,
    arch: str = "resnet18-small",
    out_dir: str | Path = "benchmark-output",
    gallery_images: int = 3,
    cross_check: bool = True,
    progress: bool = True,
    variant: str = "standard",
    classifiers: dict[str, TrainedClassifier] | None = None,
    explainers: dict[str, AmortizedMedCAM] | None = None,
    group: str = "demo",
    split: str = "all",
    zoo_archs: tuple[str, ...] = ZOO_ARCHS,
    baseline_area: str = "medcam",
    amortized_prune: str = "none",
    zoo_explainers: str | Path | None = None,
) -> dict[str, Any]:
    """Run the benchmark and write ``benchmark.json`` and ``gallery.png`` into ``out_dir``.

    ``datasets``: by default every dataset of the group (the demo classifiers' five; the zoo's 2D ones,
    with the zoo-only ``abdomen``). ``group`` picks the classifiers: ``demo`` (the shipped demo classifier
    of each dataset, by ``arch``) or a group of the classifier zoo (``plain``, ``masking``, ``all``;
    ``split`` restricts it to the ``tuning`` or ``held-out`` part, ``zoo_archs`` to some architectures).
    ``variant`` picks the test images (``heldout``: a shift no classifier or explainer was trained on);
    ``classifiers`` / ``explainers`` replace the shipped demo classifier / amortised explainer of a dataset
    (the MONAI bundle's evaluation passes its own). The zoo's classifiers get their own amortised explainers
    (:func:`~medcam_dicom.benchmark.zoo.load_zoo_explainer`, trained on first use). ``baseline_area``: the
    Med-CAM method whose area the ranking methods are cut to (``medcam``, or ``amortized`` /
    ``amortized+refine`` to compare the amortised explainer at equal area); ``amortized_prune``: the
    amortised explainer's ``prune`` (see :meth:`AmortizedMedCAM.explain`); ``zoo_explainers``: a folder
    holding the zoo's amortised explainers of another recipe, read instead of ``zoo/``'s.

    Per image and method: sufficiency (decision kept, masked probability), comprehensiveness (the target
    probability after the mask is blurred away, decision flipped), the null check (share of random smooth
    masks of the same area that keep the decision), precision, IoU and pointing game on lesion images;
    for the ranking methods also minimality (the smallest top-k areas that keep the decision, and that keep
    the target's probability at least at the full image's)."""
    for name in methods:
        if name not in METHODS:
            raise ValueError(f"unknown method {name!r}; expected any of {METHODS}")
    if baseline_area not in MEDCAM_METHODS or baseline_area not in methods:
        raise ValueError(f"baseline_area must be medcam or a Med-CAM method being run, got {baseline_area!r}")
    if amortized_prune not in PRUNE_CRITERIA:
        raise ValueError(f"amortized_prune must be one of {PRUNE_CRITERIA}, got {amortized_prune!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = config or MedCAMConfig()
    report: dict[str, Any] = {"config": config.to_dict(), "arch": arch, "images_per_dataset": images,
                              "baseline_area": baseline_area, "amortized_prune": amortized_prune,
                              "variant": variant, "group": group, "split": split,
                              "zoo_archs": list(zoo_archs),
                              "zoo_explainers": None if zoo_explainers is None else str(zoo_explainers),
                              "datasets": {},
                              "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    gallery_rows = []
    all_results: list[ImageResult] = []
    torch_threads = torch.get_num_threads()
    if datasets is None:
        datasets = DATASETS if group == "demo" else ZOO_DATASETS
    for run in _classifiers_to_run(datasets, arch, group, split, progress, classifiers, zoo_archs):
        dataset, classifier = run.dataset, run.classifier
        network = classifier.network
        test = generate(dataset, images, seed=TEST_SEED, variant=variant)
        explainer = MedCAM(network, config=config)
        amortized = None
        skipped: dict[str, str] = {}
        if set(methods) & set(AMORTIZED_METHODS):
            amortized = (explainers or {}).get(dataset) if run.training == "demo" else None
            if amortized is None and run.member is not None:  # the zoo: trained on first use, then kept
                amortized = load_zoo_explainer(run.member, classifier, config, progress, zoo_explainers)
            elif amortized is None:
                amortized = load_explainer(dataset, classifier, config)
        rankers = {name: _ranking_method(name, network) for name in methods if name in RANKING_METHODS}
        removal_generator = torch.Generator().manual_seed(0)
        results: list[ImageResult] = []
        saliencies: dict[str, dict[int, torch.Tensor]] = {m: {} for m in methods}
        bar = tqdm(range(len(test)), desc=f"benchmark {run.key}", unit="image", disable=not progress)
        shown = 0
        for index in bar:
            image = classifier.preprocess(test.images[index])
            label, lesion = int(test.labels[index]), test.lesions[index]
            baseline = explainer.baseline(image)
            removed = make_baseline(image, "blur", removal_generator)

            row: dict[str, Explanation] = {}
            # (explanation, saliency, smallest top-k areas keeping the decision / the probability)
            produced: list[tuple[Explanation, torch.Tensor, tuple[float | None, float | None]]] = []
            for name in methods:
                if name == "medcam":
                    explanation = explainer.explain(image)
                elif name in AMORTIZED_METHODS:
                    explanation = amortized.explain(image, refine_steps=AMORTIZED_METHODS[name],
                                                    prune=amortized_prune)
                    explanation.method = name
                else:
                    continue
                row[name] = explanation
                produced.append((explanation, explanation.soft_mask, (None, None)))
            reference = row[baseline_area]  # the ranking methods explain its target, cut to its area
            area = reference.area_fraction
            localised = label == LESION and reference.target == LESION
            evidence = _evidence_bar(network, image, reference, baseline) if localised else None
            if localised and "lesion" in methods:
                row["lesion"] = _lesion_explanation(network, image, lesion, reference.target, baseline)
                produced.append((row["lesion"], lesion.float(), (None, None)))
            for name in methods:
                if name not in RANKING_METHODS or name in skipped:
                    continue
                try:
                    explanation, saliency = explain_at_area(
                        rankers[name], network, image, area, baseline, target=reference.target
                    )
                except ValueError as error:  # Grad-CAM on a classifier without any spatial feature map
                    skipped[name] = str(error)
                    continue
                row[name] = explanation
                produced.append((explanation, saliency,
                                 smallest_faithful_area(network, image, saliency, reference.target, baseline,
                                                        explanation.probability)))
            for explanation, saliency, smallest in produced:
                result = _result(run.key, index, label, explanation, network, image, saliency, baseline, lesion,
                                 removed)
                result.smallest_faithful_area, result.smallest_preserving_area = smallest
                if evidence is not None and explanation.method in RANKING_METHODS:
                    same = equal_evidence_mask(network, image, saliency, reference.target, baseline, evidence)
                    if same is not None:
                        result.equal_evidence_area = float(same.float().mean())
                        result.equal_evidence_precision = precision(same, lesion)
                results.append(result)
                if result.iou is not None:
                    saliencies[result.method][index] = saliency
            bar.set_postfix(faithful=reference.faithful, area=f"{reference.area_fraction:.3f}", steps=reference.steps)
            if label == LESION and reference.target == LESION and shown < gallery_images and "gradcam" in row:
                picture, slice_index = _display(test.images[index], lesion)

                def cut(mask: torch.Tensor, slice_index: int | None = slice_index) -> np.ndarray:
                    array = mask.numpy().astype(bool)
                    return array[slice_index] if slice_index is not None else array

                gallery_rows.append((f"{run.key} #{index}", picture, cut(lesion), cut(row["gradcam"].mask),
                                     cut(reference.mask)))
                shown += 1
        ran = [m for m in methods if m not in skipped and any(r.method == m for r in results)]
        by_method = {m: summarise([r for r in results if r.method == m]) for m in ran}
        for name in ran:
            if name in MEDCAM_METHODS:
                by_method[name]["minimality_ratio"] = minimality_ratio(results, name)
                by_method[name]["minimality_ratio_probability"] = minimality_ratio(results, name, "probability")
        entry: dict[str, Any] = {"methods": by_method, "classifier": classifier.metrics, "dataset": dataset,
                                 "arch": classifier.arch, "training": run.training, "split": run.split,
                                 "skipped": skipped}
        if cross_check and len(test.images.shape) == 4:
            try:
                entry["quantus"] = quantus_cross_check(classifier, test, saliencies)
            except ImportError as error:
                entry["quantus"] = str(error)
        report["datasets"][run.key] = entry
        all_results.extend(results)
    torch.set_num_threads(torch_threads)
    if group != "demo":
        report["splits"] = summarise_splits(report, all_results)
    report["images"] = [asdict(r) for r in all_results]
    (out / "benchmark.json").write_text(json.dumps(report, indent=2))
    if gallery_rows:
        _gallery(gallery_rows, out / "gallery.png")
    return report


def minimality_ratio(results: list[ImageResult], method: str, criterion: str = "decision") -> float | None:
    """Median over the lesion decisions of ``method``'s area divided by the smallest faithful top-k area of
    the best ranking method on that image (<= 1: no larger than the smallest faithful baseline mask);
    images where ``method`` did not keep the decision or no ranking method did are left out. (A "normal"
    decision is kept by an empty mask, by every method: its ratio says nothing.) ``criterion``:
    ``decision`` compares with the smallest top-k mask keeping the decision, ``probability`` with the
    smallest keeping the target's probability at least at the full image's."""
    if criterion not in ("decision", "probability"):
        raise ValueError(f"criterion must be 'decision' or 'probability', got {criterion!r}")
    areas = {(r.dataset, r.index): r.area_fraction for r in results
             if r.method == method and r.faithful and r.iou is not None}
    best: dict[tuple[str, int], float] = {}
    for r in results:
        key = (r.dataset, r.index)
        smallest = r.smallest_faithful_area if criterion == "decision" else r.smallest_preserving_area
        if smallest is not None and key in areas:
            best[key] = min(best.get(key, 1.0), smallest)
    ratios = [areas[i] / max(best[i], 1e-9) for i in best]
    return float(statistics.median(ratios)) if ratios else None


def summarise_splits(report: dict[str, Any], results: list[ImageResult]) -> dict[str, Any]:
    """The zoo's aggregate tables: per training and split (``plain / tuning``, ``plain / held-out``,
    ``masking / held-out``), each method's figures over all images of those classifiers."""
    tables: dict[str, Any] = {}
    for key, entry in report["datasets"].items():
        table = f"{entry['training']} / {entry['split']}"
        tables.setdefault(table, {"classifiers": []})["classifiers"].append(key)
    for info in tables.values():
        keys = set(info["classifiers"])
        chosen = [r for r in results if r.dataset in keys]
        methods = {r.method for r in chosen}
        rows = {}
        medcam_first = sorted(methods, key=lambda m: (m not in MEDCAM_METHODS, METHODS.index(m)))
        for method in medcam_first:
            row = summarise([r for r in chosen if r.method == method])
            if method in MEDCAM_METHODS:
                row["minimality_ratio"] = minimality_ratio(chosen, method)
                row["minimality_ratio_probability"] = minimality_ratio(chosen, method, "probability")
            rows[method] = row
        info["methods"] = rows
    return tables


# the table's figure columns: (heading, key in a summarise() row, decimals)
TABLE_COLUMNS = (
    ("kept %", "decision_kept_pct", 1),
    ("m>=p %", "masked_ge_original_pct", 1),
    ("p", "probability", 3),
    ("p masked", "masked_probability", 3),
    ("area", "area_fraction", 3),
    ("lesion area", "lesion_area_fraction", 3),
    ("p removed", "lesion_removed_probability", 3),
    ("flips %", "lesion_flips_pct", 1),
    ("random keep %", "lesion_random_keep_pct", 1),
    ("min ratio", "minimality_ratio", 2),
    ("min ratio p", "minimality_ratio_probability", 2),
    ("precision", "precision", 3),
    ("prec. eq. evidence", "precision_equal_evidence", 3),
    ("IoU", "iou", 3),
    ("pointing %", "pointing_pct", 1),
    ("deletion", "deletion_auc", 3),
    ("s/image", "seconds_per_image", 2),
    ("steps", "median_steps", 0),
)


def _table(title: str, rows: list[tuple[str, str, dict[str, Any]]]) -> Any:
    from rich.table import Table

    def fmt(value: Any, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    table = Table(title=title)
    table.add_column("classifier")
    table.add_column("method", no_wrap=True)
    for heading, _, _ in TABLE_COLUMNS:
        table.add_column(heading, justify="right")
    for key, method, row in rows:
        table.add_row(key, method, *[fmt(row.get(column), digits) for _, column, digits in TABLE_COLUMNS])
    return table


def print_report(report: dict[str, Any]) -> None:
    """The benchmark tables: one row per classifier and method, then (for the zoo) one table per training
    and split with every method aggregated over that part's images. The columns from "lesion area" to
    "pointing" are on the lesion decisions (lesion images explained as "lesion")."""
    from rich.console import Console

    def fmt(value: Any, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    console = Console(width=220)
    rows = [(key, method, row) for key, entry in report["datasets"].items() for method, row in entry["methods"].items()]
    cut = report.get("baseline_area", "medcam")
    pruned = report.get("amortized_prune", "none")
    console.print(_table(f"Med-CAM ground-truth benchmark ({report.get('group', 'demo')} classifiers, "
                         f"{report['images_per_dataset']} images each; ranking methods at {cut}'s area"
                         + (f"; amortised masks pruned: {pruned}" if pruned != "none" else "") + ")", rows))
    for name, info in report.get("splits", {}).items():
        rows = [(f"{len(info['classifiers'])} classifiers", method, row) for method, row in info["methods"].items()]
        console.print(_table(f"{name}: " + ", ".join(info["classifiers"]), rows))
    for key, entry in report["datasets"].items():
        for method, why in entry.get("skipped", {}).items():
            console.print(f"{key}: {method} skipped: {why}")
    for dataset, entry in report["datasets"].items():
        if isinstance(entry.get("quantus"), str):
            console.print(f"quantus cross-check {dataset}: skipped, {entry['quantus']}")
        if isinstance(entry.get("quantus"), dict):
            for method, figures in entry["quantus"].items():
                console.print(f"quantus cross-check {dataset}/{method}: pointing "
                              f"{figures['quantus_pointing_pct']:.1f} % (ours "
                              f"{fmt(entry['methods'][method]['pointing_pct'], 1)} %), MoRF mean drop "
                              f"{figures['quantus_morf_mean_drop']:.3f} (higher = better; our deletion AUC "
                              f"{fmt(entry['methods'][method]['deletion_auc'])}, lower = better)")

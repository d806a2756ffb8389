"""Can the amortised decoder learn the searched masks, so that its one forward pass replaces the pruning and
the evidence search (issue 12's amortised time target)? A pilot on tuning classifiers (2026-12-02, not
adopted: docs/benchmark.md, "Distilling the searched masks into the decoder").

    # 1. targets: the shipped zoo explainer's masks, `preserved` + prune_search=40 + prune_search_guide=0.5,
    #    on the explainer's own training images (seed EXPLAINER_SEED)
    python scripts/benchmark_distillation.py targets --dataset ct --arch cnn --images 384 --out runs/distil
    # 2. the decoder trained to output them (from the zoo explainer's weights, or a new decoder: --coarseness)
    python scripts/benchmark_distillation.py fit --dataset ct --arch cnn --out runs/distil [--margin 1]
    # 3. the distilled masks on the benchmark's test images against the searched ones
    python scripts/benchmark_distillation.py check --dataset ct --arch cnn --explainers runs/distil/fit
    # the full benchmark of a distilled explainer (RISE, occlusion at equal area):
    medcam-dicom benchmark --classifiers plain --split tuning --datasets ct --zoo-archs cnn --images 40 \\
        --methods amortized+refine gradcam occlusion rise --baseline-area amortized+refine \\
        --zoo-explainers runs/distil/fit

The fit loss: binary cross-entropy (positives weighted) and soft Dice of the decoder's logits of the target
class against the searched mask; with ``--margin W`` also ``W`` times the amortised core term on the hard
mask (cross-entropy and the log-odds hinge asking the masked image to be as convincing as the full one).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from medcam_dicom.benchmark.metrics import precision
from medcam_dicom.benchmark.training import EXPLAINER_SEED, TEST_SEED
from medcam_dicom.benchmark.zoo import ZooMember, load_zoo_classifier, zoo_explainer_path
from medcam_dicom.data.synthetic import generate
from medcam_dicom.explain.amortized import AmortizedMedCAM
from medcam_dicom.explain.amortized_training import core_loss, optimisation_step
from medcam_dicom.explain.losses import target_log_odds
from medcam_dicom.explain.mask_network import mask_probabilities, straight_through_mask
from medcam_dicom.explain.verification import evaluation_mode, forward_logits, masked_log_odds
from medcam_dicom.models.demo import TrainedClassifier

#: the searched masks' settings (the held-out table's amortised guided row)
SEARCH = {"prune_search": 40, "prune_search_guide": 0.5}


def searching_explainer(member: ZooMember, classifier: TrainedClassifier) -> AmortizedMedCAM:
    """The shipped zoo explainer with the evidence search guided by its own map."""
    path = zoo_explainer_path(member)
    saved = AmortizedMedCAM.load(path, classifier.network)
    return AmortizedMedCAM.load(path, classifier.network, config=dataclasses.replace(saved.config, **SEARCH))


def make_targets(member: ZooMember, count: int, out: Path) -> Path:
    """Searched masks (``preserved``, ``refine_steps="auto"``) of ``count`` training images, saved with
    their decisions to ``out/<dataset>-<arch>-targets.pt``."""
    classifier = load_zoo_classifier(member, progress=False)
    explainer = searching_explainer(member, classifier)
    images = classifier.preprocess(generate(member.dataset, count, seed=EXPLAINER_SEED).images)
    masks, targets, preserved = [], [], []
    for image in tqdm(images, desc=f"searched masks {member.name}", unit="image"):
        explanation = explainer.explain(image, refine_steps="auto", prune="preserved")
        masks.append(explanation.mask.bool())
        targets.append(explanation.target)
        preserved.append(explanation.faithful and explanation.masked_probability >= explanation.probability)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{member.dataset}-{member.arch}-targets.pt"
    stacked = torch.stack(masks)
    torch.save({"masks": stacked, "targets": torch.tensor(targets), "count": count, "seed": EXPLAINER_SEED}, path)
    print(f"{member.name}: {sum(preserved)}/{count} searched masks as convincing as the image, "
          f"mean area {float(stacked.float().mean()):.4f}; written to {path}")
    return path


def distillation_loss(logits: torch.Tensor, masks: torch.Tensor, pos_weight: float) -> torch.Tensor:
    """Weighted binary cross-entropy plus soft Dice of mask logits ``(B, 1, *spatial)`` against binary
    masks of the same shape."""
    bce = F.binary_cross_entropy_with_logits(logits, masks, pos_weight=torch.tensor(pos_weight))
    probabilities = torch.sigmoid(logits)
    dims = tuple(range(1, logits.ndim))
    dice = 1 - (2 * (probabilities * masks).sum(dims) + 1) / (probabilities.sum(dims) + masks.sum(dims) + 1)
    return bce + dice.mean()


def fit(member: ZooMember, out: Path, epochs: int, learning_rate: float, pos_weight: float, margin: float,
        coarseness: int) -> Path:
    """Train the decoder on the targets of :func:`make_targets`; the explainer goes to ``out/fit/``
    under the zoo explainer's file name (``--zoo-explainers out/fit`` reads it)."""
    torch.manual_seed(0)
    classifier = load_zoo_classifier(member, progress=False)
    network = classifier.network
    explainer = AmortizedMedCAM.load(zoo_explainer_path(member), network)
    targets_path = out / f"{member.dataset}-{member.arch}-targets.pt"
    if not targets_path.is_file():
        raise SystemExit(f"error: no targets at {targets_path}; run the `targets` step with --out {out} first")
    saved = torch.load(targets_path)
    images = classifier.preprocess(generate(member.dataset, saved["count"], seed=saved["seed"]).images).float()
    if coarseness:  # a new decoder of that coarseness instead of the shipped one's weights
        explainer = AmortizedMedCAM(network, layers=explainer.medcam.layer_names, config=explainer.config,
                                    coarseness=coarseness).build(images[0])
    masks, targets = saved["masks"].float().unsqueeze(1), saved["targets"]
    chunks = [explainer._classify(images[i : i + 32], explainer.feature_layers) for i in range(0, len(images), 32)]
    full_logits = torch.cat([logits for logits, _ in chunks])
    features = [torch.cat([recorded[name] for _, recorded in chunks]) for name in explainer.feature_layers]
    decoder = explainer.network
    assert decoder is not None
    optimiser = torch.optim.Adam(decoder.parameters(), lr=learning_rate)
    batches = (len(images) + 15) // 16
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=learning_rate, total_steps=epochs * batches,
                                                    pct_start=0.1)
    for epoch in range(epochs):
        decoder.train()
        intersection = union = 0.0
        for index in torch.randperm(len(images)).split(16):
            all_logits = explainer._mask_logits(images[index], [feature[index] for feature in features])
            logits = all_logits.gather(1, targets[index].view(-1, 1, 1, 1).expand(-1, 1, *all_logits.shape[2:]))
            loss = distillation_loss(logits, masks[index], pos_weight)
            if margin > 0:
                hard = straight_through_mask(mask_probabilities(logits), explainer.config.threshold)
                batch = images[index]
                with torch.no_grad():
                    baselines = explainer._baselines(batch)
                with evaluation_mode(network):
                    masked = forward_logits(network, hard * batch + (1 - hard) * baselines)
                loss = loss + margin * core_loss(full_logits[index], masked, targets[index])
            optimisation_step(loss, optimiser)
            scheduler.step()
            predicted = (logits > 0).detach()
            intersection += float((predicted & masks[index].bool()).sum())
            union += float((predicted | masks[index].bool()).sum())
        print(f"{member.name} epoch {epoch + 1}/{epochs}: IoU with the targets {intersection / max(union, 1.0):.3f}",
              flush=True)
    decoder.eval()
    explainer.metadata = {**explainer.metadata, "distilled": {"epochs": epochs, "learning_rate": learning_rate,
                                                              "pos_weight": pos_weight, "margin": margin,
                                                              "coarseness": explainer.coarseness}}
    path = out / "fit" / zoo_explainer_path(member).name
    path.parent.mkdir(parents=True, exist_ok=True)
    explainer.save(path)
    return path


def check(member: ZooMember, explainers: Path, count: int, levels: list[float], reference: bool) -> None:
    """On the lesion decisions of ``count`` benchmark test images: the distilled decoder's mask at the
    smallest of ``levels`` (mask logits, one batched classifier pass over all of them) that is as convincing
    as the full image, else the smallest keeping the decision; its share as convincing, median area,
    mean precision and seconds; with ``reference`` the searched masks' the same way."""
    classifier = load_zoo_classifier(member, progress=False)
    network = classifier.network
    distilled = AmortizedMedCAM.load(explainers / zoo_explainer_path(member).name, network)
    test = generate(member.dataset, count, seed=TEST_SEED)
    images = classifier.preprocess(test.images).float()
    order = sorted(levels, reverse=True)  # the highest level is the smallest mask
    figures: dict[str, list[tuple[bool, float, float, float]]] = {"distilled": [], "searched": []}
    searcher = searching_explainer(member, classifier) if reference else None
    for image, lesion in zip(images, test.lesions):
        lesion = torch.as_tensor(lesion).bool()
        started = time.perf_counter()
        predicted = distilled.predict(image[None])
        target = int(predicted["target"][0])
        if target != 1 or not lesion.any():
            continue
        masks = torch.stack([predicted["logits"][0] > level for level in order])
        kept, odds = masked_log_odds(network, image, masks, target, distilled.medcam.baseline(image))
        convincing = odds >= float(target_log_odds(predicted["class_logits"], predicted["target"])[0])
        chosen = int(convincing.nonzero()[0]) if convincing.any() else int(kept.nonzero()[0]) if kept.any() else -1
        mask = masks[chosen]
        figures["distilled"].append((bool(convincing[chosen]), float(mask.float().mean()), precision(mask, lesion),
                                     time.perf_counter() - started))
        if searcher is not None:
            result = searcher.explain(image, refine_steps="auto", prune="preserved")
            figures["searched"].append((result.faithful and result.masked_probability >= result.probability,
                                        result.area_fraction, precision(result.mask, lesion), result.seconds))
    for name, rows in figures.items():
        if rows:
            print(f"{member.name} {name}: {len(rows)} lesion decisions, as convincing as the image "
                  f"{100 * statistics.mean(r[0] for r in rows):.0f} %, median area "
                  f"{statistics.median(r[1] for r in rows):.4f}, precision {statistics.mean(r[2] for r in rows):.3f}, "
                  f"{statistics.mean(r[3] for r in rows):.3f} s per image")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("targets", "fit", "check"))
    parser.add_argument("--dataset", default="ct")
    parser.add_argument("--arch", default="cnn")
    parser.add_argument("--out", type=Path, default=Path("runs/distil"), help="targets and fitted explainers")
    parser.add_argument("--images", type=int, default=384, help="targets: training images; check: test images")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--learning-rate", type=float, default=5e-3)
    parser.add_argument("--pos-weight", type=float, default=4.0)
    parser.add_argument("--margin", type=float, default=0.0, help="fit: weight of the core term (0: off)")
    parser.add_argument("--coarseness", type=int, default=0, help="fit: a new decoder of this coarseness (0: the "
                        "shipped decoder's weights and coarseness)")
    parser.add_argument("--explainers", type=Path, help="check: the folder of fitted explainers (default OUT/fit)")
    parser.add_argument("--levels", default="0", help="check: mask-logit levels tried in one pass, e.g. 4,2,1,0,-1")
    parser.add_argument("--no-reference", action="store_true", help="check: skip the searched masks")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    member = ZooMember(args.arch, args.dataset, "plain")
    try:
        if args.step == "targets":
            make_targets(member, args.images, args.out)
        elif args.step == "fit":
            fit(member, args.out, args.epochs, args.learning_rate, args.pos_weight, args.margin, args.coarseness)
        else:
            check(member, args.explainers or args.out / "fit", args.images,
                  [float(level) for level in args.levels.split(",")], not args.no_reference)
    except ValueError as error:  # a missing or unfit explainer file, an unknown level
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

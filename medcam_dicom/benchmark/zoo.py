"""The benchmark's classifier zoo: classifiers trained the ordinary way, as users' classifiers are.

Every 2D dataset gets four architectures trained with plain cross-entropy and ordinary augmentation
(flips, shifts, intensity; **no masking**): a small CNN, a DenseNet-121, a ResNet-18 and a ViT with a
convolutional stem (MONAI networks; see :mod:`medcam_dicom.models.architectures`; the plain ViT does not
learn these tasks from scratch). The shipped demo classifiers, trained with
random masking, stay as the ``masking`` group.

The zoo is split: every default of the explainers is chosen on the **tuning** part (two architectures on two
datasets, and every architecture on the zoo-only ``abdomen`` set, so that DenseNets and transformers have
tuning-side members too); everything else is **held out** and only reported. ``scripts/train_zoo.py`` trains
the zoo (seeded, CPU); the checkpoints are kept in the repository's ``zoo/`` folder and, outside a checkout,
trained on first use and cached under ``~/.cache/medcam-dicom/zoo``. So are the amortised explainers of the
plain classifiers (``--explainers``), trained with the default Med-CAM loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medcam_dicom.benchmark.names import DATASETS_2D, SPLITS, ZOO_ARCHS, ZOO_DATASETS, ZOO_ONLY_DATASETS
from medcam_dicom.explain.amortized import AmortizedMedCAM
from medcam_dicom.explain.config import MedCAMConfig
from medcam_dicom.models.demo import TrainedClassifier, demo_checkpoint_path, demo_explainer_path

TUNING_ARCHS = ("cnn", "resnet18-small")
TUNING_DATASETS = ("ct", "fundus")
#: datasets whose every classifier is on the tuning side (added 2026-11-30 with no member held out before)
TUNING_ONLY_DATASETS = ZOO_ONLY_DATASETS
ZOO_GROUPS = ("plain", "masking", "all")

REPOSITORY_ZOO = Path(__file__).resolve().parents[2] / "zoo"
CACHE_ZOO = Path.home() / ".cache" / "medcam-dicom" / "zoo"


@dataclass(frozen=True)
class Recipe:
    """How one architecture of the zoo is trained (images are generated anew every epoch)."""

    epochs: int = 10
    train_images: int = 1500
    learning_rate: float = 1e-3


RECIPES = {
    "cnn": Recipe(),
    "resnet18-small": Recipe(),
    "densenet121-small": Recipe(),
    # a transformer learns from scratch more slowly: more epochs, a smaller step
    "vit-convstem-small": Recipe(epochs=16, learning_rate=5e-4),
}


@dataclass(frozen=True)
class ZooMember:
    """One classifier of the benchmark: its architecture, dataset, training (``plain`` or ``masking``)
    and split (``tuning`` or ``held-out``)."""

    arch: str
    dataset: str
    training: str

    @property
    def split(self) -> str:
        """``tuning`` when defaults may be chosen on this classifier, else ``held-out``."""
        tuned = self.training == "plain" and (
            (self.arch in TUNING_ARCHS and self.dataset in TUNING_DATASETS) or self.dataset in TUNING_ONLY_DATASETS)
        return "tuning" if tuned else "held-out"

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.arch}/{self.training}"


def zoo_members(
    classifiers: str = "plain", split: str = "all", datasets: tuple[str, ...] = ZOO_DATASETS,
    archs: tuple[str, ...] = ZOO_ARCHS,
) -> list[ZooMember]:
    """The classifiers of a benchmark run, datasets outermost. ``classifiers``: ``plain`` (the zoo),
    ``masking`` (the shipped masking-trained demo classifiers) or ``all``; ``split``: ``tuning``,
    ``held-out`` or ``all`` (the masking group is never tuned on: it is reported as held out; it has no
    member on the zoo-only datasets, which have no demo classifier)."""
    if classifiers not in ZOO_GROUPS:
        raise ValueError(f"classifiers must be one of {ZOO_GROUPS}, got {classifiers!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    unknown = sorted(set(archs) - set(ZOO_ARCHS))
    if unknown:
        raise ValueError(f"unknown zoo architecture(s) {unknown}; expected any of {ZOO_ARCHS}")
    members = []
    for dataset in datasets:
        if dataset not in ZOO_DATASETS:
            raise ValueError(f"the classifier zoo covers the 2D datasets {ZOO_DATASETS}, not {dataset!r}")
        if classifiers in ("plain", "all"):
            members.extend(ZooMember(arch, dataset, "plain") for arch in archs)
        if classifiers in ("masking", "all") and dataset in DATASETS_2D:
            members.append(ZooMember("resnet18-small", dataset, "masking"))
    return [m for m in members if split == "all" or m.split == split]


def zoo_checkpoint_path(member: ZooMember) -> Path:
    """Where a plain zoo classifier is kept: the repository's ``zoo/`` folder in a checkout, else the
    user cache; the masking group is the shipped demo checkpoint."""
    if member.training == "masking":
        return demo_checkpoint_path(member.dataset, member.arch)
    name = f"{member.dataset}-{member.arch}.pt"
    if REPOSITORY_ZOO.is_dir():
        return REPOSITORY_ZOO / name
    return CACHE_ZOO / name


def zoo_explainer_path(member: ZooMember) -> Path:
    """Where the amortised explainer of a zoo classifier is kept (beside its checkpoint, ``-explainer``);
    the masking group's is the shipped demo explainer."""
    if member.training == "masking":
        return demo_explainer_path(member.dataset)
    checkpoint = zoo_checkpoint_path(member)
    return checkpoint.with_name(f"{checkpoint.stem}-explainer.pt")


#: the zoo explainers' recipe: the shipped 2D demo explainers' loss and schedule, half their images per epoch
#: (3-11 minutes per classifier on one core)
EXPLAINER_EPOCHS, EXPLAINER_IMAGES = 8, 1024


def train_zoo_explainer(member: ZooMember, progress: bool = True, core_weight: float = 0.0,
                        config: MedCAMConfig | None = None) -> AmortizedMedCAM:
    """Train the amortised explainer of a plain zoo classifier with :class:`AmortizedMedCAM`'s default loss
    (seeded data, validated on the validation seed's lesions), as a user would train one for their own
    classifier; ``core_weight``: :meth:`AmortizedMedCAM.fit`'s core term (0: off, the shipped explainers'
    recipe); ``config``: the loss's settings (``None``: :meth:`MedCAMConfig.amortized`, the shipped recipe)."""
    from medcam_dicom.benchmark.training import train_explainer

    if member.training != "plain":
        raise ValueError(f"{member.name}: only the plain classifiers' explainers are trained here "
                         "(scripts/train_demo_models.py --explainers trains the demo ones)")
    classifier = load_zoo_classifier(member, progress)
    return train_explainer(classifier, train_images=EXPLAINER_IMAGES, epochs=EXPLAINER_EPOCHS, progress=progress,
                           core_weight=core_weight, config=config)


def load_zoo_explainer(member: ZooMember, classifier: TrainedClassifier, config: MedCAMConfig | None = None,
                       progress: bool = True, directory: str | Path | None = None) -> AmortizedMedCAM:
    """The amortised explainer of a zoo member, trained and saved first when its file is missing;
    ``directory``: read a plain member's from this folder instead (explainers trained with another recipe,
    ``scripts/train_zoo.py --explainers --out DIR``), where a missing file is an error."""
    path = zoo_explainer_path(member)
    if directory is not None and member.training == "plain":
        path = Path(directory) / path.name
        if not path.is_file():
            raise ValueError(f"no explainer of {member.name} at {path}; train it with "
                             f"scripts/train_zoo.py --explainers --out {directory}")
    elif not path.is_file():
        if member.training == "masking":
            raise ValueError(f"no demo explainer at {path}; run scripts/train_demo_models.py --explainers")
        explainer = train_zoo_explainer(member, progress)
        path.parent.mkdir(parents=True, exist_ok=True)
        explainer.save(path)
    return AmortizedMedCAM.load(path, classifier.network, config=config)


def train_zoo_classifier(member: ZooMember, progress: bool = True, seed: int = 0) -> TrainedClassifier:
    """Train one plain zoo classifier by its architecture's :data:`RECIPES` entry (no masking, ordinary
    augmentation; seeded, so rerunning reproduces it)."""
    from medcam_dicom.benchmark.training import train_classifier

    if member.training != "plain":
        raise ValueError(f"{member.name}: only the plain classifiers are trained here (scripts/train_demo_models.py "
                         "trains the masking-trained demo classifiers)")
    recipe = RECIPES[member.arch]
    return train_classifier(
        member.dataset, arch=member.arch, epochs=recipe.epochs, train_images=recipe.train_images,
        learning_rate=recipe.learning_rate, masking=0.0, augment=True, seed=seed, progress=progress,
    )


def load_zoo_classifier(member: ZooMember, progress: bool = True) -> TrainedClassifier:
    """The classifier of a zoo member, trained and saved first when its checkpoint is missing."""
    path = zoo_checkpoint_path(member)
    if not path.is_file():
        if member.training == "masking":
            raise ValueError(f"no demo classifier at {path}; run scripts/train_demo_models.py")
        model = train_zoo_classifier(member, progress=progress)
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(path)
    return TrainedClassifier.load(path)

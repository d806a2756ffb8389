"""A classifier packaged as a MONAI bundle (the model-zoo layout): ``configs/inference.json`` (or
``.yaml``) with a ``network_def``, ``models/model.pt`` with its weights, and optionally a ``preprocessing``
transform in the same config.

Our bundle's ``train.json`` and ``inference.json`` take such a folder as ``classifier_bundle``; the
DICOM service loads one with ``classifier: {bundle: PATH}``. The classifier is only read, never changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medcam_dicom.checkpoints import load_state_file

#: the config files looked for in ``configs/``, first found wins
CONFIG_NAMES = ("inference.json", "inference.yaml", "inference.yml", "train.json", "train.yaml")
#: the weight files looked for in ``models/``, first found wins
WEIGHT_NAMES = ("model.pt", "model.pth")


class ClassifierBundleError(ValueError):
    """A classifier bundle that cannot be used; the message names the folder or file and what is wrong."""


@dataclass
class ClassifierBundle:
    """The classifier of a MONAI bundle folder, loaded in eval mode.

    Attributes:
        root: the bundle folder.
        network: ``network_def`` with the weights of ``models/model.pt`` loaded (a plain state dict, or a
            dict holding one under ``"model"``, ``"state_dict"`` or ``"network"``, as zoo bundles and
            MONAI's ``CheckpointSaver`` write them).
        preprocessing: the config's ``preprocessing`` transform (dictionary transforms on key ``"image"``,
            loading included, as in the model zoo), or ``None`` when the config defines none.
        config_file, weights_file: the two files it was built from.
    """

    root: Path
    network: nn.Module
    preprocessing: Any
    config_file: Path
    weights_file: Path

    @classmethod
    def load(
        cls, root: str | Path, device: str | torch.device | None = None, with_preprocessing: bool = True
    ) -> ClassifierBundle:
        """Read the bundle at ``root`` (``with_preprocessing=False``: the network only); raises
        :class:`ClassifierBundleError` naming the missing or broken file."""
        root, config_file, parser = _bundle_config(root)
        if "network_def" not in parser.config:
            raise ClassifierBundleError(f"bundle config {config_file} has no 'network_def'")
        try:
            network = parser.get_parsed_content("network_def", instantiate=True)
        except Exception as error:  # noqa: BLE001 - whatever the user's network_def raises
            raise ClassifierBundleError(f"{config_file}: 'network_def' does not build: {error}") from error
        if not isinstance(network, nn.Module):
            raise ClassifierBundleError(f"{config_file}: 'network_def' is a {type(network).__name__}, not a network")
        weights = [root / "models" / name for name in WEIGHT_NAMES if (root / "models" / name).is_file()]
        if not weights:
            raise ClassifierBundleError(f"classifier bundle {root} has no models/model.pt")
        try:
            load_state_file(network, weights[0])
        except ValueError as error:
            raise ClassifierBundleError(str(error)) from error
        preprocessing = None
        if with_preprocessing:
            preprocessing = _preprocessing(config_file, parser)
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        return cls(root, network.eval().to(device), preprocessing, config_file, weights[0])

    @staticmethod
    def read_preprocessing(root: str | Path) -> Any:
        """The ``preprocessing`` of the bundle at ``root`` without loading its network (``None`` when its
        config defines none)."""
        _, config_file, parser = _bundle_config(root)
        return _preprocessing(config_file, parser)

    def input_transforms(self, default: Any) -> Any:
        """The classifier's own ``preprocessing`` when its config defines one, else ``default``."""
        return self.preprocessing if self.preprocessing is not None else default


def _bundle_config(root: str | Path) -> tuple[Path, Path, Any]:
    """The bundle folder, its config file and a ``ConfigParser`` of it with ``bundle_root`` set."""
    from monai.bundle import ConfigParser

    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise ClassifierBundleError(f"classifier bundle {root} is not a folder")
    configs = [root / "configs" / name for name in CONFIG_NAMES if (root / "configs" / name).is_file()]
    if not configs:
        raise ClassifierBundleError(f"classifier bundle {root} has no configs/inference.json (or .yaml)")
    parser = ConfigParser()
    try:
        parser.read_config(str(configs[0]))
    except Exception as error:  # noqa: BLE001 - JSON/YAML errors of several types
        raise ClassifierBundleError(f"{configs[0]} is not a readable bundle config: {error}") from error
    parser["bundle_root"] = str(root)
    return root, configs[0], parser


def _preprocessing(config_file: Path, parser: Any) -> Any:
    if "preprocessing" not in parser.config:
        return None
    try:
        return parser.get_parsed_content("preprocessing", instantiate=True)
    except Exception as error:  # noqa: BLE001 - whatever the user's transforms raise
        raise ClassifierBundleError(f"{config_file}: 'preprocessing' does not build: {error}") from error

"""The typed model configuration: only the fields that decide the network and its inference behaviour.

Built from the reference's YAML key names (``from_yaml``, ``from_dict``, ``from_namespace``) and validated by the
same rules and messages as every other config (``model.yaml_schema``); training and data keys are left out. It is the
only configuration the model accepts: YAML files and command-line flags become a ``ModelConfig`` where they come
in, and are validated there, once.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from trackon2.model.yaml_schema import ConfigError, config_from_mapping, load_config


@dataclass(frozen=True)
class ModelConfig:
    """Track-On2's architecture (sizes, layer counts, ViT) plus the inference settings M_i and delta_v."""

    input_size: tuple[int, int]  # (H, W) the frames are resized to; multiples of 32
    M: int  # memory slots per query during training (the checkpoint's temporal embedding has M + 1 rows)
    D: int  # feature width of the tracker
    K: int  # candidate patches re-ranked per query
    decoder_layer_num: int
    predicton_head_layer_num: int  # (sic) the reference's key name
    rerank_layer_num: int
    vit_backbone: str  # a key of model.vit.VITS
    vit_upsample_factor: float  # frames go to the ViT at this scale (DINOv3's 16-px patches match DINOv2's 14)
    M_i: int | None  # memory slots at inference (None: ``runtime.memory_size`` decides); t_embedding is resampled
    delta_v: float  # visibility threshold on the predicted probability
    grad_checkpoint: bool = False  # recompute the adapter's activations in the backward pass (saves memory)
    backbone_config: Mapping[str, Any] | None = None  # a Hugging Face config: random ViT instead of the hub's

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", tuple(self.input_size))
        config_from_mapping(self._yaml_values(), source="ModelConfig")

    def _yaml_values(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["input_size"] = list(self.input_size)
        return values

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(field.name for field in dataclasses.fields(cls))

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> "ModelConfig":
        """The model fields of a whole config already validated by ``load_config`` / ``config_from_mapping``
        (training and data keys are left out)."""
        return cls(**{name: getattr(args, name) for name in cls.field_names()})

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "model config") -> "ModelConfig":
        """Model keys only: anything else (a training key, a typo) is an error naming it."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: expected a mapping of keys to values, got {type(values).__name__}")
        foreign = sorted(set(values) - set(cls.field_names()))
        if foreign:
            config_from_mapping(values, source)  # a typo gets its "did you mean" message here
            raise ConfigError(f"{source}: {', '.join(map(repr, foreign))} are not model settings; expected only "
                              f"{', '.join(cls.field_names())}")
        return cls.from_namespace(config_from_mapping(values, source))

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> "ModelConfig":
        """The model fields of a YAML config file (which may also hold training and data keys)."""
        return cls.from_namespace(load_config(path, **overrides))

    def replace(self, **changes: Any) -> "ModelConfig":
        """A copy with some fields changed (validated); an unknown field name is an error naming it."""
        unknown = sorted(set(changes) - set(self.field_names()))
        if unknown:
            raise ConfigError(f"ModelConfig has no field(s) {', '.join(map(repr, unknown))}; expected some of "
                              f"{', '.join(self.field_names())}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The YAML keys and values (input_size as a list), as in the files under config/."""
        return self._yaml_values()

"""The verifier's typed configuration, with the reference's YAML key names (``config/train_verifier.yaml``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from trackon2.model.yaml_schema import ConfigError

QUERY_CRITICS = ("feature", "none")
STRIDE = 4  # the CNN's output stride
PYRAMID_LEVELS = 4  # the stride-4 map and its 2x, 4x and 8x average pools
LEVEL_POOLING = (1, 2, 4, 8)
POS_EMBED_DIM = 32  # width of the displacement embedding's sine/cosine part and of the critic embedding
HEADS = 4  # attention heads of the local encoder and of the decoder layers


@dataclass(frozen=True)
class VerifierConfig:
    """Architecture of the verifier; the defaults are those of the released ``verifier.pt``.

    The reference's predictor meant these defaults (its ``_default_args`` builds them but returns nothing).
    """

    verifier_input_size: tuple[int, int] = (384, 512)  # (H, W) frames are resized to; multiples of 32
    verifier_embedding_dim: int = 256  # D
    verifier_num_layers: int = 6  # decoder layers (attention over candidates, then over time)
    local_encoder_num_layers: int = 3  # deformable attention layers of the local encoder
    query_critic: str = "feature"  # "feature": a learned embedding marks query vs candidate descriptors; "none"
    T: int = 24  # frames of the learned time embedding (resampled linearly to a video's length)
    cnn_encoder_dim: int = 128  # output channels of the CNN encoder (CoTracker3's is 128)

    def __post_init__(self) -> None:
        object.__setattr__(self, "verifier_input_size", tuple(self.verifier_input_size))
        self._validate()

    def _validate(self) -> None:
        size = self.verifier_input_size
        if len(size) != 2 or any(not isinstance(v, int) or isinstance(v, bool) or v <= 0 or v % 32 for v in size):
            raise ConfigError(f"verifier config: verifier_input_size must be two positive multiples of 32 (H, W), "
                              f"got {list(size)}")
        for name in ("verifier_embedding_dim", "verifier_num_layers", "local_encoder_num_layers", "T",
                     "cnn_encoder_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"verifier config: {name} must be a positive integer, got {value!r}")
        if self.verifier_embedding_dim % HEADS:
            raise ConfigError(f"verifier config: verifier_embedding_dim must be a multiple of {HEADS} (attention "
                              f"heads), got {self.verifier_embedding_dim}")
        if self.cnn_encoder_dim % 4:
            raise ConfigError(f"verifier config: cnn_encoder_dim must be a multiple of 4, got {self.cnn_encoder_dim}")
        if self.query_critic not in QUERY_CRITICS:
            raise ConfigError(f"verifier config: query_critic is {self.query_critic!r}; expected one of "
                              f"{list(QUERY_CRITICS)}")

    @property
    def feature_size(self) -> tuple[int, int]:
        """(H', W') of the stride-4 feature map."""
        return self.verifier_input_size[0] // STRIDE, self.verifier_input_size[1] // STRIDE

    @property
    def spatial_shapes(self) -> list[tuple[int, int]]:
        """(H_l, W_l) of the four pyramid levels the local encoder attends to."""
        height, width = self.feature_size
        return [(height // pool, width // pool) for pool in LEVEL_POOLING]

    @property
    def local_descriptor_dim(self) -> int:
        """Width of a local descriptor: features, displacement embedding (+ 2 raw values), critic embedding."""
        critic = POS_EMBED_DIM if self.query_critic == "feature" else 0
        return self.verifier_embedding_dim + POS_EMBED_DIM + 2 + critic

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(field.name for field in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "verifier config",
                  ignore_unknown: bool = False) -> "VerifierConfig":
        """The verifier's keys of a mapping; other keys are an error unless ``ignore_unknown`` (a training config
        also holds data and optimiser keys)."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: expected a mapping of keys to values, got {type(values).__name__}")
        foreign = sorted(set(values) - set(cls.field_names()))
        if foreign and not ignore_unknown:
            raise ConfigError(f"{source}: {', '.join(map(repr, foreign))} are not verifier settings; expected some "
                              f"of {', '.join(cls.field_names())}")
        return cls(**{key: value for key, value in values.items() if key in cls.field_names()})

    @classmethod
    def from_yaml(cls, path: str | Path) -> "VerifierConfig":
        """The verifier's keys of a YAML file such as the reference's ``train_verifier.yaml``."""
        try:
            values = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"could not read verifier config {path}: {err}") from err
        return cls.from_dict(values or {}, source=str(path), ignore_unknown=True)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["verifier_input_size"] = list(self.verifier_input_size)
        return values

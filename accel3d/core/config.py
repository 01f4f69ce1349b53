"""One declaration per accelerator: a frozen, torch-free config dataclass.

An accelerator's name, its stage, its knobs, their defaults, their documentation and their checks are
written once, in a subclass of :class:`AcceleratorConfig`. Everything else reads them from there: the
accelerator class (``Config = ...``; its ``name`` and ``stage`` come from it), Hydra (the dataclass is
stored in its ConfigStore as ``schema/accelerator/<NAME>``, which ``configs/accelerator/<NAME>.yaml``
extends, so Hydra refuses a misspelled knob), ``accel3d list`` and the knob-name check of ``accel3d run``.
This is the pattern of diffusers' ``FirstBlockCacheConfig`` + ``apply_first_block_cache``.

Example::

    from dataclasses import dataclass
    from typing import ClassVar

    from accel3d.core.config import AcceleratorConfig, knob
    from accel3d.core.validate import check_int


    @dataclass(frozen=True)
    class CoarseConfig(AcceleratorConfig):
        NAME: ClassVar[str] = "coarse"
        STAGE: ClassVar[str] = "volume_decoder"
        _target_: str = "accel3d.coarse.CoarseDecoding"
        factor: int = knob(2, "decode at resolution / factor", check=check_int, low=1)


    CoarseConfig(factor=4)          # checked: CoarseConfig(factor=0) raises "factor: expected an integer >= 1, got 0"
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from accel3d.core.validate import ArgumentError, check_bool

Check = Callable[[str, Any], Any]  # (knob name, value) -> the value as stored, or an ArgumentError naming the knob

_CONFIGS: dict[str, type[AcceleratorConfig]] = {}
NOT_KNOBS = ("_target_", "enabled")  # fields every config has that are not the accelerator's own knobs


def knob(default: Any, doc: str, check: Callable[..., Any] | None = None, **limits: Any) -> Any:
    """A config field: its default, one line of documentation and its check (a ``core.validate`` function,
    called as ``check(name, value, **limits)``). Sequences are given as tuples (the config is frozen)."""
    bound = functools.partial(check, **limits) if check is not None and limits else check
    return dataclasses.field(default=default, metadata={"doc": doc, "check": bound})


def knob_from(config: type[AcceleratorConfig], name: str, **changes: Any) -> Any:
    """A field that reuses another config's knob: its default, documentation and check (a baseline keeps the
    knobs of the module it runs on without writing them again). ``changes`` may set another ``default`` or ``doc``.

    Example::

        warmup: int = knob_from(TokenCarvingConfig, "warmup")
    """
    known = config.__dataclass_fields__[name]
    default = changes.pop("default", known.default)
    metadata = {**known.metadata, **changes}
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class AcceleratorConfig:
    """Base of every accelerator's config. Subclasses state ``NAME`` and ``STAGE`` once, as class variables,
    set ``_target_`` to the accelerator class's import path and declare their knobs with :func:`knob`.

    Defining a subclass with a ``NAME`` registers it (:func:`accelerator_configs`); two configs may not share
    a name. Constructing one checks every knob (and :meth:`check_knobs` the knobs together), so a config object is
    always valid. ``enabled`` is read by stacks only: false leaves the accelerator out.
    """

    NAME: ClassVar[str] = ""
    STAGE: ClassVar[str] = ""

    _target_: str = ""
    enabled: bool = knob(True, "false leaves it out of a stack (on/off ablations)", check_bool)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("NAME")
        if not name:
            return
        known = _CONFIGS.get(name)
        if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"accelerator name '{name}' is already declared by {known.__module__}.{known.__qualname__}")
        _CONFIGS[name] = cls

    def __post_init__(self) -> None:
        # `enabled` is read where a config becomes an accelerator in a stack (build_stack leaves a disabled one out)
        for f in dataclasses.fields(self):
            check = f.metadata.get("check")
            if check is not None:
                object.__setattr__(self, f.name, check(f.name, getattr(self, f.name)))
        self.check_knobs()

    def check_knobs(self) -> None:
        """Checks that involve several knobs (override; raise :class:`ArgumentError` naming a knob)."""

    @classmethod
    def check_knob(cls, name: str, value: Any) -> Any:
        """One knob checked by its declared check, for a building block that takes it alone
        (``GridHashTable(num_buckets=...)``), so that its limits stay written once."""
        check = cls.__dataclass_fields__[name].metadata.get("check")
        return check(name, value) if check is not None else value

    @classmethod
    def knob_fields(cls) -> list[dataclasses.Field]:
        """The accelerator's own knobs (not ``_target_`` or ``enabled``), in declaration order."""
        return [f for f in dataclasses.fields(cls) if f.name not in NOT_KNOBS]

    @classmethod
    def knob_names(cls) -> list[str]:
        return [f.name for f in cls.knob_fields()]

    @classmethod
    def from_knobs(cls, knobs: Mapping[str, Any], where: str = "") -> AcceleratorConfig:
        """The config from keyword knobs; an unknown one is refused naming the valid ones."""
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in knobs if k not in valid)
        if unknown:
            raise ArgumentError(f"{where or cls.NAME}: unknown knob(s) {unknown}; its knobs are {sorted(cls.knob_names())} (and enabled)")
        return cls(**knobs)

    def knobs(self) -> dict[str, Any]:
        """``{knob: value}`` of the accelerator's own knobs."""
        return {f.name: getattr(self, f.name) for f in self.knob_fields()}

    def replace(self, **changes: Any) -> AcceleratorConfig:
        """A copy with some knobs changed (checked again)."""
        return dataclasses.replace(self, **changes)


def accelerator_configs() -> dict[str, type[AcceleratorConfig]]:
    """Every config class defined so far, by name. ``accel3d.jobs.configs.discover`` imports every
    strategy's ``config`` module first, so that the strategies are all here."""
    return dict(_CONFIGS)


def resolve_config(cls: type[AcceleratorConfig], config: AcceleratorConfig | None, knobs: Mapping[str, Any]) -> AcceleratorConfig:
    """An accelerator's config from what its constructor was given: a config object or keyword knobs."""
    if config is None:
        return cls.from_knobs(knobs)
    if knobs:
        raise ArgumentError(f"{cls.NAME}: pass either a config or knobs, not both (got knobs {sorted(knobs)})")
    if not isinstance(config, cls):
        raise ArgumentError(f"config: expected a {cls.__name__} for '{cls.NAME}', got {type(config).__name__}")
    return config

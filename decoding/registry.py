"""Method registry and the command-line method spec parser.

    --methods fixed,threshold:tau=0.7,threshold:tau=0.5,factor=1.0,fixed:steps=16

Methods are separated by commas; `name:key=value` starts a method, and a bare `key=value` (or
`:key=value`) adds a setting to the method before it. A method's label (the `method` field of
every result) is the spec as written, so several settings of one method can share a run.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass

from .base import GenConfig, Method
from .block_causal import APPEND_MODES
from .cache import CACHE_MODES
from .methods.dico import DiCoMethod
from .methods.eb import EBMethod
from .methods.edit import EditMethod
from .methods.fixed import FixedMethod
from .methods.klass import KLASSMethod
from .methods.localleap import LocalLeapMethod
from .methods.prr.method import PRRMethod
from .methods.slowfast import SlowFastMethod
from .methods.threshold import ThresholdMethod
from .methods.wino import WinoMethod

METHODS: dict[str, type[Method]] = {
    FixedMethod.name: FixedMethod,
    ThresholdMethod.name: ThresholdMethod,
    SlowFastMethod.name: SlowFastMethod,
    LocalLeapMethod.name: LocalLeapMethod,
    EBMethod.name: EBMethod,
    PRRMethod.name: PRRMethod,
    WinoMethod.name: WinoMethod,
    EditMethod.name: EditMethod,
    KLASSMethod.name: KLASSMethod,
    DiCoMethod.name: DiCoMethod,
}


@dataclass(frozen=True)
class MethodSpec:
    name: str
    settings: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        if not self.settings:
            return self.name
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in self.settings)


def parse_methods(text: str) -> list[MethodSpec]:
    specs: list[tuple[str, list]] = []
    for token in filter(None, (t.strip() for t in text.split(","))):
        head, _, rest = token.partition(":") if "=" not in token.split(":", 1)[0] else ("", "", token)
        if head:
            specs.append((head, []))
        elif not specs:
            raise ValueError(f"method setting {token!r} comes before any method name; write e.g. threshold:{token}")
        for kv in filter(None, rest.split(":")):
            key, eq, value = kv.partition("=")
            if not eq or not key:
                raise ValueError(f"bad method setting {kv!r} in {token!r}; write key=value, e.g. threshold:tau=0.8")
            specs[-1][1].append((key.strip(), value.strip()))
    if not specs:
        raise ValueError("no methods given; e.g. --methods fixed,threshold")
    out = [MethodSpec(n, tuple(s)) for n, s in specs]
    labels = [s.label for s in out]
    dupes = {l for l in labels if labels.count(l) > 1}
    if dupes:
        raise ValueError(f"method {sorted(dupes)[0]!r} is listed twice")
    return out


def _convert(key: str, value: str, typ, method: str):
    """Convert a command-line string to the config field's type."""
    args = typing.get_args(typ)
    if typing.get_origin(typ) in (typing.Union, types.UnionType):
        if value.lower() == "none" and type(None) in args:
            return None
        typ = next(a for a in args if a is not type(None))
    try:
        if typ is bool:
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return value.lower() in ("true", "1", "yes")
        return typ(value)
    except ValueError:
        raise ValueError(f"{method}: {key}={value!r} is not a valid {typ.__name__}") from None


def build_method(spec: MethodSpec, gen: GenConfig) -> Method:
    if spec.name not in METHODS:
        raise ValueError(f"unknown method {spec.name!r}; available: {', '.join(sorted(METHODS))}")
    cls = METHODS[spec.name]
    hints = typing.get_type_hints(cls.Config)
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    kwargs, cache, append = {}, "none", "fold"
    for key, value in spec.settings:
        if key == "cache":  # common to every method; see decoding/cache.py for why it is not a Config field
            if value not in CACHE_MODES:
                raise ValueError(f"{spec.name}: cache={value!r}; choose one of {', '.join(CACHE_MODES)}")
            cache = value
            continue
        if key == "append":  # block-causal models only: how finished blocks reach the cache (decoding/block_causal.py)
            if value not in APPEND_MODES:
                raise ValueError(f"{spec.name}: append={value!r}; choose one of {', '.join(APPEND_MODES)}")
            append = value
            continue
        if key not in fields:
            raise ValueError(f"{spec.name}: unknown setting {key!r}; valid settings: "
                             f"{', '.join(sorted(fields | {'cache', 'append'}))}")
        kwargs[key] = _convert(key, value, hints[key], spec.name)
    method = cls(cls.Config(**kwargs), gen)
    method.cache = cache
    method.block_append = append
    if cache != "none" and method.cfg_scale > 0:
        raise ValueError(f"{spec.name}: cache={cache} cannot be combined with cfg_scale > 0 "
                         f"(the unconditional copy has no cache); use cache=none")
    if cache != "none" and method.reads().truncated:
        raise ValueError(f"{spec.name}: cache={cache} cannot be combined with this method's truncated "
                         f"forwards (Plan.extent); use cache=none")
    if cache != "none" and method.reads().verify:
        raise ValueError(f"{spec.name}: cache={cache} cannot be combined with its verification forward "
                         f"(the authors' code has no cache); use cache=none")
    return method

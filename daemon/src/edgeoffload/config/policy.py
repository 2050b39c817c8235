"""The policy (`/etc/edgeoffload/policy.yaml`): what to optimise, deadlines, what may be offloaded.

A policy is validated on its own: model and target names are free-form here. `policy_warnings` lists
the names a given daemon config does not know; the daemon logs them (they are not errors).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..decide.types import NETWORK_PROFILES, IdleMode, NetworkProfile, Objective
from .schema import (
    Check, Ctx, apply, choice, describe, list_of, map_of, number, optional, record, spec, string, version,
)
from .yamlsrc import INVALID, Document, parse_yaml, read_document

if TYPE_CHECKING:
    from .daemon import DaemonConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class _CustomNetwork:
    one_way_latency_ms: float = spec(number(ge=0))
    upload_bytes_per_s: float = spec(number(gt=0))
    download_bytes_per_s: float = spec(number(gt=0))
    upload_nj_per_byte: float = spec(number(ge=0))
    download_nj_per_byte: float = spec(number(ge=0))


def _network(v: Any, path: str, ctx: Ctx) -> Any:
    """A named link profile (ethernet, radio, 5g) or a mapping describing a custom one."""
    if isinstance(v, dict):
        custom = record(_CustomNetwork)(v, path, ctx)
        return custom if custom is INVALID else NetworkProfile(**dataclasses.asdict(custom), name="custom")
    if isinstance(v, str) and v in NETWORK_PROFILES:
        return NETWORK_PROFILES[v]
    names = ", ".join(NETWORK_PROFILES)
    keys = ", ".join(f.name for f in dataclasses.fields(_CustomNetwork))
    return ctx.report(path, f"must be one of: {names}, or a mapping with {keys}; got {describe(v)}")


def _set_of(check: Check) -> Check:
    """A list check whose result is a frozenset: membership is what the decision core asks."""

    def check_set(v: Any, path: str, ctx: Ctx) -> Any:
        items = check(v, path, ctx)
        return items if items is INVALID else frozenset(items)

    return check_set


@dataclass(frozen=True, kw_only=True)
class ModelPolicy:
    deadline_ms: float | None = spec(optional(number(gt=0)), None)  # null or absent: default_deadline_ms


@dataclass(frozen=True, kw_only=True)
class Policy:
    version: int = spec(version(1))
    revision: str | None = spec(optional(string()), None)
    objective: Objective = spec(choice([o.value for o in Objective], Objective))
    idle_mode: IdleMode = spec(choice([m.value for m in IdleMode], IdleMode), IdleMode.HIGH)
    network_profile: NetworkProfile = spec(_network, NETWORK_PROFILES["ethernet"])
    default_deadline_ms: float | None = spec(optional(number(gt=0)), None)
    models: dict[str, ModelPolicy] = spec(map_of(record(ModelPolicy), key=string()), factory=dict)
    never_offload: frozenset[str] = spec(_set_of(list_of(string(), unique=True)), frozenset())
    allowed_targets: frozenset[str] | None = spec(optional(_set_of(list_of(string(), min_len=1, unique=True))), None)
    digest: str = ""  # first 12 hex digits of the sha256 of the source text
    source: str = ""  # the file (or other source) it was read from
    text: str = field(default="", repr=False, compare=False)  # the YAML it was read from (GetPolicy answers it)

    @property
    def network(self) -> NetworkProfile:
        return self.network_profile

    def deadline_for(self, model: str) -> float | None:
        """The model's own deadline if it has one, else the default deadline (None: no deadline)."""
        entry = self.models.get(model)
        if entry is not None and entry.deadline_ms is not None:
            return entry.deadline_ms
        return self.default_deadline_ms


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file; raises ConfigError listing every problem in the file."""
    return build_policy(read_document(path))


def parse_policy_text(text: str, source_name: str) -> Policy:
    """Validate policy YAML text (e.g. received over D-Bus); problems name `source_name` as the file."""
    return build_policy(parse_yaml(text, source_name))


def build_policy(doc: Document) -> Policy:
    ctx = Ctx(doc.source, doc.lines)
    ctx.problems.extend(doc.problems)
    policy = apply(record(Policy), doc.value, "", ctx)
    ctx.raise_if_problems()
    log.debug("%s: policy ok (digest %s)", doc.source, doc.digest)
    return dataclasses.replace(policy, digest=doc.digest, source=doc.source, text=doc.text)


def policy_warnings(policy: Policy, config: DaemonConfig) -> list[str]:
    """Names in the policy that the daemon config does not know: harmless, but probably a typo."""
    models = {m.name for m in config.models}
    targets = {t.name for t in config.targets} | {e.name for e in config.endpoints}
    found = [(f"models.{name}", name, "model") for name in policy.models if name not in models]
    found += [("never_offload", name, "model") for name in sorted(policy.never_offload) if name not in models]
    found += [
        ("allowed_targets", name, "target or endpoint")
        for name in sorted(policy.allowed_targets or ()) if name not in targets
    ]
    return [
        f"{policy.source}: {path}: no {what} named {name!r} in the daemon config; this entry has no effect"
        for path, name, what in found
    ]

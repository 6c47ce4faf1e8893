"""The rollout spec: one YAML document (camelCase), also the Prefect form, validated before anything runs.

* :mod:`.model` — the pydantic models (:class:`RolloutSpec` and its sections) and derived values;
* :mod:`.rules` — the value rules, each saying what is wrong and how to fix it;
* :mod:`.messages` — pydantic's errors told as spec problems;
* :mod:`.overrides` — Helm-style ``--set``;
* :mod:`.load` — reading the YAML file safely, then validating.
"""

from tasks.scope import (
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    PRIMARY_UDN_LABEL,
    RUN_LABEL,
    SPEC_HASH_ANNOTATION,
    VM_INDEX_LABEL,
)
from tasks.spec.errors import SpecError, SpecProblem
from tasks.spec.load import load_spec, parse_yaml
from tasks.spec.messages import problems_from_validation_error, validate_spec
from tasks.spec.model import (
    MAX_TOTAL_VMS,
    RUN_ID_MAX,
    ApiSpec,
    ChurnSpec,
    ConnectivitySpec,
    FanoutSpec,
    LockSpec,
    NamespacesSpec,
    NetworkSpec,
    RolloutSpec,
    SubnetSpec,
    VMRef,
    VMsSpec,
)
from tasks.spec.overrides import apply_overrides

__all__ = [
    "MANAGED_BY_LABEL",
    "MANAGED_BY_VALUE",
    "MAX_TOTAL_VMS",
    "PRIMARY_UDN_LABEL",
    "RUN_ID_MAX",
    "RUN_LABEL",
    "SPEC_HASH_ANNOTATION",
    "VM_INDEX_LABEL",
    "ApiSpec",
    "ChurnSpec",
    "ConnectivitySpec",
    "FanoutSpec",
    "LockSpec",
    "NamespacesSpec",
    "NetworkSpec",
    "RolloutSpec",
    "SpecError",
    "SpecProblem",
    "SubnetSpec",
    "VMRef",
    "VMsSpec",
    "apply_overrides",
    "load_spec",
    "parse_yaml",
    "problems_from_validation_error",
    "validate_spec",
]

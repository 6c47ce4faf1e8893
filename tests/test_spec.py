"""RolloutSpec: defaults, every rejection's message, --set overrides, loading, JSON schema."""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.spec import (
    MANAGED_BY_LABEL,
    RUN_LABEL,
    RolloutSpec,
    SpecError,
    VMRef,
    apply_overrides,
    load_spec,
    validate_spec,
)

SPECS = Path(__file__).resolve().parent.parent / "specs"

BASE = {
    "runId": "t1",
    "network": {"name": "net-a", "topology": "Layer2", "subnets": [{"cidr": "10.200.0.0/16"}]},
}

# The example of DESIGN.md's "The rollout spec" section, as a user would write it.
DESIGN_EXAMPLE = """
runId: seed-l3
network:
  name: udn-cluster-primary-l3
  topology: Layer3
  subnets:
    - cidr: 192.168.0.0/16
      hostSubnet: 24
  mtu: 1400
namespaces:
  names: [namespace-7, namespace-8]
vms:
  perNamespace: 2
  namePrefix: rhel8-vm
  image: quay.io/containerdisks/fedora:latest
  cpu: 1
  memory: 1Gi
  credentialsSecret: ""
fanout: {qps: 50, burst: 100, maxInFlight: 64, readyTimeoutSeconds: 900}
connectivity: {mode: auto, peersPerVm: 8, pingCount: 3, pingTimeoutSeconds: 2, maxSessions: 32, isolationCanary: true}
churn: {fraction: 0.25, maxParallel: 0, timeoutSeconds: 900}
"""


def spec_with(*overrides: str, base: dict | None = None) -> RolloutSpec:
    data = copy.deepcopy(BASE if base is None else base)
    apply_overrides(data, overrides)
    return validate_spec(data)


def problems_of(*overrides: str, base: dict | None = None) -> list:
    with pytest.raises(SpecError) as info:
        spec_with(*overrides, base=base)
    return info.value.problems


# --------------------------------------------------------------------------------------------------
# defaults


def test_only_network_is_required_and_defaults_match_design():
    spec = validate_spec({"network": BASE["network"]})
    assert spec.vms.per_namespace == 2
    assert spec.vms.name_prefix == "rhel8-vm"
    assert spec.vms.image == "quay.io/containerdisks/fedora:latest"
    assert (spec.vms.cpu, spec.vms.memory, spec.vms.run_strategy) == (1, "1Gi", "Always")
    assert spec.vms.credentials_secret == ""
    assert spec.api.model_dump(by_alias=True) == {"qps": 50.0, "burst": 100, "maxInFlight": 64}
    assert spec.fanout.model_dump(by_alias=True) == {"readyTimeoutSeconds": 900, "batchSize": 0}
    c = spec.connectivity
    assert (c.mode, c.peers_per_vm, c.ping_count, c.ping_timeout_seconds, c.max_sessions) == ("auto", 8, 3, 2, 32)
    assert c.isolation_canary is True
    assert (spec.churn.fraction, spec.churn.max_parallel, spec.churn.timeout_seconds) == (0.25, 0, 900)
    assert spec.churn.choice() == ("fraction", 0.25)
    assert spec.network.persistent_ips is True  # Layer2 default
    assert spec.network.mtu is None
    assert spec.namespaces.count == 2


def test_design_example_loads():
    spec = validate_spec(yaml.safe_load(DESIGN_EXAMPLE))
    assert spec.run_id == "seed-l3"
    assert spec.network.topology == "Layer3"
    assert spec.network.subnets[0].host_subnet == 24
    assert spec.network.persistent_ips is None
    assert spec.namespace_names() == ["namespace-7", "namespace-8"]
    assert spec.total_vms() == 4


def test_layer3_host_subnet_defaults_per_family():
    spec = spec_with(
        "network.topology=Layer3", "network.subnets[0].cidr=10.0.0.0/16", "network.subnets[1].cidr=fd00:10::/48"
    )
    assert [s.host_subnet for s in spec.network.subnets] == [24, 64]
    assert spec.has_ipv6()


def test_namespaces_prefix_count_and_default_prefix_is_run_id():
    spec = spec_with("namespaces.prefix=team", "namespaces.count=3", "namespaces.start=7")
    assert spec.namespace_names() == ["team-7", "team-8", "team-9"]
    assert spec_with().namespace_names() == ["t1-1", "t1-2"]


def test_vm_names_refs_and_totals_are_stable():
    spec = spec_with("namespaces.names={a,b}", "vms.perNamespace=3", "vms.namePrefix=vm")
    assert spec.vm_names() == ["vm-1", "vm-2", "vm-3"]
    assert spec.vm_refs()[0] == VMRef("a", "vm-1", 1)
    assert spec.vm_refs()[-1] == VMRef("b", "vm-3", 3)
    assert spec.total_vms() == 6
    # growing perNamespace keeps existing names (no zero padding that would rename vm-1 to vm-01)
    bigger = spec_with("namespaces.names={a,b}", "vms.perNamespace=12", "vms.namePrefix=vm")
    assert bigger.vm_names()[:3] == spec.vm_names()


def test_labels_secret_name_and_spec_hash():
    spec = spec_with()
    assert spec.labels() == {MANAGED_BY_LABEL: "udn-rollout", RUN_LABEL: "t1"}
    assert spec.credentials_secret_name() == "udn-rollout-t1-credentials"
    assert spec.generates_credentials()
    own = spec_with("vms.credentialsSecret=my-creds")
    assert own.credentials_secret_name() == "my-creds" and not own.generates_credentials()
    assert re.fullmatch(r"[0-9a-f]{12}", spec.spec_hash())
    assert spec.spec_hash() == spec_with("vms.perNamespace=9", "api.qps=3").spec_hash()
    assert spec.spec_hash() != spec_with("vms.image=quay.io/containerdisks/fedora:41").spec_hash()
    assert spec.spec_hash() != spec_with("vms.memory=2Gi").spec_hash()


def test_churn_choice_and_fanout_batch_size():
    assert spec_with("churn.count=5").churn.choice() == ("count", 5)
    assert spec_with("churn.count=5").churn.fraction is None
    assert spec_with("churn.drainNode=worker-1").churn.choice() == ("drainNode", "worker-1")
    assert spec_with().fanout.batch_size_for(10_000) == 313
    assert spec_with("fanout.batchSize=100").fanout.batch_size_for(10_000) == 100


def test_snake_case_names_also_accepted_for_python_callers():
    spec = RolloutSpec(run_id="py-1", network={"name": "n", "subnets": [{"cidr": "10.1.0.0/16"}]})
    assert spec.run_id == "py-1"
    assert RolloutSpec.model_validate({"run_id": "py-2", "network": BASE["network"]}).run_id == "py-2"


def test_form_style_input_with_every_default_present_is_accepted():
    """The Prefect form submits defaults for every field; names must still combine with them."""
    data = copy.deepcopy(BASE)
    data["namespaces"] = {"names": ["a"], "prefix": "", "count": None, "start": 1}
    data["churn"] = {"fraction": None, "count": 4, "selector": None, "drainNode": None}
    spec = validate_spec(data)
    assert spec.namespace_names() == ["a"] and spec.churn.choice() == ("count", 4)


# --------------------------------------------------------------------------------------------------
# run id


def test_run_id_generated_when_absent():
    spec = validate_spec({"network": BASE["network"]})
    assert re.fullmatch(r"net-a-\d{8}-\d{6}", spec.run_id)
    assert len(spec.run_id) <= 40


def test_generate_run_id_is_deterministic_given_time_and_fits():
    now = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert RolloutSpec.generate_run_id("udn-cluster-primary-l3", now) == "udn-cluster-primary-l3-20250102-030405"
    long = RolloutSpec.generate_run_id("a" * 63, now)
    assert len(long) <= 40 and long.endswith("-20250102-030405")
    assert RolloutSpec.generate_run_id("net.example.com", now).startswith("net-example-com-")
    assert RolloutSpec.generate_run_id("---", now) == "run-20250102-030405"


def test_given_run_id_is_kept_and_cli_run_id_wins(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(BASE))
    assert load_spec(path).run_id == "t1"
    assert load_spec(path, run_id="other").run_id == "other"
    assert load_spec(path, ["runId=from-set"]).run_id == "from-set"


# --------------------------------------------------------------------------------------------------
# bad specs: each names the field as written and says how to fix it

L3 = "network.topology=Layer3"
BAD_SPECS = [
    ("host-bits", ["network.subnets[0].cidr=10.200.0.1/16"], "network.subnets[0].cidr", "10.200.0.0/16"),
    ("not-a-cidr", ["network.subnets[0].cidr=ten.0.0.0/8"], "network.subnets[0].cidr", "write it like"),
    ("no-prefix", ["network.subnets[0].cidr=10.200.0.0"], "network.subnets[0].cidr", "10.200.0.0/16"),
    (
        "hostsubnet-33",
        [L3, "network.subnets[0].cidr=10.0.0.0/16", "network.subnets[0].hostSubnet=33"],
        "network.subnets[0].hostSubnet",
        "use a value between 17 and 29 for 10.0.0.0/16",
    ),
    (
        "hostsubnet-not-longer",
        [L3, "network.subnets[0].cidr=10.0.0.0/16", "network.subnets[0].hostSubnet=16"],
        "network.subnets[0].hostSubnet",
        "between 17 and 29",
    ),
    (
        "hostsubnet-over-crd-max",
        [L3, "network.subnets[0].hostSubnet=200"],
        "network.subnets[0].hostSubnet",
        "between 1 and 127",
    ),
    ("hostsubnet-layer2", ["network.subnets[0].hostSubnet=24"], "network.subnets[0].hostSubnet", "remove it"),
    (
        "hostsubnet-default-does-not-fit",
        [L3, "network.subnets[0].cidr=10.0.0.0/26"],
        "network.subnets[0].hostSubnet",
        "between 27 and 29",
    ),
    ("layer3-too-small", [L3, "network.subnets[0].cidr=10.0.0.0/30"], "network.subnets[0].cidr", "/28 or shorter"),
    (
        "ipv6-hostsubnet",
        [L3, "network.subnets[1].cidr=fd00::/48", "network.subnets[1].hostSubnet=56"],
        "network.subnets[1].hostSubnet",
        "set 64",
    ),
    (
        "two-ipv4",
        ["network.subnets[1].cidr=10.201.0.0/16"],
        "network.subnets[1].cidr",
        "one IPv4 and at most one IPv6",
    ),
    (
        "three-subnets",
        ["network.subnets[1].cidr=fd00::/64", "network.subnets[2].cidr=fd01::/64"],
        "network.subnets",
        "between 1 and 2",
    ),
    ("mtu-low", ["network.mtu=500"], "network.mtu", "between 576 and 65536"),
    ("mtu-ipv6", ["network.mtu=1200", "network.subnets[1].cidr=fd00::/64"], "network.mtu", "1280 or more"),
    ("persistent-l3", [L3, "network.persistentIPs=true"], "network.persistentIPs", "topology: Layer2"),
    ("topology-case", ["network.topology=layer2"], "network.topology", "did you mean 'Layer2'"),
    ("topology-bad", ["network.topology=Layer4"], "network.topology", "use one of Layer3, Layer2"),
    ("network-name", ["network.name=Bad_Name"], "network.name", "'bad-name'"),
    ("network-name-long", ["network.name=" + "a" * 64], "network.name", "at most 63"),
    ("run-id", ["runId=Run_1"], "runId", "'run-1'"),
    ("run-id-long", ["runId=" + "r" * 41], "runId", "at most 40"),
    (
        "names-and-count",
        ["namespaces.names={a,b}", "namespaces.count=3"],
        "namespaces.count",
        "give either names, or prefix + count",
    ),
    ("duplicate-ns", ["namespaces.names={a,a}"], "namespaces.names[1]", "remove the duplicate"),
    ("system-ns", ["namespaces.names={ok,kube-system}"], "namespaces.names[1]", "choose another name"),
    ("ns-name", ["namespaces.names={Team_A}"], "namespaces.names[0]", "'team-a'"),
    ("ns-count-0", ["namespaces.count=0"], "namespaces.count", "between 1 and 10000"),
    ("ns-prefix", ["namespaces.prefix=Team_A"], "namespaces.prefix", "'team-a'"),
    ("vms-negative", ["vms.perNamespace=-1"], "vms.perNamespace", "between 0 and 10000"),
    ("cpu-zero", ["vms.cpu=0"], "vms.cpu", "between 1 and 64"),
    ("cpu-text", ["vms.cpu=two"], "vms.cpu", "not a whole number"),
    ("memory-small", ["vms.memory=32Mi"], "vms.memory", "at least 64Mi"),
    ("memory-unit", ["vms.memory=1GB"], "vms.memory", "did you mean 1Gi"),
    ("image", ["vms.image=Quay.io/Fedora Latest"], "vms.image", "quay.io/containerdisks/fedora:latest"),
    ("run-strategy", ["vms.runStrategy=Running"], "vms.runStrategy", "use one of Always, Halted"),
    ("inline-password", ["vms.password=hunter2"], "vms.password", "credentialsSecret"),
    ("secret-name", ["vms.credentialsSecret=My_Secret"], "vms.credentialsSecret", "'my-secret'"),
    ("node-selector", ["vms.nodeSelector.bad key!=x"], None, None),  # rejected by the --set path syntax
    ("qps-zero", ["api.qps=0"], "api.qps", "greater than 0"),
    ("burst-zero", ["api.burst=0"], "api.burst", "between 1 and 100000"),
    ("mode", ["connectivity.mode=mesh"], "connectivity.mode", "use one of auto, full, sampled, off"),
    ("typo-key", ["connectivity.mod=full"], "connectivity.mod", "did you mean 'mode'"),
    ("fraction", ["churn.fraction=1.5"], "churn.fraction", "between 0 and 1"),
    ("churn-two", ["churn.fraction=0.5", "churn.count=3"], "churn.count", "keep one"),
    ("selector", ["churn.selector=app in web"], "churn.selector", "key in (a,b)"),
    ("drain-node", ["churn.drainNode=Node_1"], "churn.drainNode", "'node-1'"),
    (
        "l2-too-small",
        ["network.subnets[0].cidr=10.0.0.0/28", "vms.perNamespace=10"],
        "network.subnets[0].cidr",
        "use a larger subnet (e.g. /27)",
    ),
    ("l2-no-address", ["network.subnets[0].cidr=10.0.0.0/30", "vms.perNamespace=0"], "network.subnets[0].cidr", "/29"),
    (
        "join-overlap",
        ["network.joinSubnets={10.200.5.0/24}"],
        "network.joinSubnets[0]",
        "outside the network's subnets",
    ),
    ("misplaced-cidr", ["network.cidr=10.0.0.0/16"], "network.cidr", "network.subnets[0].cidr"),
    (
        "too-many-vms",
        ["namespaces.count=10000", "vms.perNamespace=11"],
        "vms.perNamespace",
        "lower perNamespace or the namespace count",
    ),
    ("top-level-typo", ["netwrk.name=x"], "netwrk", "did you mean 'network'"),
]


@pytest.mark.parametrize(("overrides", "path", "fix"), [c[1:] for c in BAD_SPECS], ids=[c[0] for c in BAD_SPECS])
def test_bad_spec_names_field_and_fix(overrides, path, fix):
    problems = problems_of(*overrides)
    if path is None:
        assert problems
        return
    matching = [p for p in problems if p.path == path]
    assert matching, f"no problem at {path}: {[str(p) for p in problems]}"
    assert any(fix in p.message for p in matching), [str(p) for p in matching]


def test_bad_spec_catalogue_is_big_enough():
    assert len(BAD_SPECS) >= 25


def test_node_selector_invalid_key_or_value():
    base = copy.deepcopy(BASE)
    base["vms"] = {"nodeSelector": {"bad key!": "x"}}
    with pytest.raises(SpecError) as info:
        validate_spec(base)
    [problem] = info.value.problems
    assert problem.path == "vms.nodeSelector.bad key!" and "label key" in problem.message
    base["vms"] = {"nodeSelector": {"zone": "a b"}}
    with pytest.raises(SpecError, match="label value 'a b' is invalid"):
        validate_spec(base)


def test_text_field_given_a_number_says_to_quote_it():
    data = copy.deepcopy(BASE)
    data["runId"] = 123
    with pytest.raises(SpecError) as info:
        validate_spec(data)
    assert info.value.problems[0].path == "runId"
    assert "put it in quotes" in info.value.problems[0].message


def test_missing_network_is_reported_with_fix():
    with pytest.raises(SpecError) as info:
        load_spec(None)
    [problem] = info.value.problems
    assert problem.path == "network" and "add a network section" in problem.message


def test_all_problems_reported_at_once_and_str_lists_them():
    with pytest.raises(SpecError) as info:
        spec_with("vms.cpu=0", "api.qps=-1", "churn.fraction=2")
    assert [p.path for p in info.value.problems] == ["vms.cpu", "api.qps", "churn.fraction"]
    text = str(info.value)
    assert "3 problems" in text and "vms.cpu: cpu 0 is out of range" in text


@settings(max_examples=60, deadline=None)
@given(st.ip_addresses(v=4), st.integers(min_value=8, max_value=28))
def test_host_bits_error_shows_the_masked_network(address, prefix):
    net = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    cidr = f"{address}/{prefix}"
    if net.network_address == address:
        assert spec_with(f"network.subnets[0].cidr={cidr}", "vms.perNamespace=0").network.subnets[0].cidr == cidr
    else:
        [problem] = problems_of(f"network.subnets[0].cidr={cidr}", "vms.perNamespace=0")
        assert problem.path == "network.subnets[0].cidr"
        assert f"use the masked network {net}" in problem.message


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=8, max_value=28), st.integers(min_value=1, max_value=127))
def test_layer3_host_subnet_range_property(prefix, host):
    net = ipaddress.ip_network(f"10.0.0.0/{prefix}", strict=False)
    overrides = [L3, f"network.subnets[0].cidr={net}", f"network.subnets[0].hostSubnet={host}"]
    if prefix < host <= 29:
        assert spec_with(*overrides).network.subnets[0].host_subnet == host
    else:
        [problem] = problems_of(*overrides)
        assert problem.path == "network.subnets[0].hostSubnet"
        assert f"between {prefix + 1} and 29" in problem.message


# --------------------------------------------------------------------------------------------------
# overrides


def test_override_paths_indexes_lists_and_types():
    data = {}
    apply_overrides(
        data,
        [
            "network.name=n",
            "network.subnets[0].cidr=10.1.0.0/16",
            "network.subnets[1].cidr=fd00::/64",
            "namespaces.names={a, b}",
            "vms.perNamespace=100",
            "network.persistentIPs=false",
            "api.qps=2.5",
        ],
    )
    assert data == {
        "network": {
            "name": "n",
            "subnets": [{"cidr": "10.1.0.0/16"}, {"cidr": "fd00::/64"}],
            "persistentIPs": False,
        },
        "namespaces": {"names": ["a", "b"]},
        "vms": {"perNamespace": 100},
        "api": {"qps": 2.5},
    }


def test_override_text_fields_stay_text():
    data = {}
    apply_overrides(data, ["runId=007", "namespaces.names={1,true}", "vms.namePrefix=no", "vms.nodeSelector.zone=1"])
    assert data["runId"] == "007"
    assert data["namespaces"]["names"] == ["1", "true"]
    assert data["vms"] == {"namePrefix": "no", "nodeSelector": {"zone": "1"}}


def test_override_comma_separated_and_escaped_comma():
    data = {}
    apply_overrides(data, ["vms.cpu=2,vms.memory=2Gi", r"churn.selector=a=b\,c=d"])
    assert data == {"vms": {"cpu": 2, "memory": "2Gi"}, "churn": {"selector": "a=b,c=d"}}


def test_override_null_removes_key_and_replaces_existing():
    data = copy.deepcopy(BASE)
    apply_overrides(data, ["runId=null", "network.subnets[0].cidr=10.9.0.0/16"])
    assert "runId" not in data
    assert data["network"]["subnets"] == [{"cidr": "10.9.0.0/16"}]


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("vms.perNamespace", "has no '='"),
        ("vms..cpu=1", "is not valid"),
        ("network.subnets[5].cidr=10.0.0.0/8", "past the end"),
        ("runId.x=1", "is not a mapping"),
        ("network.name[0]=x", "is not a list"),
    ],
)
def test_bad_overrides(override, fragment):
    data = copy.deepcopy(BASE)
    with pytest.raises(SpecError) as info:
        apply_overrides(data, [override])
    assert fragment in str(info.value)
    assert info.value.source == "--set"


# --------------------------------------------------------------------------------------------------
# loading files


def test_load_seed_specs():
    l3 = load_spec(SPECS / "seed-l3.yaml")
    assert (l3.run_id, l3.network.name, l3.network.topology) == ("seed-l3", "udn-cluster-primary-l3", "Layer3")
    assert l3.network.subnets[0].cidr == "192.168.0.0/16" and l3.network.subnets[0].host_subnet == 24
    assert l3.namespace_names() == ["namespace-7", "namespace-8"]
    assert l3.vm_names() == ["rhel8-vm-1"]
    l2 = load_spec(SPECS / "seed-l2.yaml")
    assert (l2.run_id, l2.network.name, l2.network.topology) == ("seed-l2", "udn-cluster-primary-l2", "Layer2")
    assert l2.network.persistent_ips is True
    assert not set(l2.namespace_names()) & set(l3.namespace_names())  # both can run side by side
    scale = load_spec(SPECS / "scale-l2.yaml")
    assert scale.total_vms() >= 1000


def test_load_with_overrides(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(BASE))
    spec = load_spec(str(path), ["vms.perNamespace=5"])
    assert spec.vms.per_namespace == 5


def test_missing_file_directory_and_non_mapping(tmp_path):
    with pytest.raises(SpecError, match="does not exist: check the path"):
        load_spec(tmp_path / "nope.yaml")
    with pytest.raises(SpecError, match="is a directory"):
        load_spec(tmp_path)
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="must be a mapping"):
        load_spec(tmp_path / "list.yaml")
    (tmp_path / "two.yaml").write_text("a: 1\n---\nb: 2\n")
    with pytest.raises(SpecError, match="2 YAML documents"):
        load_spec(tmp_path / "two.yaml")
    (tmp_path / "empty.yaml").write_text("# nothing\n")
    with pytest.raises(SpecError, match="network is required"):
        load_spec(tmp_path / "empty.yaml")


def test_yaml_syntax_error_shows_line_and_column(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("network:\n  name: x\n  subnets: [a\nvms: {}\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert re.search(r"line \d+, column \d+", message)
    assert str(path) in message


# --------------------------------------------------------------------------------------------------
# round trip, determinism, JSON schema


def test_yaml_round_trip_is_exact():
    for name in ("seed-l3.yaml", "seed-l2.yaml", "scale-l2.yaml"):
        spec = load_spec(SPECS / name)
        text = yaml.safe_dump(spec.to_dict(), sort_keys=False)
        again = validate_spec(yaml.safe_load(text))
        assert again == spec
        assert yaml.safe_dump(again.to_dict(), sort_keys=False) == text


def test_json_round_trip_and_determinism():
    spec = spec_with("network.subnets[1].cidr=fd00::/64", "churn.selector=app=web")
    assert RolloutSpec.model_validate_json(spec.model_dump_json(by_alias=True)) == spec
    assert spec_with().spec_hash() == spec_with().spec_hash()
    assert spec_with().to_dict() == spec_with().to_dict()


def test_fanout_rate_keys_still_accepted_with_a_deprecation_notice():
    spec = spec_with("fanout.qps=20", "fanout.burst=40", "fanout.maxInFlight=8")
    assert (spec.api.qps, spec.api.burst, spec.api.max_in_flight) == (20.0, 40, 8)
    assert spec.notices and "api.qps" in spec.notices[0] and "deprecated" in spec.notices[0]
    assert not spec_with("api.qps=20").notices


def test_set_errors_name_the_set_argument_not_the_file():
    with pytest.raises(SpecError) as info:
        load_spec(SPECS / "seed-l2.yaml", ["vms.perNamespace=-3"])
    text = str(info.value)
    assert "--set vms.perNamespace=-3" in text and "seed-l2.yaml" not in text


def test_duplicate_keys_are_an_error_naming_both_lines(tmp_path):
    f = tmp_path / "dup.yaml"
    f.write_text("network:\n  name: a\n  subnets: [10.0.0.0/16]\nvms:\n  perNamespace: 1\nvms:\n  perNamespace: 2\n")
    with pytest.raises(SpecError) as info:
        load_spec(f)
    assert "'vms' is given twice, on line 4 and line 6" in str(info.value)


def test_alias_bomb_is_rejected_at_once(tmp_path):
    import time

    levels = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        levels.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    f = tmp_path / "bomb.yaml"
    f.write_text("\n".join(levels) + "\n")
    started = time.monotonic()
    with pytest.raises(SpecError) as info:
        load_spec(f)
    assert time.monotonic() - started < 1.0  # an unbounded expansion would take minutes
    assert "alias" in str(info.value)


def test_json_schema_is_a_self_explanatory_form():
    schema = RolloutSpec.model_json_schema()
    json.dumps(schema)
    assert schema["required"] == ["network"]
    assert "runId" in schema["properties"]
    defs = schema["$defs"]
    network = defs["NetworkSpec"]["properties"]
    assert network["topology"]["enum"] == ["Layer3", "Layer2"]
    assert "persistentIPs" in network
    assert defs["VMsSpec"]["properties"]["cpu"]["minimum"] == 1
    assert defs["VMsSpec"]["properties"]["cpu"]["maximum"] == 64
    assert not {"password", "userData"} & set(defs["VMsSpec"]["properties"])
    for model in [schema, *defs.values()]:
        for name, prop in model["properties"].items():
            assert prop.get("title"), name
            assert prop.get("description"), name


def test_override_escaped_dots_in_keys():
    data = {}
    apply_overrides(data, [r"vms.nodeSelector.node-role\.kubernetes\.io/worker=", r"vms.nodeSelector.zone=a"])
    assert data == {"vms": {"nodeSelector": {"node-role.kubernetes.io/worker": "", "zone": "a"}}}


def test_subnet_shorthand_as_plain_cidr_string():
    data = copy.deepcopy(BASE)
    data["network"]["subnets"] = ["10.7.0.0/16", "fd00:7::/64"]
    spec = validate_spec(data)
    assert [s.cidr for s in spec.network.subnets] == ["10.7.0.0/16", "fd00:7::/64"]
    data["network"]["subnets"] = ["10.7.0.1/16"]
    with pytest.raises(SpecError, match=r"network\.subnets\[0\]\.cidr: .*10\.7\.0\.0/16"):
        validate_spec(data)

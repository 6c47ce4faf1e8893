"""Named cluster options: where upstream leaves an outcome open (it depends on the guest image or on
what the administrator did inside the guest), the simulator models the most likely outcome by
default and offers the alternative under a name.

Set them with ``ClusterConfig(options={...})``, ``SimCluster(options={...})`` or
``sim serve --option KEY=VALUE``. Every option, its values and why its default was chosen are listed
in ``simcluster/FIDELITY.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

GUEST_AGENT = "guestAgent"
LAYER3_GUEST_ADDRESSING = "layer3GuestAddressing"


@dataclass(frozen=True)
class Option:
    name: str
    default: str
    choices: tuple[str, ...]
    summary: str


OPTIONS: dict[str, Option] = {
    o.name: o
    for o in (
        Option(
            GUEST_AGENT,
            "present",
            ("present", "absent"),
            "whether the guest runs qemu-guest-agent (the Fedora container disk of the VM template does); "
            "its report replaces the pod's address in the VMI status when the guest holds no address of "
            "that family",
        ),
        Option(
            LAYER3_GUEST_ADDRESSING,
            "dhcp",
            ("dhcp", "static"),
            "how a guest on a Layer3 primary network configures eth0: dhcp (the template's cloud-init "
            "networkData; nothing answers, so no IPv4) or static (at each boot the guest configures the "
            "address its VMI reports, the node subnet's prefix and .1 as gateway)",
        ),
    )
}


def resolve(options: Mapping[str, str] | None) -> dict[str, str]:
    """Every option with its value (defaults filled in); unknown names or values raise ValueError."""
    given = dict(options or {})
    unknown = sorted(set(given) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown cluster option(s) {unknown}; known: {sorted(OPTIONS)}")
    out: dict[str, str] = {}
    for name, opt in OPTIONS.items():
        value = str(given.get(name, opt.default))
        if value not in opt.choices:
            raise ValueError(f"cluster option {name}={value!r}: choose one of {list(opt.choices)}")
        out[name] = value
    return out


def parse_assignments(items: list[str]) -> dict[str, str]:
    """``["KEY=VALUE", ...]`` (the ``--option`` flag) to a checked dict."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--option {item!r}: write KEY=VALUE, e.g. {LAYER3_GUEST_ADDRESSING}=static")
        out[key.strip()] = value.strip()
    resolve(out)
    return out

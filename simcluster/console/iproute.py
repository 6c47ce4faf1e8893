"""``ip`` (iproute2 6.x) for the emulated guest: addr, link, route and neigh, as text or JSON."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field

from .net import GuestInterface, link_local, ovn_mac

FOREVER = 4294967295


@dataclass(slots=True)
class Neighbour:
    ip: str
    state: str  # REACHABLE, STALE, FAILED
    lladdr: str | None = None


@dataclass(slots=True)
class IpView:
    """Everything ``ip`` prints, captured at the moment the command runs."""

    iface: GuestInterface | None
    mac: str  # the NIC's MAC even while there is no address
    ifname: str = "eth0"
    mtu: int = 1400
    lease_left: int = 3600
    neighbours: list[Neighbour] = field(default_factory=list)
    gateway: str | None = None
    uid: int = 1000


@dataclass(slots=True)
class IpResult:
    status: int = 0
    out: str = ""
    err: str = ""


@dataclass(slots=True)
class _Opts:
    family: int = 0  # 0 any, 4, 6
    json: bool = False
    pretty: bool = False
    brief: bool = False
    oneline: bool = False
    details: bool = False


_OBJECTS = {
    "address": ("a", "ad", "add", "addr", "addre", "addres", "address"),
    "link": ("l", "li", "lin", "link"),
    "route": ("r", "ro", "rou", "rout", "route"),
    "neigh": ("n", "ne", "nei", "neig", "neigh", "neighbor", "neighbour"),
}
_SHOW = ("show", "list", "lst", "sh", "ls", "l", "s")


def ip_command(argv: list[str], view: IpView) -> IpResult:
    opts = _Opts()
    args = list(argv[1:])
    while args and args[0].startswith("-") and len(args[0]) > 1:
        opt = args.pop(0).lstrip("-")
        if opt == "4":
            opts.family = 4
        elif opt == "6":
            opts.family = 6
        elif opt in ("j", "json"):
            opts.json = True
        elif opt in ("p", "pretty"):
            opts.pretty = True
        elif opt in ("br", "brief"):
            opts.brief = True
        elif opt in ("o", "oneline"):
            opts.oneline = True
        elif opt in ("d", "details", "s", "stats", "statistics", "c", "color", "n", "N"):
            opts.details = opts.details or opt.startswith("d")
        elif opt in ("h", "help"):
            return IpResult(255, err=_USAGE)
        else:
            return IpResult(255, err=f'Option "-{opt}" is unknown, try "ip -help".\n')
    if not args:
        return IpResult(255, err=_USAGE)
    obj_word = args.pop(0)
    obj = next((name for name, forms in _OBJECTS.items() if obj_word in forms), None)
    if obj is None:
        if obj_word == "help":
            return IpResult(255, err=_USAGE)
        return IpResult(1, err=f'Object "{obj_word}" is unknown, try "ip help".\n')
    sub = args.pop(0) if args else "show"
    if obj == "route" and sub == "get":
        return _route_get(args, view)
    if obj == "neigh" and sub == "get":
        return _neigh_get(args, view, opts)
    if sub not in _SHOW:
        if sub in ("add", "del", "delete", "change", "replace", "flush", "set"):
            return IpResult(2, err="RTNETLINK answers: Operation not permitted\n")
        if sub == "help":
            return IpResult(255, err=_USAGE)
        return IpResult(255, err=f'Command "{sub}" is unknown, try "ip {obj_word} help".\n')
    dev = None
    while args:
        word = args.pop(0)
        if word == "dev" and args:
            dev = args.pop(0)
        elif word in ("up", "scope", "to", "primary"):
            if word in ("scope", "to") and args:
                args.pop(0)
        else:
            dev = word
    links = _links(view)
    if dev is not None and obj in ("address", "link", "neigh"):
        if dev not in (link["ifname"] for link in links):
            return IpResult(1, err=f'Device "{dev}" does not exist.\n')
        links = [link for link in links if link["ifname"] == dev]
    if obj == "address":
        return _show_addr(links, view, opts)
    if obj == "link":
        return _show_link(links, opts)
    if obj == "route":
        return _show_route(view, opts)
    return _show_neigh(view, opts, dev)


def _dump(data: object, opts: _Opts) -> str:
    if opts.pretty:
        return json.dumps(data, indent=4) + "\n"
    return json.dumps(data, separators=(",", ":")) + "\n"


def _links(view: IpView) -> list[dict]:
    lo_addrs: list[dict] = [
        {
            "family": "inet",
            "local": "127.0.0.1",
            "prefixlen": 8,
            "scope": "host",
            "label": "lo",
            "valid_life_time": FOREVER,
            "preferred_life_time": FOREVER,
        },
        {
            "family": "inet6",
            "local": "::1",
            "prefixlen": 128,
            "scope": "host",
            "noprefixroute": True,
            "valid_life_time": FOREVER,
            "preferred_life_time": FOREVER,
        },
    ]
    eth_addrs: list[dict] = []
    if view.iface is not None:
        for addr in view.iface.ipv4():
            entry: dict = {"family": "inet", "local": str(addr.ip), "prefixlen": addr.network.prefixlen}
            if addr.network.prefixlen < 31:
                entry["broadcast"] = str(addr.network.broadcast_address)
            lifetime = view.lease_left if view.iface.dynamic else FOREVER
            entry["scope"] = "global"
            if view.iface.dynamic:
                entry["dynamic"] = True
            entry.update(
                {
                    "noprefixroute": True,
                    "label": view.ifname,
                    "valid_life_time": lifetime,
                    "preferred_life_time": lifetime,
                }
            )
            eth_addrs.append(entry)
        for addr6 in view.iface.ipv6():
            lifetime = view.lease_left if view.iface.dynamic else FOREVER
            entry6: dict = {
                "family": "inet6",
                "local": str(addr6.ip),
                "prefixlen": addr6.network.prefixlen,
                "scope": "global",
            }
            if view.iface.dynamic:
                entry6["dynamic"] = True
            entry6.update({"noprefixroute": True, "valid_life_time": lifetime, "preferred_life_time": lifetime})
            eth_addrs.append(entry6)
    eth_addrs.append(
        {
            "family": "inet6",
            "local": str(link_local(view.mac)),
            "prefixlen": 64,
            "scope": "link",
            "noprefixroute": True,
            "valid_life_time": FOREVER,
            "preferred_life_time": FOREVER,
        }
    )
    return [
        {
            "ifindex": 1,
            "ifname": "lo",
            "flags": ["LOOPBACK", "UP", "LOWER_UP"],
            "mtu": 65536,
            "qdisc": "noqueue",
            "operstate": "UNKNOWN",
            "group": "default",
            "txqlen": 1000,
            "link_type": "loopback",
            "address": "00:00:00:00:00:00",
            "broadcast": "00:00:00:00:00:00",
            "addr_info": lo_addrs,
        },
        {
            "ifindex": 2,
            "ifname": view.ifname,
            "flags": ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"],
            "mtu": view.mtu,
            "qdisc": "fq_codel",
            "operstate": "UP",
            "group": "default",
            "txqlen": 1000,
            "link_type": "ether",
            "address": view.mac,
            "broadcast": "ff:ff:ff:ff:ff:ff",
            "addr_info": eth_addrs,
        },
    ]


def _family_ok(entry: dict, family: int) -> bool:
    return family == 0 or (family == 4) == (entry["family"] == "inet")


def _link_header(link: dict, mode: bool = False) -> str:
    flags = ",".join(link["flags"])
    mode_part = " mode DEFAULT" if mode else ""
    return (
        f"{link['ifindex']}: {link['ifname']}: <{flags}> mtu {link['mtu']} qdisc {link['qdisc']} "
        f"state {link['operstate']}{mode_part} group {link['group']} qlen {link['txqlen']}\n"
    )


def _link_line(link: dict) -> str:
    return f"    link/{link['link_type']} {link['address']} brd {link['broadcast']}\n"


def _lft(value: int) -> str:
    return "forever" if value == FOREVER else f"{value}sec"


def _addr_lines(entry: dict) -> str:
    family = entry["family"]
    text = f"    {family} {entry['local']}/{entry['prefixlen']} "
    if "broadcast" in entry:
        text += f"brd {entry['broadcast']} "
    text += f"scope {entry['scope']} "
    if entry.get("dynamic"):
        text += "dynamic "
    if entry.get("noprefixroute"):
        text += "noprefixroute "
    if "label" in entry:
        text += entry["label"]
    text += f"\n       valid_lft {_lft(entry['valid_life_time'])} preferred_lft {_lft(entry['preferred_life_time'])}\n"
    return text


def _show_addr(links: list[dict], view: IpView, opts: _Opts) -> IpResult:
    shown = []
    for link in links:
        addrs = [a for a in link["addr_info"] if _family_ok(a, opts.family)]
        if opts.family and not addrs:
            continue
        shown.append((link, addrs))
    if opts.json:
        data = []
        for link, addrs in shown:
            entry = {k: v for k, v in link.items() if k != "addr_info"}
            if opts.family:
                for key in ("link_type", "address", "broadcast"):
                    entry.pop(key, None)
            entry["addr_info"] = addrs
            data.append(entry)
        return IpResult(out=_dump(data, opts))
    out: list[str] = []
    for link, addrs in shown:
        if opts.brief:
            cells = "".join(f"{a['local']}/{a['prefixlen']} " for a in addrs)
            out.append(f"{link['ifname']:<16} {link['operstate']:<14} {cells}\n")
            continue
        if opts.oneline:
            for a in addrs:
                body = _addr_lines(a).strip().replace("\n       ", "\\       ")
                out.append(f"{link['ifindex']}: {link['ifname']}    {body}\n")
            continue
        out.append(_link_header(link))
        if not opts.family:
            out.append(_link_line(link))
        out.extend(_addr_lines(a) for a in addrs)
    return IpResult(out="".join(out))


def _show_link(links: list[dict], opts: _Opts) -> IpResult:
    if opts.json:
        data = []
        for link in links:
            entry = {k: v for k, v in link.items() if k != "addr_info"}
            entry = {**{k: entry[k] for k in ("ifindex", "ifname", "flags", "mtu", "qdisc", "operstate")}}
            entry.update(
                {
                    "linkmode": "DEFAULT",
                    "group": link["group"],
                    "txqlen": link["txqlen"],
                    "link_type": link["link_type"],
                    "address": link["address"],
                    "broadcast": link["broadcast"],
                }
            )
            data.append(entry)
        return IpResult(out=_dump(data, opts))
    if opts.brief:
        return IpResult(
            out="".join(
                f"{link['ifname']:<16} {link['operstate']:<14} {link['address']} <{','.join(link['flags'])}> \n"
                for link in links
            )
        )
    return IpResult(out="".join(_link_header(link, mode=True) + _link_line(link) for link in links))


def _routes(view: IpView) -> list[dict]:
    if view.iface is None:
        return []
    addrs = view.iface.ipv4()
    if not addrs:
        return []
    src = str(addrs[0].ip)
    routes: list[dict] = []
    if view.gateway:
        default: dict = {"dst": "default", "gateway": view.gateway, "dev": view.ifname}
        if view.iface.dynamic:
            default.update({"protocol": "dhcp", "prefsrc": src})
        else:
            default["protocol"] = "static"
        default.update({"metric": 100, "flags": []})
        routes.append(default)
    for addr in addrs:
        routes.append(
            {
                "dst": str(addr.network),
                "dev": view.ifname,
                "protocol": "kernel",
                "scope": "link",
                "prefsrc": str(addr.ip),
                "metric": 100,
                "flags": [],
            }
        )
    return routes


def _show_route(view: IpView, opts: _Opts) -> IpResult:
    if opts.family == 6:
        text = f"fe80::/64 dev {view.ifname} proto kernel metric 1024 pref medium\n"
        if opts.json:
            data = [
                {
                    "dst": "fe80::/64",
                    "dev": view.ifname,
                    "protocol": "kernel",
                    "metric": 1024,
                    "flags": [],
                    "pref": "medium",
                }
            ]
            return IpResult(out=_dump(data, opts))
        return IpResult(out=text)
    routes = _routes(view)
    if opts.json:
        return IpResult(out=_dump(routes, opts))
    lines = []
    for r in routes:
        if r["dst"] == "default" and "prefsrc" in r:
            lines.append(
                f"default via {r['gateway']} dev {r['dev']} proto {r['protocol']} src {r['prefsrc']} metric 100 \n"
            )
        elif r["dst"] == "default":
            lines.append(f"default via {r['gateway']} dev {r['dev']} proto {r['protocol']} metric 100 \n")
        else:
            lines.append(f"{r['dst']} dev {r['dev']} proto kernel scope link src {r['prefsrc']} metric 100 \n")
    return IpResult(out="".join(lines))


def _route_get(args: list[str], view: IpView) -> IpResult:
    target = next((a for a in args if a not in ("to", "from", "dev", "oif")), None)
    if target is None:
        return IpResult(255, err="need at least a destination address\n")
    try:
        dst = ipaddress.ip_address(target)
    except ValueError:
        return IpResult(1, err=f'Error: any valid prefix is expected rather than "{target}".\n')
    if dst.is_loopback:
        return IpResult(out=f"local {dst} dev lo src 127.0.0.1 uid {view.uid} \n    cache <local> \n")
    addrs = view.iface.ipv4() if view.iface else []
    for addr in addrs:
        if dst == addr.ip:
            return IpResult(out=f"local {dst} dev lo src {addr.ip} uid {view.uid} \n    cache <local> \n")
        if dst in addr.network:
            return IpResult(out=f"{dst} dev {view.ifname} src {addr.ip} uid {view.uid} \n    cache \n")
    if addrs and view.gateway:
        return IpResult(
            out=f"{dst} via {view.gateway} dev {view.ifname} src {addrs[0].ip} uid {view.uid} \n    cache \n"
        )
    return IpResult(2, err="RTNETLINK answers: Network is unreachable\n")


def _neigh_get(args: list[str], view: IpView, opts: _Opts) -> IpResult:
    """``ip neigh get ADDR dev DEV``: one entry of the neighbour table (a lookup, no resolution)."""
    words = list(args)
    dev = None
    if "dev" in words:
        i = words.index("dev")
        dev = words[i + 1] if i + 1 < len(words) else None
        del words[i : i + 2]
    target = next((w for w in words if w not in ("to", "proxy")), None)
    if target is None or dev is None:
        return IpResult(255, err="Device and destination are required arguments.\n")
    if dev != view.ifname:
        return IpResult(1, err=f'Cannot find device "{dev}"\n')
    n = next((x for x in view.neighbours if x.ip == target), None)
    if n is None:
        return IpResult(2, err="RTNETLINK answers: No such file or directory\n")
    entry: dict = {"dst": n.ip, "dev": view.ifname}
    if n.state != "FAILED":
        entry["lladdr"] = n.lladdr or ovn_mac(n.ip)
    entry["state"] = [n.state]
    if opts.json:
        return IpResult(out=_dump([entry], opts))
    ll = f" lladdr {entry['lladdr']}" if "lladdr" in entry else ""
    return IpResult(out=f"{n.ip} dev {view.ifname}{ll} {n.state}\n")


def _show_neigh(view: IpView, opts: _Opts, dev: str | None) -> IpResult:
    entries = []
    if dev in (None, view.ifname) and opts.family != 6:
        for n in view.neighbours:
            entry: dict = {"dst": n.ip, "dev": view.ifname}
            if n.state != "FAILED":
                entry["lladdr"] = n.lladdr or ovn_mac(n.ip)
            entry["state"] = [n.state]
            entries.append(entry)
    if opts.json:
        return IpResult(out=_dump(entries, opts))
    lines = []
    for e in entries:
        ll = f" lladdr {e['lladdr']}" if "lladdr" in e else ""
        lines.append(f"{e['dst']} dev {e['dev']}{ll} {e['state'][0]}\n")
    return IpResult(out="".join(lines))


_USAGE = """Usage: ip [ OPTIONS ] OBJECT { COMMAND | help }
where  OBJECT := { address | link | neighbour | route }
       OPTIONS := { -4 | -6 | -j[son] | -p[retty] | -br[ief] | -o[neline] | -d[etails] }
"""

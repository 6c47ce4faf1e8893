"""Serial consoles: the `virtualmachineinstances/{name}/console` WebSocket and the guest behind it.

Plays the console path of KubeVirt: virt-api validates the VMI (404 when it does not exist, 409 when
it failed, 400 until it runs), upgrades to a WebSocket speaking `plain.kubevirt.io`, and relays raw
serial bytes to virt-handler, which holds at most one session per VMI: a new connection drops the
previous one without a close frame, as closing the underlying socket does. Input arrives in binary
frames (anything else is skipped, as KubeVirt's reader skips it) and output leaves in binary frames.

Behind the port runs the emulated Fedora guest of `simcluster.console`, one per VMI uid, created on
the first connection and kept while the VMI runs, so a login survives reconnects as on a real serial
port. Its credentials come from the VMI's cloud-init; its network view is read live from the IPAM
controller: eth0 as the guest configured it at boot (no IPv4 on a Layer3 primary network, where
nothing answers DHCP), and a ping goes through only when the guest's MAC and address match its
current port (port security) and is answered only by a running VM whose guest holds the target
address on the same network, with RTTs from a same-node/cross-node profile and the packet-loss knob
applied per packet. During a live migration's switch-over window (the migration controller's
``paused``) the migrating guest neither sends nor answers; a ping is judged by the time the guest
scheduled it (``echo_at``), so a slow event loop does not shift it out of the window.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from typing import Any

import yaml
from aiohttp import WSMsgType, web

from simcluster import errors, kinds
from simcluster.console import GuestConfig, GuestInterface, GuestTerminal
from simcluster.controllers.base import Controller, Runtime
from simcluster.errors import ApiError
from simcluster.kinds import ResourceType
from simcluster.profiles import profile
from simcluster.store import Event
from simcluster.vmnet import GuestNic, admitted, answers

log = logging.getLogger("simcluster.console")

PROTOCOL = "plain.kubevirt.io"
BUFFER_SIZE = 10240  # KubeVirt's WebSocket buffers
MAX_PENDING = 1 << 20  # guest output held for a slow client before the oldest is dropped
DEFAULT_USER = "fedora"
LOCKED = "\x00"  # no password from cloud-init: the account cannot log in on the console
MTU = 1400

# RTT profile in milliseconds (uniform ranges)
RTT_SELF = (0.02, 0.045)
RTT_GATEWAY = (0.05, 0.25)
RTT_SAME_NODE = (0.05, 0.3)
RTT_CROSS_NODE = (0.3, 1.5)


def hostname_of(vmi: dict[str, Any]) -> str:
    """What cloud-init's local-hostname becomes: spec.hostname, else the name's first DNS label (≤63)."""
    explicit = (vmi.get("spec") or {}).get("hostname")
    if explicit:
        return str(explicit)
    return vmi["metadata"]["name"].split(".")[0][:63]


def time_scale_for(profile_name: str) -> float:
    """Guest-side sleeps (ping intervals, login delays) shrink with the cluster's latency profile."""
    try:
        return profile(profile_name).console_time_scale
    except ValueError:
        return 1.0


def parse_cloud_config(text: str) -> tuple[str, str | None]:
    """(default user, its password or None) from a #cloud-config user-data document."""
    user, password = DEFAULT_USER, None
    if not text.lstrip().startswith("#cloud-config"):
        return user, password
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return user, password
    if not isinstance(doc, dict):
        return user, password
    u = doc.get("user")
    if isinstance(u, str) and u:
        user = u
    elif isinstance(u, dict) and u.get("name"):
        user = str(u["name"])
    if doc.get("password") is not None:
        password = str(doc["password"])
    chpasswd = doc.get("chpasswd")
    if isinstance(chpasswd, dict):
        entries: list[tuple[str, str]] = []
        old = chpasswd.get("list")
        if isinstance(old, str):
            old = old.splitlines()
        if isinstance(old, list):
            for line in old:
                name, sep, pw = str(line).strip().partition(":")
                if sep:
                    entries.append((name, pw))
        users = chpasswd.get("users")
        if isinstance(users, list):
            for entry in users:
                if (
                    isinstance(entry, dict)
                    and entry.get("name")
                    and entry.get("password") is not None
                    and str(entry.get("type", "text")) == "text"
                ):
                    entries.append((str(entry["name"]), str(entry["password"])))
        for name, pw in entries:
            if name == user and pw.upper() not in ("R", "RANDOM"):
                password = pw
    return user, password


class VmiNetwork:
    """The guest's network, read live: its eth0 is what it configured at boot (``GuestNic``, kept across
    live migrations); what gets through is decided by the VM's current port (the launcher pod's
    address and MAC) and port security, so a guest whose MAC or address no longer matches its port
    reaches nothing and is reached by nothing."""

    __slots__ = ("_cache", "_ctl", "name", "namespace")

    def __init__(self, ctl: ConsoleController, namespace: str, name: str) -> None:
        self._ctl = ctl
        self.namespace = namespace
        self.name = name
        self._cache: tuple[Any, GuestInterface] | None = None

    def _att(self) -> Any:
        ipam = self._ctl.ipam
        return ipam.attachment(self.namespace, self.name) if ipam is not None else None

    def _nic(self) -> GuestNic | None:
        ipam = self._ctl.ipam
        return ipam.guest(self.namespace, self.name) if ipam is not None else None

    def interface(self) -> GuestInterface | None:
        nic = self._nic()
        if nic is None:
            return None
        if self._cache is not None and self._cache[0] is nic:
            return self._cache[1]
        iface = GuestInterface(
            mac=nic.mac,
            addresses=tuple(nic.addresses),
            mtu=nic.mtu,
            gateway=nic.gateway,
            dynamic=nic.method == "dhcp",
        )
        self._cache = (nic, iface)
        return iface

    def default_gateway(self) -> str | None:
        nic = self._nic()
        return nic.gateway if nic is not None else None

    def _sender(self) -> tuple[Any, GuestNic] | None:
        """The port and NIC when the guest's frames pass port security (its MAC and address match)."""
        att, nic = self._att(), self._nic()
        if att is None or nic is None or not nic.addresses:
            return None
        src = next((ip for ip in nic.ips if ":" not in ip), nic.ips[0])
        if not admitted(att.mac, att.ips, nic, src):
            return None
        return att, nic

    def _peer(self, att: Any, target: str) -> Any:
        """The port of the running VM whose guest answers at `target` on this network, or None."""
        ipam = self._ctl.ipam
        held = ipam.holder(att.network, target)
        if held is None:
            return None
        peer = ipam.attachment(*held)
        if peer is None or peer.network != att.network or target not in peer.ips:
            return None  # e.g. an address reserved for a migration target that has not switched yet
        vmi = self._ctl.store.try_get(kinds.VMI, held[0], held[1])
        if vmi is None or (vmi.get("status") or {}).get("phase") != "Running":
            return None
        nic = ipam.guest(*held)
        if nic is None or not answers(peer.mac, peer.ips, nic, target):
            return None  # the guest does not hold the address, or its MAC is not the port's
        return peer

    def _paused(self, namespace: str, name: str, at: float | None) -> bool:
        """The VM is in a live migration's switch-over window at loop time `at` (paused, port moving)."""
        mig = self._ctl.rt.controllers.get("migration")
        paused = getattr(mig, "paused", None)
        return bool(paused(namespace, name, at)) if paused is not None else False

    def echo(self, target: str) -> float | None:
        return self.echo_at(target, None)

    def echo_at(self, target: str, at: float | None) -> float | None:
        """One echo sent at loop time `at` (when the guest's ping scheduled it; default now): a paused
        guest neither sends nor answers, whenever the event loop gets round to the send."""
        rng = self._ctl.rt.rng
        nic = self._nic()
        if nic is not None and target in nic.ips:
            return rng.uniform(*RTT_SELF)
        if self._paused(self.namespace, self.name, at):
            return None
        sender = self._sender()
        if sender is None:
            return None  # dropped by port security on the way out
        att, _ = sender
        if target in att.gateways:
            return rng.uniform(*RTT_GATEWAY)
        peer = self._peer(att, target)
        if peer is None:
            return None
        held = self._ctl.ipam.holder(att.network, target)
        if held is not None and self._paused(held[0], held[1], at):
            return None
        faults = self._ctl.rt.faults
        if faults.chance(faults.loss_between(att.node, peer.node)):
            return None
        return rng.uniform(*(RTT_SAME_NODE if peer.node == att.node else RTT_CROSS_NODE))

    def resolves(self, target: str) -> bool:
        """ARP: OVN answers for the gateway and any address a logical port holds, if the request passes
        port security."""
        nic = self._nic()
        if nic is not None and target in nic.ips:
            return True
        sender = self._sender()
        if sender is None:
            return False
        att, _ = sender
        if target in att.gateways:
            return True
        return self._ctl.ipam.holder(att.network, target) is not None


class _Session:
    """One WebSocket client attached to a guest's serial port; output is sent by one pump task."""

    __slots__ = ("buf", "closed", "transport", "wake", "ws")

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.BaseTransport | None) -> None:
        self.ws = ws
        self.transport = transport
        self.buf = bytearray()
        self.wake = asyncio.Event()
        self.closed = False

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        self.buf += data
        if len(self.buf) > MAX_PENDING:
            del self.buf[: len(self.buf) - MAX_PENDING]
        self.wake.set()

    async def pump(self) -> None:
        try:
            while not self.closed:
                await self.wake.wait()
                self.wake.clear()
                while self.buf and not self.closed:
                    chunk = bytes(self.buf[:BUFFER_SIZE])
                    del self.buf[:BUFFER_SIZE]
                    await self.ws.send_bytes(chunk)
        except (ConnectionError, RuntimeError):
            self.abort()

    def abort(self) -> None:
        """Drop the connection without a close frame (the client sees an abnormal closure, 1006)."""
        if self.closed:
            return
        self.closed = True
        self.buf.clear()
        self.wake.set()
        if self.transport is not None and not self.transport.is_closing():
            abort = getattr(self.transport, "abort", None)
            if abort is not None:
                abort()
            else:
                self.transport.close()


class _Guest:
    __slots__ = ("name", "namespace", "node", "session", "term")

    def __init__(self, term: GuestTerminal, namespace: str, name: str, node: str) -> None:
        self.term = term
        self.namespace = namespace
        self.name = name
        self.node = node
        self.session: _Session | None = None


class ConsoleController(Controller):
    name = "console"
    resources = (kinds.VMI,)

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self.guests: dict[str, _Guest] = {}  # VMI uid → its guest

    @property
    def ipam(self) -> Any:
        return self.rt.controllers.get("ipam")

    def start(self) -> None:
        self.rt.api.register_subresource(kinds.SUBRESOURCE_GROUP, kinds.VMI.plural, "console", self._serve)
        super().start()

    def stop(self) -> None:
        for uid in list(self.guests):
            self._shutdown(uid)
        super().stop()

    # ---- VMI lifecycle -------------------------------------------------------------------
    def handle(self, ev: Event) -> None:
        md = ev.obj["metadata"]
        guest = self.guests.get(md.get("uid", ""))
        if guest is None:
            return
        status = ev.obj.get("status") or {}
        if ev.type == "DELETED" or status.get("phase") != "Running":
            self._shutdown(md["uid"])
            return
        node = status.get("nodeName") or ""
        if node and node != guest.node:
            # a migration completed: the source launcher's serial socket closes under the session
            guest.node = node
            if guest.session is not None:
                guest.session.abort()

    def _shutdown(self, uid: str) -> None:
        guest = self.guests.pop(uid, None)
        if guest is None:
            return
        if guest.session is not None:
            guest.session.abort()
            guest.session = None
        guest.term.close()

    def _guest(self, vmi: dict[str, Any]) -> _Guest:
        md = vmi["metadata"]
        guest = self.guests.get(md["uid"])
        if guest is None:
            user, password = self.credentials(vmi)
            config = GuestConfig(
                hostname=hostname_of(vmi),
                username=user,
                password=password if password is not None else LOCKED,
                time_scale=time_scale_for(self.rt.config.profile),
            )
            net = VmiNetwork(self, md["namespace"], md["name"])
            term = GuestTerminal(config, net)
            guest = _Guest(term, md["namespace"], md["name"], (vmi.get("status") or {}).get("nodeName") or "")
            self.guests[md["uid"]] = guest
        return guest

    # ---- cloud-init ----------------------------------------------------------------------
    def credentials(self, vmi: dict[str, Any]) -> tuple[str, str | None]:
        """The default user and its password as cloud-init would set them from the VMI's volumes."""
        ns = vmi["metadata"]["namespace"]
        for vol in (vmi.get("spec") or {}).get("volumes") or []:
            src = vol.get("cloudInitNoCloud") or vol.get("cloudInitConfigDrive")
            if not isinstance(src, dict):
                continue
            text = self._user_data(ns, src)
            if text is not None:
                return parse_cloud_config(text)
        return DEFAULT_USER, None

    def _user_data(self, namespace: str, src: dict[str, Any]) -> str | None:
        if src.get("userData"):
            return str(src["userData"])
        if src.get("userDataBase64"):
            try:
                return base64.b64decode(src["userDataBase64"]).decode("utf-8", "replace")
            except ValueError:
                return None
        ref = (src.get("secretRef") or {}).get("name")
        if ref:
            secret = self.store.try_get(kinds.SECRET, namespace, ref)
            data = (secret or {}).get("data") or {}
            for key in ("userdata", "userData"):
                if key in data:
                    try:
                        return base64.b64decode(data[key]).decode("utf-8", "replace")
                    except ValueError:
                        return None
        return None

    # ---- the subresource -----------------------------------------------------------------
    def _validate(self, namespace: str, name: str) -> dict[str, Any]:
        vmi = self.store.try_get(kinds.VMI, namespace, name)
        if vmi is None:
            raise ApiError(
                404,
                "NotFound",
                f'virtualmachineinstance.kubevirt.io "{name}" not found',
                {"name": name, "group": "kubevirt.io", "kind": "virtualmachineinstance"},
            )
        devices = ((vmi.get("spec") or {}).get("domain") or {}).get("devices") or {}
        if devices.get("autoattachSerialConsole") is False:
            raise errors.bad_request("No serial consoles are present.")
        phase = (vmi.get("status") or {}).get("phase")
        if phase == "Failed":
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on virtualmachineinstance.kubevirt.io "{name}": VMI is in failed status',
                {"name": name, "group": "kubevirt.io", "kind": "virtualmachineinstance"},
            )
        if phase != "Running":
            raise errors.bad_request("VMI is not running")
        return vmi

    async def _serve(self, request: web.Request, rt: ResourceType, namespace: str, name: str) -> web.StreamResponse:
        if request.method != "GET":
            raise errors.method_not_allowed()
        self._validate(namespace, name)
        ws = web.WebSocketResponse(protocols=(PROTOCOL,), autoping=True, max_msg_size=4 * 1024 * 1024)
        if not ws.can_prepare(request).ok:
            # what the WebSocket upgrader answers to a plain HTTP request
            return web.Response(status=400, text="Bad Request\n", headers={"Sec-Websocket-Version": "13"})
        await ws.prepare(request)
        try:
            vmi = self._validate(namespace, name)  # it may have stopped during the handshake
        except ApiError:
            transport = request.transport
            if transport is not None:
                transport.abort()
            return ws
        guest = self._guest(vmi)
        session = _Session(ws, request.transport)
        if guest.session is not None:
            guest.session.abort()  # one session per VMI: the newcomer wins
        guest.session = session
        guest.term.attach(session.write)
        pump = asyncio.get_running_loop().create_task(session.pump())
        try:
            async for msg in ws:
                if session.closed:
                    break
                if msg.type == WSMsgType.BINARY:
                    await guest.term.feed(msg.data)
                elif msg.type == WSMsgType.ERROR:
                    break
                # text frames are dropped, as KubeVirt's binary reader drops them
        except ConnectionError:
            pass
        finally:
            if guest.session is session:
                guest.session = None
                guest.term.detach()
            session.closed = True
            session.wake.set()
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
        return ws

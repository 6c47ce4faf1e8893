"""Pod eviction: the `pods/{name}/eviction` subresource and KubeVirt's virt-launcher eviction webhook.

Plays two components, in the order a real request meets them:

* kube-apiserver's eviction REST handler (kubernetes ``pkg/registry/core/pod/storage/eviction.go``
  ``EvictionREST.Create``): a ``policy/v1`` (or ``v1beta1``) ``Eviction`` whose name is the pod's
  (400 "name in URL does not match name in Eviction object" otherwise); validating admission runs
  first; then the pod is read (404 when it is gone) and deleted, answered ``201`` with
  ``{"kind": "Status", "status": "Success", "code": 201}`` (the create handler fills in the code).
  No PodDisruptionBudgets exist in the simulated cluster, so nothing else refuses an eviction.
* virt-api's validating webhook ``virt-launcher-eviction-interceptor.kubevirt.io`` (KubeVirt v1.5.2
  ``pkg/virt-api/webhooks/validating-webhook/admitters/pod-eviction-admitter.go`` ``Admit``) for
  pods named ``virt-launcher*``: for a running virt-launcher pod whose VMI's eviction strategy
  (VMI ``spec.evictionStrategy``, else the KubeVirt CR's ``spec.configuration.evictionStrategy``)
  asks for it, it sets the VMI's ``status.evacuationNodeName`` to the pod's node and denies the
  eviction with **429** — kube-apiserver's ``ToStatusErr`` prefixes ``admission webhook
  "virt-launcher-eviction-interceptor.kubevirt.io" denied the request: `` and leaves ``reason``
  empty — so ``kubectl drain`` retries every 5 s until the evacuation moved the VM and the pod
  completed; a completed pod passes the webhook and is deleted.

  ================  ===============================  ==========================================
  strategy          VMI live-migratable              VMI not live-migratable
  ================  ===============================  ==========================================
  LiveMigrate       mark, 429 "Eviction triggered    429 "VMI <name> is configured with an
                    evacuation of VMI "<ns>/<vm>""   eviction strategy but is not live-migratable"
  LiveMigrateIf…    mark, 429 (as LiveMigrate)       evicted: the guest shuts down
  External          mark, 429 (nothing migrates it; an external controller acts on the mark)
  None / unset      evicted: the pod is deleted, the guest shuts down, the VM's run strategy decides
  ================  ===============================  ==========================================

  Already marked: 429 "Evacuation in progress: Eviction triggered evacuation of VMI "<ns>/<vm>"";
  a pod not on the VMI's node (a migration target): 429 "Eviction request for target Pod".
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from simcluster import errors, kinds
from simcluster.controllers.base import Controller
from simcluster.errors import ApiError
from simcluster.kinds import ResourceType
from simcluster.seed import KUBEVIRT_NAME, KUBEVIRT_NAMESPACE

EVICTION_WEBHOOK = "virt-launcher-eviction-interceptor.kubevirt.io"
EVICTION_VERSIONS = ("policy/v1", "policy/v1beta1")
MIGRATABLE_STRATEGIES = ("LiveMigrate", "LiveMigrateIfPossible", "External")


def eviction_strategy(vmi: dict[str, Any], kubevirt_cr: dict[str, Any] | None) -> str | None:
    """migrations.VMIEvictionStrategy: the VMI's own strategy, else the cluster's (None when neither)."""
    own = (vmi.get("spec") or {}).get("evictionStrategy")
    if own:
        return str(own)
    cluster = (((kubevirt_cr or {}).get("spec") or {}).get("configuration") or {}).get("evictionStrategy")
    return str(cluster) if cluster else None


def live_migratable(vmi: dict[str, Any]) -> bool:
    """VirtualMachineInstance.IsMigratable: condition LiveMigratable=True."""
    return any(
        c.get("type") == "LiveMigratable" and c.get("status") == "True"
        for c in (vmi.get("status") or {}).get("conditions") or []
    )


def _denied(message: str) -> ApiError:
    """KubeVirt's ``denied`` (code 429, no reason) as kube-apiserver's ToStatusErr returns it."""
    return ApiError(429, "", f'admission webhook "{EVICTION_WEBHOOK}" denied the request: {message}')


class EvictionController(Controller):
    """Serves requests only: it reacts to no store events, so it does not subscribe to them."""

    name = "eviction"
    resources = ()

    def start(self) -> None:
        self.rt.api.register_subresource("", kinds.POD.plural, "eviction", self._evict)

    def _kubevirt(self) -> dict[str, Any] | None:
        return self.store.try_get(kinds.KUBEVIRT, KUBEVIRT_NAMESPACE, KUBEVIRT_NAME)

    # ---- kube-apiserver: EvictionREST -------------------------------------------------------
    async def _evict(self, request: web.Request, rt: ResourceType, ns: str, name: str) -> web.StreamResponse:
        if request.method != "POST":
            raise errors.method_not_allowed()
        from simcluster.api import content_type, decode_body

        body = decode_body(await request.read(), content_type(request))
        if not isinstance(body, dict):
            raise errors.bad_request(f"Object 'Kind' is missing in '{str(body)[:100]}'")
        api_version, kind = body.get("apiVersion") or "", body.get("kind") or ""
        if api_version and api_version not in EVICTION_VERSIONS:
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version (policy/v1)"
            )
        if kind and kind != "Eviction":
            raise errors.bad_request(
                f"the object provided is unrecognized (must be of type Eviction): couldn't get version/kind; "
                f"json parse error: kind {kind!r} does not match 'Eviction'"
            )
        md = body.get("metadata") or {}
        if not isinstance(md, dict):
            raise errors.bad_request("metadata must be an object")
        if md.get("namespace") and md["namespace"] != ns:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        if md.get("name", "") != name:
            raise errors.bad_request("name in URL does not match name in Eviction object")
        options = body.get("deleteOptions") or {}
        if not isinstance(options, dict):
            raise errors.bad_request("deleteOptions must be an object")
        dry_run = request.query.get("dryRun") == "All" or "All" in (options.get("dryRun") or [])
        # validating admission (createValidation) runs before the pod is even read
        self._admit_launcher_eviction(ns, name, dry_run)
        pod = self.store.try_get(kinds.POD, ns, name)
        if pod is None:
            raise errors.not_found(kinds.POD, name)
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != pod["metadata"]["uid"]:
            raise errors.conflict(
                kinds.POD,
                name,
                f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {pod['metadata']['uid']}",
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != pod["metadata"]["resourceVersion"]:
            raise errors.conflict(
                kinds.POD,
                name,
                f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                f"ResourceVersion in object meta: {pod['metadata']['resourceVersion']}",
            )
        if not dry_run:
            try:
                self.rt.api.delete_object(kinds.POD, ns, name, str(options.get("propagationPolicy") or ""))
            except ApiError as e:
                if e.code != 404:
                    raise
        status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
        return web.json_response(status, status=201)

    # ---- virt-api: the pod eviction admitter --------------------------------------------------
    def _admit_launcher_eviction(self, ns: str, name: str, dry_run: bool) -> None:
        if not name.startswith("virt-launcher"):
            return  # the webhook's matchCondition "only-vms"
        pod = self.store.try_get(kinds.POD, ns, name)
        if pod is None:
            return
        md = pod["metadata"]
        if (md.get("labels") or {}).get("kubevirt.io") != "virt-launcher":
            return
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return
        vmi_name = (md.get("annotations") or {}).get("kubevirt.io/domain")
        if not vmi_name:
            return
        vmi = self.store.try_get(kinds.VMI, ns, vmi_name)
        if vmi is None:
            raise _denied(
                f'kubevirt failed getting the vmi: virtualmachineinstances.kubevirt.io "{vmi_name}" not found'
            )
        strategy = eviction_strategy(vmi, self._kubevirt())
        migratable = live_migratable(vmi)
        if strategy == "LiveMigrate":
            if not migratable:
                raise _denied(f"VMI {vmi_name} is configured with an eviction strategy but is not live-migratable")
            mark = True
        elif strategy == "LiveMigrateIfPossible":
            mark = migratable
        else:
            mark = strategy == "External"
        if not mark:
            return
        triggered = f'Eviction triggered evacuation of VMI "{ns}/{vmi_name}"'
        st = vmi.get("status") or {}
        if st.get("evacuationNodeName"):
            raise _denied("Evacuation in progress: " + triggered)
        node = (pod.get("spec") or {}).get("nodeName") or ""
        if st.get("nodeName") != node:
            raise _denied("Eviction request for target Pod")
        if not dry_run:
            # the webhook's JSON patch: add /status/evacuationNodeName
            self.rt.mutate_status(
                kinds.VMI, ns, vmi_name, lambda o: o.setdefault("status", {}).__setitem__("evacuationNodeName", node)
            )
        raise _denied(triggered)

"""Validating admission: the namespace-label ValidatingAdmissionPolicy and KubeVirt's webhooks.

How kube-apiserver 1.32 answers, which the simulated server must copy (``AdmissionDenied.status()``):

* ValidatingAdmissionPolicy denial (apiserver ``policy/validating/dispatcher.go``): the message is
  ``admission.NewForbidden``'s ``<resource> "<name>" is forbidden: ValidatingAdmissionPolicy '<p>'
  with binding '<b>' denied request: <message>``, but the *reason* is the validation's ``reason``,
  which defaults to ``Invalid`` - so the HTTP code is **422**, not 403, for the UDN label policy
  (CNO's policy sets no reason). Details keep NewForbidden's ``{name, kind: <resource>}`` plus one
  cause carrying only the message.
* Webhook denial (apiserver ``webhook/errors/statuserror.go`` ``ToStatusErr``): the webhook's own
  Status is returned with its message prefixed ``admission webhook "<name>" denied the request: ``.
  KubeVirt's ``ToAdmissionResponse`` sends code **422**, reason ``Invalid``, the causes (at most
  10) and their messages joined by ``", "``. Its ``ToAdmissionResponseError`` (e.g. migration of a
  missing VMI) sends code **400** with no reason and no details.

Schema validation (``validate``) runs before validating admission, so a server calls ``validate``
first and ``admit`` only for objects that passed.
"""

from __future__ import annotations

from typing import Any

from . import kubevirt
from .kubevirt import Cause

UDN_LABEL = "k8s.ovn.org/primary-user-defined-network"
UDN_LABEL_POLICY = "user-defined-networks-namespace-label"
UDN_LABEL_BINDING = "user-defined-networks-namespace-label-binding"
UDN_LABEL_MESSAGE = (
    "The 'k8s.ovn.org/primary-user-defined-network' label cannot be added/removed after the namespace was created"
)
MIGRATION_SELECTOR_LABEL = "kubevirt.io/vmi-name"


class AdmissionDenied(Exception):
    """A validating-admission rejection; ``status()`` is the exact Status body to send."""

    def __init__(
        self,
        message: str,
        *,
        code: int = 422,
        reason: str = "Invalid",
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
        }
        if self.reason:
            body["reason"] = self.reason
        if self.details:
            body["details"] = self.details
        body["code"] = self.code
        return body


def policy_denied(resource: str, name: str, policy: str, binding: str, message: str) -> AdmissionDenied:
    """A VAP denial as dispatcher.go builds it (reason Invalid by default, hence 422)."""
    inner = f"ValidatingAdmissionPolicy '{policy}' with binding '{binding}' denied request: {message}"
    text = f'{resource} "{name}" is forbidden: {inner}' if name else f"{resource} is forbidden: {inner}"
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    details["kind"] = resource
    details["causes"] = [{"message": inner}]
    return AdmissionDenied(text, code=422, reason="Invalid", details=details)


def webhook_denied(webhook: str, causes: list[Cause]) -> AdmissionDenied:
    """KubeVirt ToAdmissionResponse wrapped by kube-apiserver's ToStatusErr."""
    shown = causes[:10]
    message = ", ".join(c.message for c in shown)
    if len(causes) > 10:
        message += f", and {len(causes) - 10} more validation errors"
    out = []
    for c in shown:
        cause: dict[str, str] = {}
        if c.type:
            cause["reason"] = c.type
        if c.message:
            cause["message"] = c.message
        if c.field:
            cause["field"] = c.field
        out.append(cause)
    return AdmissionDenied(
        f'admission webhook "{webhook}" denied the request: {message}',
        code=422,
        reason="Invalid",
        details={"causes": out},
    )


def webhook_error(webhook: str, message: str) -> AdmissionDenied:
    """KubeVirt ToAdmissionResponseError (code 400, no reason) wrapped by ToStatusErr."""
    return AdmissionDenied(
        f'admission webhook "{webhook}" denied the request: {message}', code=400, reason="", details=None
    )


def _labels(obj: dict | None) -> dict:
    meta = (obj or {}).get("metadata") or {}
    labels = meta.get("labels")
    return labels if isinstance(labels, dict) else {}


def _name(obj: dict) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def admit(resource: str, obj: dict, old: dict | None, operation: str) -> None:
    """Run the validating admission a 4.19 cluster applies to ``resource``; raise AdmissionDenied."""
    op = operation.upper()
    res = resource.lower()
    if res == "namespaces":
        if op == "UPDATE" and old is not None and (UDN_LABEL in _labels(old)) != (UDN_LABEL in _labels(obj)):
            raise policy_denied("namespaces", _name(obj), UDN_LABEL_POLICY, UDN_LABEL_BINDING, UDN_LABEL_MESSAGE)
        return
    causes: list[Cause] = []
    webhook = ""
    if res == "virtualmachines.kubevirt.io" and op in ("CREATE", "UPDATE"):
        if (obj.get("metadata") or {}).get("deletionTimestamp"):
            return
        webhook, causes = kubevirt.VM_WEBHOOK, kubevirt.vm_causes(obj)
    elif res == "virtualmachineinstances.kubevirt.io" and op == "CREATE":
        webhook, causes = kubevirt.VMI_CREATE_WEBHOOK, kubevirt.vmi_create_causes(obj)
    elif res == "virtualmachineinstances.kubevirt.io" and op == "UPDATE" and old is not None:
        webhook, causes = kubevirt.VMI_UPDATE_WEBHOOK, kubevirt.vmi_update_causes(obj, old)
    elif res == "virtualmachineinstancemigrations.kubevirt.io" and op == "CREATE":
        webhook, causes = kubevirt.MIGRATION_CREATE_WEBHOOK, kubevirt.vmim_create_causes(obj)
    if causes:
        raise webhook_denied(webhook, causes)


def admit_migration(vmim: dict, vmi: dict | None, migrations: list[dict]) -> None:
    """The store-dependent part of migration-create-validator (after ``admit`` passed).

    ``vmi`` is the VMI named by ``spec.vmiName`` (None when absent); ``migrations`` are the VMIMs in
    the namespace. Upstream answers each of these with a 400.
    """
    w = kubevirt.MIGRATION_CREATE_WEBHOOK
    ns = str((vmim.get("metadata") or {}).get("namespace") or "")
    vmi_name = str((vmim.get("spec") or {}).get("vmiName") or "")
    if vmi is None:
        raise webhook_error(w, f'the VMI "{ns}/{vmi_name}" does not exist')
    status = vmi.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        raise webhook_error(w, "Cannot migrate VMI in finalized state.")
    for c in status.get("conditions") or []:
        if c.get("type") == "LiveMigratable" and c.get("status") == "False":
            raise webhook_error(
                w, f"Cannot migrate VMI, Reason: {c.get('reason', '')}, Message: {c.get('message', '')}"
            )
    for mig in migrations:
        if _labels(mig).get(MIGRATION_SELECTOR_LABEL) != vmi_name:
            continue
        if (mig.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        uid = (mig.get("metadata") or {}).get("uid", "")
        raise webhook_error(
            w,
            f"in-flight migration detected. Active migration job ({uid}) is currently already in progress "
            f"for VMI {(mig.get('spec') or {}).get('vmiName', '')}.",
        )

"""Which cluster to talk to, resolved the way oc and kubectl resolve it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from kubernetes import client as k8s_client
from kubernetes.config import incluster_config, kube_config
from kubernetes.config.config_exception import ConfigException
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from tasks.kube.errors import HOW_TO_POINT, ClusterConfigError


@dataclass(frozen=True)
class ClusterTarget:
    """Which cluster to talk to, resolved the way oc/kubectl do (see :meth:`resolve`)."""

    kubeconfig: str | None = None
    context: str | None = None
    in_cluster: bool = False

    def resolve(self) -> tuple[k8s_client.Configuration, str, str]:
        """Return (client configuration, default namespace, description of the source).

        Order: explicit kubeconfig; else $KUBECONFIG (a ':'-separated list is merged); else
        ~/.kube/config; else the in-cluster service account when KUBERNETES_SERVICE_HOST is set.
        """
        if self.in_cluster:
            return self._in_cluster()
        if self.kubeconfig:
            path = Path(self.kubeconfig).expanduser()
            if not path.is_file():
                raise ClusterConfigError(f"kubeconfig {str(path)!r} does not exist; {HOW_TO_POINT}")
            return self._from_files([str(path)], f"kubeconfig {path}")
        env = os.environ.get("KUBECONFIG", "")
        if env.strip():
            listed = [p for p in env.split(os.pathsep) if p.strip()]
            existing = [str(Path(p).expanduser()) for p in listed if Path(p).expanduser().is_file()]
            if not existing:
                raise ClusterConfigError(f"KUBECONFIG={env!r} names no existing file; {HOW_TO_POINT}")
            return self._from_files(existing, f"KUBECONFIG {os.pathsep.join(existing)}")
        home = Path("~/.kube/config").expanduser()
        if home.is_file():
            return self._from_files([str(home)], f"kubeconfig {home}")
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            return self._in_cluster()
        raise ClusterConfigError(
            f"no Kubernetes cluster configured (no --kubeconfig, no KUBECONFIG, no {home}, not in a pod); {HOW_TO_POINT}"
        )

    def _from_files(self, paths: list[str], source: str) -> tuple[k8s_client.Configuration, str, str]:
        try:
            context = self.context or (_first_current_context(paths) if len(paths) > 1 else None)
            merged = kube_config.KubeConfigMerger(os.pathsep.join(paths))
            if merged.config is None:
                raise ConfigException("no configuration found")
            loader = kube_config.KubeConfigLoader(
                config_dict=merged.config, config_base_path=None, active_context=context
            )
            cfg = k8s_client.Configuration()
            loader.load_and_set(cfg)
            ctx = loader.current_context
        except (ConfigException, KeyError, ValueError, OSError, yaml.YAMLError) as e:
            what = f"context {self.context!r} in {source}" if self.context else source
            raise ClusterConfigError(f"cannot use {what}: {e}; {HOW_TO_POINT}") from e
        namespace = (ctx.get("context") or {}).get("namespace") or "default"
        return cfg, namespace, f"{source} context {ctx.get('name')}"

    def _in_cluster(self) -> tuple[k8s_client.Configuration, str, str]:
        cfg = k8s_client.Configuration()
        try:
            incluster_config.load_incluster_config(client_configuration=cfg)
        except ConfigException as e:
            raise ClusterConfigError(f"in-cluster configuration failed: {e}; {HOW_TO_POINT}") from e
        ns_file = Path(incluster_config.SERVICE_TOKEN_FILENAME).with_name("namespace")
        namespace = ns_file.read_text().strip() if ns_file.is_file() else "default"
        return cfg, namespace, "in-cluster service account"


def _first_current_context(paths: list[str]) -> str | None:
    """kubectl's merge rule: the first file that sets current-context wins (the merger keeps the last)."""
    for p in paths:
        with open(p) as f:
            doc = yaml.safe_load(f) or {}
        if isinstance(doc, dict) and doc.get("current-context"):
            return str(doc["current-context"])
    return None


# ---- rate limiter and stats -----------------------------------------------------------------


class ClusterParams(BaseModel):
    """How to reach the cluster, as ``oc``/``kubectl`` users expect; a Prefect parameter too."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    kubeconfig: str | None = Field(
        None,
        title="Kubeconfig",
        description="Path to a kubeconfig; empty = $KUBECONFIG, then ~/.kube/config, then the in-cluster "
        "service account.",
    )
    context: str | None = Field(None, title="Context", description="kubeconfig context; empty = current context.")
    in_cluster: bool = Field(
        False, title="In cluster", description="Use the pod's service account (Prefect Kubernetes work pool)."
    )

    def target(self) -> ClusterTarget:
        return ClusterTarget(kubeconfig=self.kubeconfig, context=self.context, in_cluster=self.in_cluster)

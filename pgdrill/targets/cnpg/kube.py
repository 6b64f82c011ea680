"""The Kubernetes API as the cnpg target uses it: the real `kubernetes` client, built the way
chaostoolkit-kubernetes builds it (so `KUBERNETES_CONTEXT`, a kubeconfig, in-cluster config and
the users' existing chaosk8s secrets just work), returning plain dicts (as `kubectl get -o
json` shows them) and turning API errors into pgdrill errors that name the fix.

Every call the target makes goes through here; README's RBAC section lists them."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import TypeVar

from pgdrill.core.errors import PreflightRefused, TargetError

CNPG_GROUP, CNPG_VERSION = "postgresql.cnpg.io", "v1"
PLUGIN_GROUP, PLUGIN_VERSION = "barmancloud.cnpg.io", "v1"
T = TypeVar("T")


class NotFound(TargetError):
    """The object does not exist (HTTP 404)."""


def api_client(secrets: dict | None = None):
    """chaosk8s' client factory: KUBERNETES_CONTEXT / kubeconfig, in-cluster, or
    KUBERNETES_HOST (+ token, certificates) from the experiment's secrets or the environment."""
    from chaosk8s import create_k8s_api_client

    try:
        return create_k8s_api_client(secrets or {})
    except Exception as exc:
        raise PreflightRefused(
            f"cannot configure a Kubernetes client: {exc}",
            fix="set KUBECONFIG/KUBERNETES_CONTEXT (or run in-cluster with a "
            "service account), as for chaostoolkit-kubernetes",
        ) from None


class Kube:
    """Thin typed access to the objects a drill reads and writes."""

    def __init__(self, client) -> None:
        from kubernetes import client as k8s

        self.client = client
        self.core = k8s.CoreV1Api(client)
        self.custom = k8s.CustomObjectsApi(client)
        self.batch = k8s.BatchV1Api(client)

    def session_core(self):
        """A CoreV1Api on its own ApiClient (same configuration) for one exec or port-forward
        session: the client's websocket helpers swap `ApiClient.request` while they run, so
        sharing one ApiClient across threads would send ordinary calls down the websocket
        path. Close it with `.api_client.close()`."""
        from kubernetes import client as k8s

        return k8s.CoreV1Api(k8s.ApiClient(configuration=self.client.configuration))

    @property
    def host(self) -> str:
        return str(self.client.configuration.host)

    # -- error handling -----------------------------------------------------------------
    def _call(self, what: str, fn: Callable[..., T], *args, **kwargs) -> T:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            raise self._api_error(what, exc) from None
        except (HTTPError, OSError) as exc:
            raise TargetError(
                f"cannot reach the Kubernetes API at {self.host} to {what}: "
                f"{type(exc).__name__}: {exc}",
                fix="check the kubeconfig context (KUBERNETES_CONTEXT) and that "
                "the API server is reachable",
            ) from None

    @staticmethod
    def _api_error(what: str, exc) -> TargetError:
        message = ""
        try:
            message = json.loads(exc.body or "{}").get("message") or ""
        except (ValueError, AttributeError):
            pass
        detail = message or exc.reason or ""
        if exc.status == 404:
            return NotFound(f"cannot {what}: not found ({detail})")
        if exc.status in (401, 403):
            return PreflightRefused(
                f"the Kubernetes API refused to {what} (HTTP {exc.status}: {detail})",
                fix="grant the drill's service account the RBAC listed in README (\"Run against "
                'a CNPG cluster")',
            )
        return TargetError(f"cannot {what}: HTTP {exc.status} {detail}".rstrip())

    def _json(self, what: str, fn, *args, **kwargs) -> dict:
        """Call with _preload_content=False and return the raw JSON (camelCase, like kubectl)."""
        response = self._call(what, fn, *args, _preload_content=False, **kwargs)
        return json.loads(response.data or b"{}")

    # -- reads --------------------------------------------------------------------------
    def version(self) -> dict:
        from kubernetes import client as k8s

        return self._json("read the server version", k8s.VersionApi(self.client).get_code)

    def namespace_exists(self, name: str) -> bool:
        try:
            self._json(f"read namespace {name}", self.core.read_namespace, name)
            return True
        except NotFound:
            return False

    def get_custom(self, group: str, version: str, namespace: str, plural: str, name: str) -> dict:
        return self._call(
            f"read {plural} {namespace}/{name}",
            self.custom.get_namespaced_custom_object,
            group,
            version,
            namespace,
            plural,
            name,
        )

    def list_custom(
        self,
        group: str,
        version: str,
        namespace: str,
        plural: str,
        label_selector: str | None = None,
    ) -> list[dict]:
        kwargs = {"label_selector": label_selector} if label_selector else {}
        return self._call(
            f"list {plural} in {namespace}",
            self.custom.list_namespaced_custom_object,
            group,
            version,
            namespace,
            plural,
            **kwargs,
        ).get("items", [])

    def cluster(self, namespace: str, name: str) -> dict:
        return self.get_custom(CNPG_GROUP, CNPG_VERSION, namespace, "clusters", name)

    def pods(self, namespace: str, label_selector: str) -> list[dict]:
        return self._json(
            f"list pods in {namespace}",
            self.core.list_namespaced_pod,
            namespace,
            label_selector=label_selector,
        ).get("items", [])

    def pvcs(self, namespace: str, label_selector: str) -> list[dict]:
        return self._json(
            f"list persistentvolumeclaims in {namespace}",
            self.core.list_namespaced_persistent_volume_claim,
            namespace,
            label_selector=label_selector,
        ).get("items", [])

    def secret_exists(self, namespace: str, name: str) -> bool:
        """Whether the Secret is there (its values are not decoded or kept)."""
        try:
            self._json(
                f"read secret {namespace}/{name}", self.core.read_namespaced_secret, name, namespace
            )
        except NotFound:
            return False
        return True

    def secret_values(self, namespace: str, name: str) -> dict[str, str]:
        """A Secret's data, decoded. Values never leave the target (no logs, no evidence)."""
        doc = self._json(
            f"read secret {namespace}/{name}", self.core.read_namespaced_secret, name, namespace
        )
        return {k: base64.b64decode(v).decode() for k, v in (doc.get("data") or {}).items()}

    def pod_log(
        self,
        namespace: str,
        pod: str,
        *,
        container: str | None = None,
        since_seconds: int | None = None,
    ) -> str:
        kwargs: dict = {"timestamps": True}
        if container:
            kwargs["container"] = container
        if since_seconds:
            kwargs["since_seconds"] = max(1, int(since_seconds))
        response = self._call(
            f"read the log of pod {namespace}/{pod}",
            self.core.read_namespaced_pod_log,
            pod,
            namespace,
            _preload_content=False,
            **kwargs,
        )
        return (response.data or b"").decode("utf-8", "replace")

    # -- writes -------------------------------------------------------------------------
    def create_custom(self, doc: dict) -> dict:
        group, version = doc["apiVersion"].split("/")
        plural = {
            "Cluster": "clusters",
            "Backup": "backups",
            "ObjectStore": "objectstores",
            "ScheduledBackup": "scheduledbackups",
        }[doc["kind"]]
        meta = doc["metadata"]
        return self._call(
            f"create {doc['kind']} {meta['namespace']}/{meta['name']}",
            self.custom.create_namespaced_custom_object,
            group,
            version,
            meta["namespace"],
            plural,
            doc,
        )

    def delete_custom(
        self, group: str, version: str, namespace: str, plural: str, name: str
    ) -> bool:
        """Delete; False when it was already gone."""
        try:
            self._call(
                f"delete {plural} {namespace}/{name}",
                self.custom.delete_namespaced_custom_object,
                group,
                version,
                namespace,
                plural,
                name,
            )
            return True
        except NotFound:
            return False

    def patch_custom(
        self, group: str, version: str, namespace: str, plural: str, name: str, body: dict
    ) -> dict:
        """A JSON merge patch (what `flux suspend` sends); returns the patched object."""
        what = f"patch {plural}.{group} {namespace}/{name}"
        try:
            return self._call(
                what,
                self.custom.patch_namespaced_custom_object,
                group,
                version,
                namespace,
                plural,
                name,
                body,
                _content_type="application/merge-patch+json",
            )
        except PreflightRefused as exc:  # 401/403: the RBAC is missing
            raise TargetError(
                exc.message,
                fix=f"grant the drill's service account `patch` on {plural}."
                f"{group} in namespace {namespace} (pgdrill rbac "
                f"--flux-namespace {namespace})",
            ) from None
        except TargetError as exc:
            raise TargetError(
                exc.message,
                fix=exc.fix
                or f"check that {plural}.{group} {namespace}/{name} exists and "
                f"that the drill's service account may `patch` {plural} in "
                f"namespace {namespace}",
            ) from None

    def delete_pod(self, namespace: str, name: str, *, grace_period_seconds: int) -> None:
        from kubernetes import client as k8s

        self._json(
            f"delete pod {namespace}/{name}",
            self.core.delete_namespaced_pod,
            name,
            namespace,
            body=k8s.V1DeleteOptions(grace_period_seconds=grace_period_seconds),
        )

    def delete_pvc(self, namespace: str, name: str) -> bool:
        try:
            self._json(
                f"delete persistentvolumeclaim {namespace}/{name}",
                self.core.delete_namespaced_persistent_volume_claim,
                name,
                namespace,
            )
            return True
        except NotFound:
            return False

    def create_secret(self, doc: dict) -> None:
        meta = doc["metadata"]
        self._json(
            f"create secret {meta['namespace']}/{meta['name']}",
            self.core.create_namespaced_secret,
            meta["namespace"],
            doc,
        )

    def delete_secret(self, namespace: str, name: str) -> bool:
        try:
            self._json(
                f"delete secret {namespace}/{name}",
                self.core.delete_namespaced_secret,
                name,
                namespace,
            )
            return True
        except NotFound:
            return False

    def exec(
        self, namespace: str, pod: str, container: str, command: list[str], *, timeout: float = 60
    ) -> tuple[str, str, int]:
        """Run `command` in the pod (pods/exec); return stdout, stderr and the exit code."""
        from kubernetes.stream import stream

        core = self.session_core()
        try:
            client = self._call(
                f"exec in pod {namespace}/{pod}",
                stream,
                core.connect_get_namespaced_pod_exec,
                pod,
                namespace,
                container=container,
                command=command,
                stdin=False,
                stdout=True,
                stderr=True,
                tty=False,
                _preload_content=False,
            )
        except AttributeError:
            # kubernetes 36 raises this when the websocket upgrade is refused (404/400)
            core.api_client.close()
            raise TargetError(
                f"cannot exec in pod {namespace}/{pod}: the API server refused "
                f"the exec session (pod gone, or no pods/exec permission)",
                fix="check the pod exists and the RBAC for pods/exec",
            ) from None
        except BaseException:
            core.api_client.close()
            raise
        try:
            client.run_forever(timeout=timeout)
            out, err = client.read_stdout() or "", client.read_stderr() or ""
            code = client.returncode
        finally:
            client.close()
            core.api_client.close()
        if code is None:
            raise TargetError(
                f"exec in pod {namespace}/{pod} gave no exit status within {timeout:.0f}s",
                fix="check the pod is running",
            )
        return out, err, int(code)

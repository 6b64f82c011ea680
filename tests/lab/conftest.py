"""The lab suite (`make test-lab`): pgdrill's cnpg target against the lab of `make lab` — a
real kube-apiserver with RBAC, the real CloudNativePG operator and instance manager, real
PostgreSQL in pods, moto S3 on the node address. Skipped unless PGDRILL_LAB names the lab's
state folder (make test-lab sets it)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import PGDRILL, REPO

LAB = Path(os.environ["PGDRILL_LAB"]) if os.environ.get("PGDRILL_LAB") else None
ENV_FILE = REPO / "environments" / "lab.yaml"
NAMESPACE, CLUSTER, RESTORE_NS = "staging", "pg-main", "restore-test"


def pytest_collection_modifyitems(config, items):
    if LAB is not None:
        return
    skip = pytest.mark.skip(reason="the lab suite: run `make test-lab` (PGDRILL_LAB unset)")
    for item in items:
        if "tests/lab/" in str(item.fspath):
            item.add_marker(skip)


def kubectl_bin() -> str:
    out = subprocess.run(
        ["sh", str(REPO / "lab" / "build.sh"), "--print-bin"],
        capture_output=True,
        text=True,
        check=True,
    )
    return str(Path(out.stdout.strip()) / "kubectl")


def kubectl(
    *args: str, kubeconfig: Path | None = None, input: str | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    out = subprocess.run(
        [kubectl_bin(), "--kubeconfig", str(kubeconfig or LAB / "kubeconfig"), *args],
        capture_output=True,
        text=True,
        input=input,
        timeout=300,
    )
    if check and out.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {out.stderr}")
    return out


def service_account_kubeconfig(folder: Path, account: str, rbac_yaml: str) -> Path:
    """Apply `rbac_yaml` (as cluster admin) and return a kubeconfig that authenticates as the
    ServiceAccount `account` of namespace staging with a short-lived token."""
    kubectl("create", "namespace", RESTORE_NS, check=False)
    kubectl("apply", "-f", "-", input=rbac_yaml)
    token = kubectl("-n", NAMESPACE, "create", "token", account, "--duration", "4h").stdout.strip()
    admin = yaml.safe_load((LAB / "kubeconfig").read_text())
    cluster = admin["clusters"][0]
    path = folder / f"{account}.kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [{"name": account, "user": {"token": token}}],
                "contexts": [
                    {
                        "name": account,
                        "context": {
                            "cluster": cluster["name"],
                            "user": account,
                            "namespace": NAMESPACE,
                        },
                    }
                ],
                "current-context": account,
            }
        )
    )
    path.chmod(0o600)
    return path


def pgdrill_rbac(*extra: str) -> str:
    out = subprocess.run(
        [PGDRILL, "rbac", "--namespace", NAMESPACE, *extra],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout


@pytest.fixture(scope="session")
def drill_kubeconfig(tmp_path_factory) -> Path:
    """pgdrill's own least-privilege identity, exactly as `pgdrill rbac` generates it."""
    return service_account_kubeconfig(
        tmp_path_factory.mktemp("sa"), "pgdrill", pgdrill_rbac("--cluster-loss")
    )


def drill_env(kubeconfig: Path, reports: Path, **extra: str) -> dict:
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "PGDRILL_ENVIRONMENT_FILE": str(ENV_FILE),
        "PGDRILL_REPORTS": str(reports),
        **extra,
    }
    for key in ("PGDRILL_TARGET", "KUBERNETES_HOST", "PGDRILL_HOME"):
        env.pop(key, None)
    return env

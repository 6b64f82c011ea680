"""A whole fake CNPG world for the `cnpg` target's tests: a real sandbox (PostgreSQL primary +
replica, moto S3, barman-cloud, supervisor), the fake Kubernetes API server and the fake CNPG
operator playing CNPG on top of that sandbox."""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from .apiserver import FakeKubeServer
from .operator import FakeCnpgOperator


@dataclass
class World:
    server: FakeKubeServer
    operator: FakeCnpgOperator
    sandbox: object  # pgdrill.targets.sandbox.target.SandboxTarget
    namespace: str
    cluster: str
    env: dict[str, str]  # merge into os.environ for `chaos run` / pgdrill subprocesses
    credentials_file: Path  # the sandbox's SOPS/age-encrypted cnpg-backup-s3 Secret
    age_key_file: Path  # the age identity that decrypts it

    def sandbox_credentials(self):
        """The sandbox's S3 credentials (decrypted from its SOPS file), e.g. to check that no
        value leaks into a run folder."""
        from pgdrill.targets.sandbox.cluster import sandbox_credentials

        return sandbox_credentials(self.sandbox.layout)


@contextmanager
def cnpg_world(
    style: str = "in-tree", sandbox=None, *, namespace: str = "staging", cluster: str = "app-db"
):
    """Start (or reuse `sandbox`) a sandbox, a FakeKubeServer and the operator; yield a
    World. On the way out: the operator's thread and workers joined, restore-test removed,
    the server stopped, and a sandbox started here stopped and removed."""
    with ExitStack() as stack:
        if sandbox is None:
            from tests.conftest import running_sandbox

            sandbox = stack.enter_context(running_sandbox())
        server = stack.enter_context(FakeKubeServer())
        stack.callback(sandbox.cleanup_restore)  # after the operator stopped (LIFO)
        operator = stack.enter_context(
            FakeCnpgOperator(server, sandbox, namespace=namespace, cluster=cluster, style=style)
        )
        yield World(
            server=server,
            operator=operator,
            sandbox=sandbox,
            namespace=namespace,
            cluster=cluster,
            env={
                "KUBERNETES_HOST": server.url,
                "KUBECONFIG": "/nonexistent",
                "PGDRILL_HOME": str(sandbox.layout.home),
            },
            credentials_file=sandbox.layout.credentials_file,
            age_key_file=sandbox.layout.age_key_file,
        )

"""S3 settings a real object store needs (issue 19.2, 19.5, 19.13): the checksum behaviour of
boto3 >= 1.36 (S3-compatible stores reject some of its checksums), a CA bundle for a private
endpoint, and an endpoint reachable from outside the cluster. The requests checked here are
the ones boto3 really builds; they are caught before they leave the process."""

from __future__ import annotations

import pytest
from botocore.awsrequest import AWSResponse

from pgdrill.core.errors import BadInput
from pgdrill.credentials.location import BucketLocation
from pgdrill.credentials.s3client import S3Options, endpoint_fix, in_cluster_endpoint, s3_client
from pgdrill.credentials.secret import S3Credentials


def credentials() -> S3Credentials:
    return S3Credentials(
        access_key_id="AKIAEXAMPLE",
        secret_access_key="s3cr3t-value",
        bucket="backups",
        endpoint="http://minio.storage.svc:9000",
        region="us-east-1",
        source="cnpg-backup-s3.enc.yaml",
    )


class _Raw:
    def stream(self):
        return iter([b""])


def sent_headers(client) -> dict:
    """Put one object; return the headers boto3 would have sent."""
    seen = {}

    def capture(request, **_):
        seen.update(request.headers)
        return AWSResponse(request.url, 200, {}, _Raw())

    client.meta.events.register("before-send.s3.PutObject", capture)
    client.put_object(Bucket="b", Key="k", Body=b"x" * 100)
    return {k.lower(): v for k, v in seen.items()}


def test_auto_sends_checksums_to_aws_only():
    auto = S3Options()
    assert auto.checksum_mode(None) == "when_supported"
    assert auto.checksum_mode("https://s3.eu-west-1.amazonaws.com") == "when_supported"
    assert auto.checksum_mode("https://fsn1.your-objectstorage.com") == "when_required"
    assert auto.checksum_mode("http://minio.storage.svc:9000") == "when_required"
    assert S3Options(checksums="when_supported").checksum_mode("http://x:9000") == "when_supported"


def test_the_client_sends_no_crc_checksum_to_an_s3_compatible_endpoint(tmp_path):
    creds = credentials()
    minio = sent_headers(s3_client("http://127.0.0.1:9", creds))
    assert not any(h.startswith("x-amz-checksum-") for h in minio), minio
    forced = sent_headers(
        s3_client("http://127.0.0.1:9", creds, S3Options(checksums="when_supported"))
    )
    assert any(h.startswith("x-amz-checksum-") for h in forced), forced


def test_barman_cloud_gets_the_same_settings_and_the_ca_bundle(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    location = BucketLocation(
        "s3://backups/",
        "pg-main",
        credentials(),
        "https://rgw.example.internal",
        S3Options(str(ca)),
    )
    env = location.process_env()
    assert env["AWS_REQUEST_CHECKSUM_CALCULATION"] == "when_required"
    assert env["AWS_RESPONSE_CHECKSUM_VALIDATION"] == "when_required"
    assert env["AWS_CA_BUNDLE"] == str(ca.resolve())
    described = location.describe()
    assert described["s3"] == {"ca_bundle": str(ca), "checksums": "when_required"}
    assert "s3cr3t-value" not in repr(described) and "s3cr3t-value" not in repr(location)


def test_bad_settings_are_refused_with_the_fix(tmp_path):
    with pytest.raises(BadInput, match="does not exist") as err:
        S3Options(str(tmp_path / "missing.pem"))
    assert "--ca-bundle" in err.value.fix
    with pytest.raises(BadInput, match="is not one of"):
        S3Options(checksums="sometimes")


def test_an_in_cluster_endpoint_names_the_outside_endpoint_setting():
    assert in_cluster_endpoint("http://minio.storage.svc:9000")
    assert in_cluster_endpoint("http://minio.storage.svc.cluster.local:9000")
    assert in_cluster_endpoint("http://minio:9000")
    assert not in_cluster_endpoint("https://s3.amazonaws.com")
    assert not in_cluster_endpoint("http://localhost:9000")
    assert "s3_endpoint_url" in endpoint_fix("http://minio.storage.svc:9000")
    assert "in-cluster" not in endpoint_fix(
        "http://minio.storage.svc:9000", override="http://127.0.0.1:9000"
    )


def test_the_cnpg_target_reads_outside_the_cluster_through_s3_endpoint_url(tmp_path):
    from pgdrill.targets.cnpg.config import CnpgConfig

    cfg = CnpgConfig.from_configuration(
        {
            "cluster": "pg-main",
            "namespace": "staging",
            "s3_endpoint_url": "http://127.0.0.1:19000",
            "s3_checksums": "when_required",
        }
    )
    assert (
        cfg.s3_endpoint("http://minio.storage.svc:9000", "http://cred") == "http://127.0.0.1:19000"
    )
    plain = CnpgConfig.from_configuration({"cluster": "pg-main", "namespace": "staging"})
    assert (
        plain.s3_endpoint("http://minio.storage.svc:9000", "http://cred")
        == "http://minio.storage.svc:9000"
    )
    assert cfg.s3_options().checksum_mode("http://minio.storage.svc:9000") == "when_required"

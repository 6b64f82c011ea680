"""The arguments that name and open one server's folder of a bucket, shared by
`bucket-report`, `verify-backup` and `pgdrill backups s3://...`."""

from __future__ import annotations

import argparse


def bucket_arguments(parser: argparse.ArgumentParser) -> None:
    """s3://BUCKET[/PATH], --server-name, --credentials, --age-identity, --endpoint-url."""
    parser.add_argument(
        "destination",
        metavar="s3://BUCKET[/PATH]",
        help="the Cluster's destinationPath (the folder above serverName)",
    )
    parser.add_argument(
        "--server-name",
        required=True,
        help="the serverName the cluster archives under (CNPG's default is the "
        "cluster's name; after a recovery it usually differs)",
    )
    parser.add_argument(
        "--credentials",
        required=True,
        metavar="FILE.sops.yaml",
        help="the SOPS/age-encrypted cnpg-backup-s3 Secret (read-only keys do)",
    )
    parser.add_argument(
        "--age-identity",
        "--identity",
        dest="age_identity",
        metavar="FILE",
        default=None,
        help="the age identity file (default: SOPS_AGE_KEY_FILE, SOPS_AGE_KEY, "
        "then ~/.config/sops/age/keys.txt)",
    )
    parser.add_argument(
        "--endpoint-url",
        default=None,
        help="the S3 endpoint (default: the credentials file's ENDPOINT)",
    )
    parser.add_argument(
        "--ca-bundle",
        default=None,
        metavar="PEM",
        help="the CA that signed the endpoint's certificate (a private MinIO "
        "or Ceph RGW); default: the system's trust store",
    )
    parser.add_argument(
        "--s3-checksums",
        default="auto",
        choices=("auto", "when_supported", "when_required"),
        help="boto3's request checksums: auto (default) sends them to AWS "
        "only; when_required suits S3-compatible stores that reject them",
    )


def open_location(args: argparse.Namespace):
    """The BucketLocation the arguments name, its credentials decrypted (MAC verified)."""
    from pgdrill.credentials.location import BucketLocation
    from pgdrill.credentials.s3client import S3Options
    from pgdrill.credentials.secret import load_s3_credentials

    options = S3Options(getattr(args, "ca_bundle", None), getattr(args, "s3_checksums", "auto"))
    identities = [args.age_identity] if args.age_identity else None
    credentials = load_s3_credentials(args.credentials, identities)
    return BucketLocation(
        args.destination, args.server_name, credentials, args.endpoint_url, options
    )

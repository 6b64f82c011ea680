"""The arguments that name and open one server's folder of a bucket, shared by
`bucket-report`, `verify-backup` and `pgdrill backups s3://...`."""

from __future__ import annotations

import argparse


def bucket_arguments(parser: argparse.ArgumentParser) -> None:
    """s3://BUCKET[/PATH], --server-name, --credentials, --age-identity, --endpoint-url."""
    parser.add_argument("destination", metavar="s3://BUCKET[/PATH]",
                        help="the Cluster's destinationPath (the folder above serverName)")
    parser.add_argument("--server-name", required=True,
                        help="the serverName the cluster archives under (CNPG's default is the "
                             "cluster's name; after a recovery it usually differs)")
    parser.add_argument("--credentials", required=True, metavar="FILE.sops.yaml",
                        help="the SOPS/age-encrypted cnpg-backup-s3 Secret (read-only keys do)")
    parser.add_argument("--age-identity", "--identity", dest="age_identity", metavar="FILE",
                        default=None,
                        help="the age identity file (default: SOPS_AGE_KEY_FILE, SOPS_AGE_KEY, "
                             "then ~/.config/sops/age/keys.txt)")
    parser.add_argument("--endpoint-url", default=None,
                        help="the S3 endpoint (default: the credentials file's ENDPOINT)")


def open_location(args: argparse.Namespace):
    """The BucketLocation the arguments name, its credentials decrypted (MAC verified)."""
    from pgdrill.bucket.location import BucketLocation
    from pgdrill.credentials import load_s3_credentials

    identities = [args.age_identity] if args.age_identity else None
    credentials = load_s3_credentials(args.credentials, identities)
    return BucketLocation(args.destination, args.server_name, credentials, args.endpoint_url)

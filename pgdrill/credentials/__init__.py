"""Credentials and where they lead: S3 credentials only from SOPS/age files (secret, sops),
environment files, the one S3 client, and a bucket location (endpoint, path, credentials)."""


def __getattr__(name: str):
    # `pgdrill.credentials` was one module before 0.2; its names are now
    # pgdrill.credentials.secret's
    from pgdrill._moved import old_names

    return old_names(__name__, "pgdrill.credentials.secret", name)

#!/usr/bin/env python3
"""Pack a local directory into a single-layer OCI image tarball (no registry,
no Docker) for `ctr images import`.

    python3 lab/mkimage.py ROOTFS_DIR NAME:TAG OUT.tar [--entrypoint /bin/sh ...] [--cmd ...]
        [--entrypoint-json '["/manager"]'] [--cmd-json '["pgdrill","--help"]']
        [--user 26:26] [--env KEY=VALUE ...] [--workdir /] [--label KEY=VALUE ...]
        [--gzip-level 9]

Used by the lab to make the busybox test image and the sandbox ("pause") image
from Debian's busybox-static, and by lab/images/build.sh for the CNPG images.

The layer keeps each entry's numeric owner, group, mode, symlink target and
hard links exactly as they are on disk (run as root so that the rootfs could be
made with the right owners); names (uname/gname) are left empty and every mtime
is 0, so the same tree always gives the same digests. Sockets are skipped;
extended attributes (file capabilities) are not copied.

--cmd/--entrypoint take words that do not start with '-' (argparse); use
--cmd-json/--entrypoint-json for e.g. ["pgdrill", "--help"]. --cmd with no word
means no Cmd. --env replaces the default PATH when it sets PATH.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import tarfile
import tempfile


class HashWriter:
    """File-like sink that hashes and counts what goes through it. With os_byte,
    byte 9 of the stream (the gzip header's OS field, which GzipFile writes as
    255) is set to it, so the output is byte-identical to gzip.compress()'s."""

    def __init__(self, out, os_byte=None):
        self.out, self.h, self.n, self.os_byte = out, hashlib.sha256(), 0, os_byte

    def write(self, b):
        if self.os_byte is not None and self.n <= 9 < self.n + len(b):
            i = 9 - self.n
            b = bytes(b[:i]) + self.os_byte + bytes(b[i + 1 :])
        self.h.update(b)
        self.n += len(b)
        return self.out.write(b)

    def flush(self):
        self.out.flush()


def blob(tf, data):
    d = hashlib.sha256(data).hexdigest()
    ti = tarfile.TarInfo("blobs/sha256/" + d)
    ti.size = len(data)
    ti.mtime = 0
    tf.addfile(ti, io.BytesIO(data))
    return "sha256:" + d, len(data)


def write_layer(rootfs, out, level):
    """Write the gzipped layer of ROOTFS to file OUT; returns (diff_id, digest, size)."""
    zsink = HashWriter(out, os_byte=gzip.compress(b"", mtime=0)[9:10])
    with gzip.GzipFile(filename="", mode="wb", fileobj=zsink, compresslevel=level, mtime=0) as gz:
        tsink = HashWriter(gz)
        with tarfile.open(fileobj=tsink, mode="w|", format=tarfile.PAX_FORMAT) as lt:
            for root, dirs, files in os.walk(rootfs):
                dirs.sort()
                for n in sorted(dirs) + sorted(files):
                    p = os.path.join(root, n)
                    ti = lt.gettarinfo(p, os.path.relpath(p, rootfs))
                    if ti is None:  # socket
                        continue
                    ti.mtime, ti.uname, ti.gname = 0, "", ""
                    if ti.isfile():
                        with open(p, "rb") as f:
                            lt.addfile(ti, f)
                    else:
                        lt.addfile(ti)
    return ("sha256:" + tsink.h.hexdigest(), "sha256:" + zsink.h.hexdigest(), zsink.n)


def kv(items):
    out = {}
    for it in items:
        k, sep, v = it.partition("=")
        if not sep:
            raise SystemExit(f"expected KEY=VALUE, got {it!r}")
        out[k] = v
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rootfs")
    ap.add_argument("ref")
    ap.add_argument("out")
    ap.add_argument("--entrypoint", nargs="*", default=None)
    ap.add_argument("--cmd", nargs="*", default=["/bin/sh"])
    ap.add_argument("--entrypoint-json", default=None)
    ap.add_argument("--cmd-json", default=None)
    ap.add_argument("--user", default=None, help="e.g. 26:26 (numeric, for runAsNonRoot)")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE (repeatable)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--label", action="append", default=[], help="KEY=VALUE (repeatable)")
    ap.add_argument("--gzip-level", type=int, default=9)
    a = ap.parse_args()

    entrypoint = json.loads(a.entrypoint_json) if a.entrypoint_json else a.entrypoint
    cmd = json.loads(a.cmd_json) if a.cmd_json is not None else a.cmd
    env = {"PATH": "/bin:/usr/bin:/sbin:/usr/sbin"}
    env.update(kv(a.env))
    labels = kv(a.label)

    outdir = os.path.dirname(os.path.abspath(a.out))
    with tempfile.TemporaryFile(dir=outdir) as lf:
        diff_id, ldig, lsize = write_layer(a.rootfs, lf, a.gzip_level)
        lf.seek(0)
        tmp_out = a.out + ".part"
        with tarfile.open(tmp_out, "w") as tf:
            ti = tarfile.TarInfo("blobs/sha256/" + ldig.split(":", 1)[1])
            ti.size = lsize
            ti.mtime = 0
            tf.addfile(ti, lf)
            config = {"Env": [f"{k}={v}" for k, v in env.items()]}
            if cmd:
                config["Cmd"] = cmd
            if entrypoint:
                config["Entrypoint"] = entrypoint
            if a.user:
                config["User"] = a.user
            if a.workdir:
                config["WorkingDir"] = a.workdir
            if labels:
                config["Labels"] = labels
            cfg = {
                "architecture": "amd64",
                "os": "linux",
                "config": config,
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            }
            cdig, csize = blob(tf, json.dumps(cfg).encode())
            man = {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": cdig,
                    "size": csize,
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": ldig,
                        "size": lsize,
                    }
                ],
            }
            mdig, msize = blob(tf, json.dumps(man).encode())
            index = {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": mdig,
                        "size": msize,
                        "annotations": {
                            "org.opencontainers.image.ref.name": a.ref,
                            "io.containerd.image.name": a.ref,
                        },
                    }
                ],
            }
            for name, data in (
                ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
                ("index.json", json.dumps(index).encode()),
            ):
                ti = tarfile.TarInfo(name)
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
        os.replace(tmp_out, a.out)
    print(a.out, a.ref, mdig)


if __name__ == "__main__":
    main()

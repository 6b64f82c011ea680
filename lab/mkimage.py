#!/usr/bin/env python3
"""Pack a local directory into a single-layer OCI image tarball (no registry,
no Docker) for `ctr images import`.

    python3 lab/mkimage.py ROOTFS_DIR NAME:TAG OUT.tar [--entrypoint /bin/sh ...] [--cmd ...]

Used by the lab to make the busybox test image and the sandbox ("pause") image
from Debian's busybox-static.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import tarfile


def blob(tf, data):
    d = hashlib.sha256(data).hexdigest()
    ti = tarfile.TarInfo("blobs/sha256/" + d)
    ti.size = len(data)
    ti.mtime = 0
    tf.addfile(ti, io.BytesIO(data))
    return "sha256:" + d, len(data)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rootfs")
    ap.add_argument("ref")
    ap.add_argument("out")
    ap.add_argument("--entrypoint", nargs="*", default=None)
    ap.add_argument("--cmd", nargs="*", default=["/bin/sh"])
    a = ap.parse_args()

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as lt:
        for root, dirs, files in os.walk(a.rootfs):
            dirs.sort()
            for n in sorted(dirs) + sorted(files):
                p = os.path.join(root, n)
                ti = lt.gettarinfo(p, os.path.relpath(p, a.rootfs))
                ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = 0, 0, 0, "", ""
                if ti.isfile():
                    with open(p, "rb") as f:
                        lt.addfile(ti, f)
                else:
                    lt.addfile(ti)
    layer_tar = raw.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_tar).hexdigest()
    layer_gz = gzip.compress(layer_tar, mtime=0)

    with tarfile.open(a.out, "w") as tf:
        ldig, lsize = blob(tf, layer_gz)
        cfg = {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/bin:/usr/bin:/sbin:/usr/sbin"], "Cmd": a.cmd,
                       **({"Entrypoint": a.entrypoint} if a.entrypoint else {})},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
        cdig, csize = blob(tf, json.dumps(cfg).encode())
        man = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": cdig, "size": csize},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": ldig, "size": lsize}],
        }
        mdig, msize = blob(tf, json.dumps(man).encode())
        index = {
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": mdig, "size": msize,
                           "annotations": {"org.opencontainers.image.ref.name": a.ref,
                                           "io.containerd.image.name": a.ref}}],
        }
        for name, data in (("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
                           ("index.json", json.dumps(index).encode())):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    print(a.out, a.ref, mdig)


if __name__ == "__main__":
    main()

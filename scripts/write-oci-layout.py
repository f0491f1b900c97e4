#!/usr/bin/env python3
"""write-oci-layout.py — write one single-layer, FROM-scratch image as an OCI image layout.

Called by scripts/build-images.sh; needs only Python 3's standard library. The layout
(https://github.com/opencontainers/image-spec/blob/main/image-layout.md) is what
`skopeo copy oci:DIR docker://REGISTRY/NAME:TAG` pushes:

    DIR/oci-layout                 {"imageLayoutVersion": "1.0.0"}
    DIR/index.json                 one manifest, tagged (org.opencontainers.image.ref.name)
    DIR/blobs/sha256/<digest>      the gzip layer, the image config, the manifest

The layer is reproducible: entries sorted, parent directories listed, owner 0:0, every mtime
and the config's `created` set to --epoch, gzip without a name or time. The same inputs give
the same digests.

The entrypoint must be a static executable: the image has no dynamic loader, no libc and no
shell, so a dynamically linked binary would fail with a bare "no such file or directory".
"""

import argparse
import datetime
import gzip
import hashlib
import io
import json
import os
import shutil
import struct
import sys
import tarfile
import tempfile

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
PT_INTERP = 3


class HashingWriter(io.RawIOBase):
    """Forwards writes to `sink` while counting bytes and hashing them (SHA-256)."""

    def __init__(self, sink):
        super().__init__()
        self.sink, self.sha256, self.size = sink, hashlib.sha256(), 0

    def writable(self):
        return True

    def tell(self):
        return self.size

    def write(self, data):
        self.sha256.update(data)
        self.size += len(data)
        self.sink.write(data)
        return len(data)


def fail(message):
    sys.exit(f"write-oci-layout: error: {message}")


def check_static(path):
    """Fails unless `path` is an ELF executable without a program interpreter (PT_INTERP)."""
    with open(path, "rb") as f:
        header = f.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
            fail(f"{path} is not a 64-bit little-endian ELF executable")
        phoff, = struct.unpack_from("<Q", header, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", header, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    for i in range(phnum):
        p_type, = struct.unpack_from("<I", table, i * phentsize)
        if p_type == PT_INTERP:
            fail(f"{path} is dynamically linked (it names a loader); the image has none: "
                 "build it with -C target-feature=+crt-static")


def tar_info(name, mode, epoch, size=0, kind=tarfile.REGTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime, info.size = kind, mode, epoch, size
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_layer(path, files, epoch):
    """Writes the gzip tar layer of `files` [(source, path in image, mode)] to `path`;
    returns (digest of the gzip blob, its size, diff_id of the uncompressed tar)."""
    # every ancestor directory of every file: usr, usr/local, usr/local/bin, …
    ancestors = sorted({"/".join(parts[:n])
                        for _, dest, _ in files
                        for parts in [dest.split("/")]
                        for n in range(1, len(parts))})
    with open(path, "wb") as out:
        blob = HashingWriter(out)
        with gzip.GzipFile(filename="", mode="wb", fileobj=blob, compresslevel=6, mtime=0) as gz:
            raw = HashingWriter(gz)
            with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
                for d in ancestors:
                    tar.addfile(tar_info(d + "/", 0o755, epoch, kind=tarfile.DIRTYPE))
                for source, dest, mode in sorted(files, key=lambda f: f[1]):
                    size = os.path.getsize(source)
                    with open(source, "rb") as f:
                        tar.addfile(tar_info(dest, mode, epoch, size), f)
    return f"sha256:{blob.sha256.hexdigest()}", blob.size, f"sha256:{raw.sha256.hexdigest()}"


def put_blob(blobs, data):
    """Stores `data` (bytes) under its digest; returns its descriptor fields."""
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, digest), "wb") as f:
        f.write(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def canonical(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="layout directory (replaced)")
    parser.add_argument("--tag", required=True, help="the ref name in index.json, e.g. 0.1.0")
    parser.add_argument("--arch", required=True, help="OCI architecture: amd64, arm64")
    parser.add_argument("--epoch", type=int, required=True,
                        help="seconds since 1970 for every timestamp")
    parser.add_argument("--entrypoint", required=True,
                        help="SOURCE:PATH, the static binary and where it goes in the image")
    parser.add_argument("--file", action="append", default=[], metavar="SOURCE:PATH",
                        help="another read-only file in the image (repeatable)")
    parser.add_argument("--user", required=True, help="UID:GID the entrypoint runs as")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    def split(spec):
        source, sep, dest = spec.partition(":")
        if not sep or not dest.startswith("/") or not os.path.isfile(source):
            fail(f"{spec!r}: expected SOURCE:/PATH with SOURCE an existing file")
        return source, dest.lstrip("/")

    binary, entry_path = split(args.entrypoint)
    check_static(binary)
    files = [(binary, entry_path, 0o755)] + [(*split(spec), 0o644) for spec in args.file]
    labels = dict(label.split("=", 1) for label in args.label)
    created = datetime.datetime.fromtimestamp(args.epoch, datetime.timezone.utc)
    created = created.strftime("%Y-%m-%dT%H:%M:%SZ")

    parent = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".oci-", dir=parent)
    try:
        blobs = os.path.join(work, "blobs", "sha256")
        os.makedirs(blobs)
        layer_path = os.path.join(blobs, "layer.partial")
        layer_digest, layer_size, diff_id = write_layer(layer_path, files, args.epoch)
        os.rename(layer_path, os.path.join(blobs, layer_digest.split(":")[1]))

        config = {
            "created": created,
            "architecture": args.arch,
            "os": "linux",
            "config": {
                "User": args.user,
                "Entrypoint": ["/" + entry_path],
                "Env": args.env,
                "WorkingDir": "/",
                "Labels": labels,
            },
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": created, "created_by": "scripts/build-images.sh"}],
        }
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, **put_blob(blobs, canonical(config))},
            "layers": [{"mediaType": MEDIA_LAYER, "digest": layer_digest, "size": layer_size}],
            "annotations": {k: v for k, v in labels.items()
                            if k.startswith("org.opencontainers.image.")},
        }
        index = {
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [{
                "mediaType": MEDIA_MANIFEST,
                **put_blob(blobs, canonical(manifest)),
                "platform": {"architecture": args.arch, "os": "linux"},
                "annotations": {"org.opencontainers.image.ref.name": args.tag},
            }],
        }
        with open(os.path.join(work, "index.json"), "wb") as f:
            f.write(canonical(index))
        with open(os.path.join(work, "oci-layout"), "wb") as f:
            f.write(canonical({"imageLayoutVersion": "1.0.0"}))
        os.chmod(work, 0o755)
        shutil.rmtree(args.out, ignore_errors=True)
        os.rename(work, args.out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    print(f"{args.out}: {index['manifests'][0]['digest']} ({layer_size} bytes compressed)")


if __name__ == "__main__":
    main()

#!/usr/bin/env node
// Writes an OCI image archive (oci-layout, index.json, blobs/sha256/...) from a root
// filesystem directory, offline: one uncompressed layer, a config, a manifest. The result
// imports with `ctr images import` and loads with any OCI tool (podman load, skopeo copy
// oci-archive:...).
//
//   node oci-archive.mjs --rootfs DIR --name REF --out FILE.tar
//                        [--entrypoint JSON] [--cmd JSON] [--env K=V]...
//
// The layer tar is reproducible: sorted names, mtime 0, owner root, so the same files give the
// same digest.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync, mkdirSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";

const { values: opts } = parseArgs({
  options: {
    rootfs: { type: "string" },
    name: { type: "string" },
    out: { type: "string" },
    entrypoint: { type: "string" },
    cmd: { type: "string" },
    env: { type: "string", multiple: true, default: [] },
  },
});
for (const k of ["rootfs", "name", "out"]) {
  if (!opts[k]) {
    console.error(`oci-archive: --${k} is required`);
    process.exit(2);
  }
}

const work = mkdtempSync(join(tmpdir(), "twill-oci-"));
try {
  const blobs = join(work, "blobs", "sha256");
  mkdirSync(blobs, { recursive: true });
  const sha256 = (buf) => createHash("sha256").update(buf).digest("hex");
  const putBlob = (buf) => {
    const digest = sha256(buf);
    writeFileSync(join(blobs, digest), buf);
    return { digest: `sha256:${digest}`, size: buf.length };
  };

  const layerFile = join(work, "layer.tar");
  tar(["--create", "--file", layerFile, "--directory", resolve(opts.rootfs), "."]);
  const layerBuf = readFileSync(layerFile);
  rmSync(layerFile);
  const layer = putBlob(layerBuf);

  const config = putBlob(
    Buffer.from(
      JSON.stringify({
        architecture: goArch(process.arch),
        os: "linux",
        config: {
          Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", ...opts.env],
          ...(opts.entrypoint ? { Entrypoint: JSON.parse(opts.entrypoint) } : {}),
          ...(opts.cmd ? { Cmd: JSON.parse(opts.cmd) } : {}),
        },
        rootfs: { type: "layers", diff_ids: [layer.digest] },
        history: [{ created_by: "twill scripts/image: files from the build machine" }],
      }),
    ),
  );

  const manifest = putBlob(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
        layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", ...layer }],
      }),
    ),
  );

  const tag = opts.name.includes(":") ? opts.name.slice(opts.name.lastIndexOf(":") + 1) : "latest";
  writeFileSync(join(work, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  writeFileSync(
    join(work, "index.json"),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          ...manifest,
          // containerd names the imported image by the first; other tools read the tag.
          annotations: { "io.containerd.image.name": opts.name, "org.opencontainers.image.ref.name": tag },
        },
      ],
    }),
  );

  const out = resolve(opts.out);
  mkdirSync(dirname(out), { recursive: true });
  const tmpOut = `${out}.tmp-${process.pid}`;
  tar(["--create", "--file", tmpOut, "--directory", work, "oci-layout", "index.json", "blobs"]);
  renameSync(tmpOut, out);
  console.log(`${opts.name} ${out} ${(statSync(out).size / 1e6).toFixed(1)} MB layer ${layer.digest.slice(0, 19)}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}

function tar(args) {
  execFileSync(
    "tar",
    ["--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner", "--format=posix",
      "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime", ...args],
    { stdio: ["ignore", "inherit", "inherit"] },
  );
}

function goArch(arch) {
  return { x64: "amd64", arm64: "arm64", arm: "arm", ppc64: "ppc64le", s390x: "s390x" }[arch] ?? arch;
}

import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";

export interface ServingCert {
  certFile: string;
  keyFile: string;
}

/**
 * A self-signed certificate for 127.0.0.1 and localhost. Being self-signed with CA:TRUE, the
 * certificate is also the CA file clients trust.
 */
export async function makeServingCert(dir: string): Promise<ServingCert> {
  const certFile = join(dir, "serving.crt");
  const keyFile = join(dir, "serving.key");
  await openssl([
    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
    "-subj", "/CN=twill-test-apiserver",
    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
    "-addext", "basicConstraints=critical,CA:TRUE",
    "-keyout", keyFile, "-out", certFile,
  ]);
  return { certFile, keyFile };
}

/** The RSA key the apiserver signs service-account tokens with (and verifies them by). */
export async function makeServiceAccountKey(dir: string): Promise<string> {
  const keyFile = join(dir, "service-account.key");
  await openssl(["genrsa", "-out", keyFile, "2048"]);
  return keyFile;
}

export interface StaticToken {
  token: string;
  user: string;
  uid: string;
  groups: string[];
}

export const newToken = (): string => randomBytes(24).toString("hex");

/** kube-apiserver --token-auth-file: token,user,uid,"group1,group2" per line. */
export function writeTokenFile(dir: string, tokens: readonly StaticToken[]): string {
  const file = join(dir, "tokens.csv");
  const lines = tokens.map((t) => `${t.token},${t.user},${t.uid},"${t.groups.join(",")}"`);
  writeFileSync(file, lines.join("\n") + "\n", { mode: 0o600 });
  return file;
}

async function openssl(args: string[]): Promise<void> {
  const r = await execa("openssl", args, { reject: false, stdin: "ignore" });
  if (r.exitCode !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr}`);
}

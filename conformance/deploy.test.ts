import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { manifestLeaseNamespace, manifestObjects } from "../testkit/kubernetes.js";

/**
 * deploy/twill.yaml's grants, read as plain data: what a stolen twill token can do to Leases.
 * Those of kube-system include the leader-election Leases of kube-controller-manager and
 * kube-scheduler; whoever may write them can stop or split the control plane's leaders.
 */

interface Rule {
  apiGroups?: string[];
  resources?: string[];
  verbs?: string[];
}
interface RbacRole {
  kind: string;
  metadata: { name: string; namespace?: string };
  rules?: Rule[];
}

const READ = new Set(["get", "list", "watch"]);
const objects = manifestObjects();
const roles = objects.filter((o) => o.kind === "Role" || o.kind === "ClusterRole") as unknown as RbacRole[];

const coversLeases = (r: Rule): boolean =>
  (r.apiGroups ?? []).some((g) => g === "coordination.k8s.io" || g === "*") && (r.resources ?? []).some((x) => x === "leases" || x === "*");

/** Every (role, verb) pair of `of` that lets the token change Leases outside `own`. */
function leaseWritesOutside(of: readonly RbacRole[], own: string): string[] {
  const found: string[] = [];
  for (const role of of) {
    const where = role.kind === "ClusterRole" ? "every namespace" : role.metadata.namespace!;
    for (const rule of role.rules ?? []) {
      if (!coversLeases(rule)) continue;
      for (const verb of rule.verbs ?? []) {
        if (where === own || READ.has(verb)) continue;
        found.push(`${role.kind} ${role.metadata.namespace ?? ""}/${role.metadata.name}: ${verb} leases in ${where}`);
      }
    }
  }
  return found;
}

describe("deploy/twill.yaml's Lease permissions", () => {
  const own = manifestLeaseNamespace();

  it("keeps the subnet Leases in a namespace of twill's own, which the manifest creates before anything in it", () => {
    expect(own).not.toBe("kube-system");
    const index = objects.findIndex((o) => o.kind === "Namespace" && o.metadata?.name === own);
    expect(index).toBeGreaterThanOrEqual(0);
    const firstInside = objects.findIndex((o) => o.metadata?.namespace === own);
    expect(index).toBeLessThan(firstInside);
  });

  it("grants no write on Leases outside it, by any Role or ClusterRole", () => {
    expect(leaseWritesOutside(roles, own)).toEqual([]);
    // ClusterRoles reach every namespace: none of them may touch Leases at all.
    expect(roles.filter((r) => r.kind === "ClusterRole" && (r.rules ?? []).some(coversLeases)).map((r) => r.metadata.name)).toEqual([]);
  });

  it("grants what the datastore does there: claim, renew, take over, give back, list and watch", () => {
    const verbs = roles
      .filter((r) => r.kind === "Role" && r.metadata.namespace === own)
      .flatMap((r) => (r.rules ?? []).filter(coversLeases).flatMap((rule) => rule.verbs ?? []));
    expect(verbs.sort()).toEqual(["create", "delete", "get", "list", "update", "watch"]);
  });

  it("replaces the read-write Role of earlier versions in kube-system with a read-only one of the same name", () => {
    // kubectl apply never prunes: a Role of another name would leave the old one's write access.
    const inKubeSystem = roles.filter((r) => r.kind === "Role" && r.metadata.namespace === "kube-system");
    expect(inKubeSystem.map((r) => r.metadata.name)).toEqual(["twill"]);
    expect(inKubeSystem[0]!.rules).toEqual([{ apiGroups: ["coordination.k8s.io"], resources: ["leases"], verbs: ["list", "watch"] }]);
  });

  it("would find a write on kube-system's Leases, as earlier versions granted, or through wildcards", () => {
    const earlier: RbacRole = {
      kind: "Role",
      metadata: { name: "twill", namespace: "kube-system" },
      rules: [{ apiGroups: ["coordination.k8s.io"], resources: ["leases"], verbs: ["create", "get", "update", "delete", "list", "watch"] }],
    };
    const wildcard: RbacRole = { kind: "ClusterRole", metadata: { name: "x" }, rules: [{ apiGroups: ["*"], resources: ["*"], verbs: ["patch"] }] };
    expect(leaseWritesOutside([earlier, wildcard], own)).toEqual([
      "Role kube-system/twill: create leases in kube-system",
      "Role kube-system/twill: update leases in kube-system",
      "Role kube-system/twill: delete leases in kube-system",
      "ClusterRole /x: patch leases in every namespace",
    ]);
  });
});

/** Shell words that are no program: builtins and keywords of the manifests' scripts. */
const SHELL_WORDS = new Set(["set", "until", "do", "done", "exec", "echo", "if", "then", "else", "fi", "while", "for", "in", "true", "false", "cd", "[", "test", "exit", "#"]);

/** The programs the manifests' `sh -c` scripts start: each line's first word, after shell keywords. */
function scriptPrograms(text: string): Set<string> {
  const programs = new Set<string>();
  const scripts = [...text.matchAll(/^( *)- \|\n((?:\1 +.*\n|\s*\n)+)/gm)].map((m) => m[2]!);
  for (const script of scripts) {
    for (const raw of script.split("\n")) {
      const words = raw.trim().replace(/^#.*/, "").split(/\s+/).filter(Boolean);
      while (words.length && SHELL_WORDS.has(words[0]!)) words.shift();
      const first = words[0];
      if (first && /^[a-z/]/.test(first) && !raw.trim().startsWith("--")) programs.add(first);
    }
  }
  return programs;
}

describe("the image has what the manifests' scripts run", () => {
  it("every program of the install and uninstall scripts is one scripts/image puts in the image", () => {
    const image = readFileSync(join(import.meta.dirname, "../scripts/image"), "utf8");
    const tools = new Set(/^rootfs_add_tool "\$root" (.*)$/m.exec(image)![1]!.split(/\s+/));
    const run = [...scriptPrograms(readFileSync(join(import.meta.dirname, "../deploy/twill.yaml"), "utf8")), ...scriptPrograms(readFileSync(join(import.meta.dirname, "../deploy/uninstall.yaml"), "utf8"))];
    expect(run).toEqual(expect.arrayContaining(["cp", "mv", "/opt/twill/bin/twilld", "sleep"]));
    const missing = run.filter((p) => !p.startsWith("/opt/twill/bin/") && !tools.has(p));
    expect(missing).toEqual([]);
  });
});

import { existsSync } from "node:fs";
import { Code } from "../../../shared/cni/errors.js";
import { corruptFirstCidr, setKey, unsupportedProbes, withoutKey, withVersion } from "../config.js";
import { fail, notApplicable, describe, type Case, type CaseContext } from "../context.js";
import { errorProblems, namesVariable, resultProblems, snippet } from "../shape.js";

/** Checklist lines 1-6: VERSION, versions, environment, decoding, error and result shapes. */

const REQUIRED_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

async function version(ctx: CaseContext, asked: string) {
  const out = await ctx.call("VERSION", null, null, { env: { CNI_PATH: null }, stdin: JSON.stringify({ cniVersion: asked }) });
  if (out.code !== 0) fail(`VERSION failed: ${describe(out)}`);
  if (!out.parsed.ok) fail(`VERSION: ${out.parsed.problem}`);
  return out.parsed.ok ? (out.parsed.doc as Record<string, unknown>) : {};
}

/** An ADD without (or with a bad) variable must fail with code 4 and name it. */
function envCase(id: string, variable: string, value: string | null, command = "ADD"): Case {
  const how = value === null ? "without" : `with an invalid`;
  return {
    id,
    name: `${command} ${how} ${variable} fails with code 4 naming it`,
    async run(ctx) {
      const conf = command === "CHECK" ? ctx.conf({ version: ctx.versionAtLeast("0.4.0") }) : ctx.conf();
      const pod = await ctx.pod();
      const text = ctx.expectError(await ctx.call(command, pod, conf, { env: { [variable]: value } }), [Code.InvalidEnv], `${command} ${how} ${variable}`);
      if (!namesVariable(text, variable)) fail(`the error does not name ${variable}: ${snippet(text)}`);
    },
  };
}

export const protocolCases: Case[] = [
  {
    id: "1.1",
    name: "VERSION with only CNI_COMMAND set answers the asked cniVersion and a version list",
    async run(ctx) {
      const doc = await version(ctx, ctx.version);
      if (doc.cniVersion !== ctx.version) fail(`asked ${ctx.version}, answered cniVersion ${JSON.stringify(doc.cniVersion)}`);
      const list = doc.supportedVersions;
      if (!Array.isArray(list) || list.length === 0 || !list.every((v) => typeof v === "string")) {
        fail(`supportedVersions is not a list of versions: ${JSON.stringify(list)}`);
      }
    },
  },
  {
    id: "1.2",
    name: "VERSION lists 0.3.0, 0.3.1, 0.4.0, 1.0.0 and 1.1.0",
    async run(ctx) {
      const doc = await version(ctx, ctx.version);
      const list = Array.isArray(doc.supportedVersions) ? doc.supportedVersions : [];
      const missing = REQUIRED_VERSIONS.filter((v) => !list.includes(v));
      if (missing.length > 0) fail(`supportedVersions lacks ${missing.join(", ")}`);
    },
  },
  {
    id: "2.1",
    name: "ADD with a cniVersion the plugin does not support fails with code 1 and creates nothing",
    async run(ctx) {
      const pod = await ctx.pod();
      ctx.expectError(await ctx.add(pod, withVersion(ctx.conf(), "99.0.0")), [Code.IncompatibleVersion], "ADD with cniVersion 99.0.0");
      const state = await ctx.podState(pod);
      if (state.links.some((l) => l.ifname === pod.ifname)) fail(`the failed ADD left ${pod.ifname} in the sandbox`);
    },
  },
  envCase("3.1", "CNI_CONTAINERID", null),
  envCase("3.2", "CNI_NETNS", null),
  envCase("3.3", "CNI_IFNAME", null),
  envCase("3.4", "CNI_COMMAND", "BOGUS"),
  envCase("3.5", "CNI_NETNS", null, "CHECK"),
  envCase("3.6", "CNI_CONTAINERID", null, "DEL"),
  {
    id: "3.7",
    name: "ADD with a container ID outside ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$ fails with code 4 and writes nothing",
    async run(ctx) {
      const escape = `/tmp/${ctx.node}-escape`;
      const ids = [`../../../../../../../..${escape}`, "pod/../../x", ".hidden", "-leading-dash", "with space"];
      const accepted: string[] = [];
      for (const id of ids) {
        const pod = await ctx.pod();
        const out = await ctx.add(pod, ctx.conf(), { env: { CNI_CONTAINERID: id } });
        if (out.code === 0) {
          accepted.push(JSON.stringify(id));
          continue;
        }
        const text = ctx.expectError(out, [Code.InvalidEnv], `ADD with CNI_CONTAINERID=${JSON.stringify(id)}`);
        if (!namesVariable(text, "CNI_CONTAINERID")) fail(`the error does not name CNI_CONTAINERID: ${snippet(text)}`);
      }
      const escaped = existsSync(escape) || existsSync(`${escape}.lock`);
      if (accepted.length > 0) fail(`ADD accepted container IDs ${accepted.join(", ")}${escaped ? `; it wrote ${escape}` : ""}`);
      if (escaped) fail(`a rejected container ID still wrote ${escape}`);
    },
  },
  envCase("3.8", "CNI_IFNAME", "abcdefghijklmnop"),
  {
    id: "4.1",
    name: "stdin that is not JSON fails with code 6",
    async run(ctx) {
      ctx.expectError(await ctx.call("ADD", await ctx.pod(), null, { stdin: "{ this is not json" }), [Code.DecodeFailure], "ADD with a non-JSON config");
    },
  },
  {
    id: "4.2",
    name: "a config without name fails with code 7",
    async run(ctx) {
      ctx.expectError(await ctx.add(await ctx.pod(), withoutKey(ctx.conf(), "name")), [Code.InvalidConfig], "ADD without name");
    },
  },
  {
    id: "4.3",
    name: "a network name with a path trick (../../etc) fails with code 7",
    async run(ctx) {
      ctx.expectError(await ctx.add(await ctx.pod(), setKey(ctx.conf(), "name", "../../etc")), [Code.InvalidConfig], 'ADD with name "../../etc"');
    },
  },
  {
    id: "4.4",
    name: "a config with an invalid CIDR fails with code 7",
    async run(ctx) {
      const bad = corruptFirstCidr(ctx.conf()) ?? notApplicable("the config has no CIDR to corrupt");
      ctx.expectError(await ctx.add(await ctx.pod(), bad.conf), [Code.InvalidConfig], `ADD with ${bad.path}=${bad.value}`);
    },
  },
  {
    id: "4.5",
    name: "an unsupported field value fails with code 2 naming key and value",
    async run(ctx) {
      const probes = unsupportedProbes(ctx.conf(), ctx.setup.unsupported);
      if (probes.length === 0) notApplicable("the config has no setting to probe (give --unsupported KEY=JSON)");
      const accepted: string[] = [];
      for (const p of probes) {
        const pod = await ctx.pod();
        const out = await ctx.add(pod, p.conf);
        const what = `${p.key}=${JSON.stringify(p.value)}`;
        if (out.code === 0) {
          accepted.push(what);
          await ctx.del(pod, { conf: p.conf });
          continue;
        }
        const text = ctx.expectError(out, [Code.UnsupportedField, Code.InvalidConfig], `ADD with ${what}`);
        const code = out.parsed.ok ? (out.parsed.doc as { code: number }).code : 0;
        const valueText = typeof p.value === "string" ? p.value : JSON.stringify(p.value);
        if (!text.includes(p.key)) fail(`ADD with ${what} gave code ${code} without naming the key: ${snippet(text)}`);
        if (code === Code.UnsupportedField && !text.includes(valueText)) fail(`code 2 for ${what} does not name the value: ${snippet(text)}`);
        if (code === Code.InvalidConfig) ctx.note(`${what} rejected as invalid config (7)`);
        return;
      }
      notApplicable(`the plugin accepted every probed value (${accepted.join(", ")})`);
    },
  },
  {
    id: "5.1",
    name: "an error is one JSON document {cniVersion, code, msg, details} on stdout with a non-zero exit",
    async run(ctx) {
      const out = await ctx.add(await ctx.pod(), ctx.conf(), { env: { CNI_IFNAME: null } });
      ctx.expectError(out, null, "ADD without CNI_IFNAME");
      const problems = errorProblems(out.parsed.ok ? out.parsed.doc : null);
      if (problems.length > 0) fail(`${problems.join("; ")}: ${snippet(out.stdout)}`);
    },
  },
  {
    id: "6.1",
    name: "ADD prints exactly one JSON document and exits 0",
    async run(ctx) {
      const out = await ctx.add(await ctx.pod(), ctx.conf());
      if (out.code !== 0) fail(`ADD failed: ${describe(out)}`);
      if (!out.parsed.ok) fail(out.parsed.problem);
    },
  },
  ...["0.3.1", "0.4.0", "1.0.0", "1.1.0"].map(
    (v, i): Case => ({
      id: `6.${i + 2}`,
      name: `ADD with cniVersion ${v} returns a ${v} result that matches the kernel`,
      async run(ctx) {
        if (!ctx.supports(v)) notApplicable(`the plugin does not list ${v}`);
        const pod = await ctx.pod();
        const result = await ctx.addOk(pod, ctx.conf({ version: v }));
        const problems = resultProblems(result, v);
        if (problems.length > 0) fail(problems.join("; "));
        await ctx.expectAttached(pod);
      },
    }),
  ),
  {
    id: "6.6",
    name: "every ips[].interface indexes an interface whose sandbox is CNI_NETNS",
    async run(ctx) {
      const pod = await ctx.pod();
      const result = await ctx.addOk(pod, ctx.conf());
      const ifaces: any[] = Array.isArray(result.interfaces) ? result.interfaces : [];
      const ips: any[] = Array.isArray(result.ips) ? result.ips : [];
      if (ips.length === 0) notApplicable("the result has no ips");
      ips.forEach((ip, n) => {
        if (typeof ip?.interface !== "number") fail(`ips[${n}] (${ip?.address}) has no interface index`);
        const iface = ifaces[ip.interface];
        if (iface?.sandbox !== pod.netns) {
          fail(`ips[${n}].interface=${ip.interface} is ${JSON.stringify(iface?.name)} with sandbox ${JSON.stringify(iface?.sandbox)}, not ${pod.netns}`);
        }
      });
    },
  },
];

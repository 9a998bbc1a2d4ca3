import { ApiException, type KubernetesListObject, type V1Node } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { LIST_PAGE, describeApiError, listInPages } from "./kubernetes-informer.js";

const nodes = (from: number, n: number): V1Node[] => Array.from({ length: n }, (_, i) => ({ metadata: { name: `node-${from + i}` } }));
// The API's JSON names the token "continue" (client-node's typed lists: "_continue").
const page = (items: V1Node[], token?: string): KubernetesListObject<V1Node> =>
  ({ metadata: { resourceVersion: "42", ...(token ? { continue: token } : {}) }, items }) as KubernetesListObject<V1Node>;

describe("listInPages", () => {
  it("asks for pages of LIST_PAGE until there is no continue token, and gives one list", async () => {
    const asked: (string | undefined)[] = [];
    const all = await listInPages(async (limit, token) => {
      expect(limit).toBe(LIST_PAGE);
      asked.push(token);
      return token === undefined ? page(nodes(0, 2), "p2") : token === "p2" ? page(nodes(2, 2), "p3") : page(nodes(4, 1));
    });
    expect(asked).toEqual([undefined, "p2", "p3"]);
    expect(all.items.map((n) => n.metadata!.name)).toEqual(["node-0", "node-1", "node-2", "node-3", "node-4"]);
    expect(all.metadata?.resourceVersion).toBe("42");
    expect(all.metadata?._continue).toBeUndefined();
  });

  it("begins again when the continue token expired (410 between pages), without doubling what it had", async () => {
    let calls = 0;
    const all = await listInPages(async (_limit, token) => {
      calls++;
      if (token === undefined) return page(nodes(0, 2), `t${calls}`);
      if (calls === 2) throw new ApiException(410, "Gone", { message: "continue token expired" }, {});
      return page(nodes(2, 1));
    });
    expect(calls).toBe(4);
    expect(all.items.map((n) => n.metadata!.name)).toEqual(["node-0", "node-1", "node-2"]);
  });

  it("passes on any other failure, and a 410 on the first page (nothing to resume)", async () => {
    await expect(listInPages(async () => Promise.reject(new ApiException(403, "Forbidden", {}, {})))).rejects.toMatchObject({ code: 403 });
    await expect(listInPages(async () => Promise.reject(new ApiException(410, "Gone", {}, {})))).rejects.toMatchObject({ code: 410 });
  });
});

describe("describeApiError", () => {
  it("names a request's deadline the same way whichever runtime's fetch hit it", () => {
    const timeout = Object.assign(new Error("The operation timed out."), { name: "TimeoutError" });
    expect(describeApiError(timeout)).toBe("timeout: the apiserver did not answer before the request's deadline");
    expect(describeApiError(new TypeError("fetch failed", { cause: timeout }))).toBe("timeout: the apiserver did not answer before the request's deadline");
    expect(describeApiError(new TypeError("fetch failed", { cause: new Error("connect ECONNREFUSED 127.0.0.1:6443") }))).toBe(
      "fetch failed (connect ECONNREFUSED 127.0.0.1:6443)",
    );
  });
});

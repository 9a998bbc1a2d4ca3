import { createHash } from "node:crypto";

/**
 * The names and texts of the policy ruleset. Only these carry anything a tenant chose (a
 * namespace, a policy or pod name) into the `nft -f` text, and nft refuses the whole
 * transaction for one bad item: a comment over 128 bytes ("comment too long"), a `"` (nft has
 * no escape inside a string) or a `$` (a variable reference, even inside quotes). One such
 * text would keep the node's previous ruleset in force for every pod. So object names never become nft
 * identifiers (those are hashes), and texts are cut to their limit and kept to a plain
 * alphabet here.
 */

/** NFTNL_UDATA_COMMENT_MAXLEN. */
export const COMMENT_MAX = 128;

/** What Kubernetes names are made of (DNS subdomains and labels), and the separators twill adds. */
const PLAIN = /^[A-Za-z0-9._/,: -]*$/;
/** "~" and a stableId: what a shortened text ends with. */
const HASH_SUFFIX = 17;

/**
 * A name part that depends only on what it names (a pod, a policy, a set's contents): a change
 * elsewhere renames nothing, so an update touches only what changed and counters survive it.
 */
export function stableId(text: string): string {
  let id = ids.get(text);
  if (id === undefined) {
    if (ids.size >= IDS_KEPT) ids.clear();
    id = createHash("sha256").update(text).digest("hex").slice(0, 16);
    ids.set(text, id);
  }
  return id;
}

/**
 * A compile asks for the same names again and again (a pod's chain, its counter, its map
 * entries), and hashing them anew was a good part of a whole compile. Bounded, as churn would
 * otherwise grow it for ever.
 */
const IDS_KEPT = 200_000;
const ids = new Map<string, string>();

/**
 * `text` itself when it is plain and at most `max` characters; else its plain beginning, `~`
 * and a hash of all of it, `max` characters in all: still readable, and two long names that
 * share a beginning stay apart.
 */
export function fitText(text: string, max: number): string {
  if (text.length <= max && PLAIN.test(text)) return text;
  const plain = text.replace(/[^A-Za-z0-9._/,: -]/g, "_");
  return `${plain.slice(0, Math.max(0, max - HASH_SUFFIX))}~${stableId(text)}`;
}

/** A chain's or counter's comment, `namespace/name direction`, fitted to nft's limit whatever the name's length. */
export function objectComment(key: string, direction: string): string {
  return `${fitText(key, COMMENT_MAX - direction.length - 1)} ${direction}`;
}

import { join } from "node:path";
import { UapiClient } from "../../agent/backend/wireguard/uapi.js";
import { wireguardGoFiles, type WireguardGoFiles } from "../../agent/backend/wireguard/wireguard-go.js";

/**
 * Where the testbed keeps a wireguard node's files: nodes share this machine's filesystem, so
 * each node's twilld is given a directory of its own for wireguard-go (`--wireguard-dir`) and
 * for its private key (`--wireguard-key`). Tests, the demo and the bench read them here.
 */

type Node = { dir: string };

export const wireguardDir = (node: Node): string => join(node.dir, "wg");
export const wireguardKeyFile = (node: Node): string => join(node.dir, "wg.key");
/** wireguard-go's socket, PID file and log on the node. */
export const wireguardFiles = (node: Node): WireguardGoFiles => wireguardGoFiles(wireguardDir(node));
/** The node's userspace device, through its UAPI socket. */
export const wireguardUapi = (node: Node): UapiClient => new UapiClient(wireguardFiles(node).socket);

/** The public key of the node's device, from the device's own answer; null before it has a key. */
export async function devicePublicKey(node: Node): Promise<string | null> {
  return (await wireguardUapi(node).get()).privateKey?.publicKey() ?? null;
}

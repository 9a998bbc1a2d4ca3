/**
 * twill ships one executable; `twill-ipam` and `twilld` are hard links to it, and the name it
 * is started under picks the program, as busybox does. A CNI runtime runs a plugin by its
 * `type`, and the DaemonSet runs /opt/twill/bin/twilld, so each keeps the name it is known by.
 */
export type Program = "twill" | "twill-ipam" | "twilld";

/**
 * The program for the name the process runs under: `argv0` as exec() was given it (a runtime
 * passes the plugin's path), else `argv1`. A name that is none of the three is the CNI plugin:
 * a runtime may install it under a prefixed or suffixed name, and it only answers CNI calls.
 */
export function programFor(argv0: string | undefined, argv1?: string): Program {
  const name = baseName(argv0 || argv1 || "");
  if (name.startsWith("twilld")) return "twilld";
  if (name.startsWith("twill-ipam")) return "twill-ipam";
  return "twill";
}

/** The last path element; no node:path, which the plugin's VERSION path does not otherwise load. */
const baseName = (path: string): string => path.slice(path.lastIndexOf("/") + 1);

// What a command of either CNI plugin runs beyond the protocol (ADD, CHECK, DEL, STATUS, GC),
// as one module both import: compiled with code splitting, the code twill and twill-ipam share
// would otherwise be chunks of its own, each loaded and linked apart on every start. twill-ipam
// run on its own loads twill's code with it; twill, run once per pod, loads one chunk.
export { createTwillPlugin } from "./twill/plugin.js";
export { createIpamPlugin } from "../ipam/plugin.js";
export { fileLogger } from "../shared/log.js";
export { inspectNetns } from "../shared/cni/inspect-netns.js";

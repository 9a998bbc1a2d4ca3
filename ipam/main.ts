// Placeholder so the executable builds while this program is written; replaced by its owner.
import { CniError, Code } from "../shared/cni/errors.js";
import { runPlugin, type Plugin } from "../shared/cni/skel.js";

const missing = async (): Promise<never> => {
  throw new CniError(Code.Internal, "not built yet");
};
const plugin: Plugin = { add: missing, del: missing, check: missing, status: missing, gc: missing };
export const main = () => runPlugin(plugin, "placeholder");

import type { Case } from "../context.js";
import { addCases } from "./add.js";
import { capabilityCases } from "./capabilities.js";
import { checkCases } from "./check.js";
import { delCases } from "./del.js";
import { protocolCases } from "./protocol.js";
import { statusGcCases } from "./status-gc.js";

/** Every case, in checklist order. */
export const allCases: Case[] = [...protocolCases, ...addCases, ...delCases, ...checkCases, ...statusGcCases, ...capabilityCases];

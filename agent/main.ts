// Placeholder so the executable builds while the agent is written; replaced by its owner.
process.stderr.write("twilld: not built yet\n");
process.exit(1);

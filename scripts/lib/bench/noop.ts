// The process-start floor for benchmarks: compiled exactly like twill, does nothing.
process.exit(0);

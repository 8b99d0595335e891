// How many worker processes the `workers` setting means.

/** `workers` as configured → how many processes: "auto" is one per CPU the process may use (at least one). */
export function workerCount(setting: number | 'auto', availableParallelism: number): number {
  return setting === 'auto' ? Math.max(1, availableParallelism) : setting;
}

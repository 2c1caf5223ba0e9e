/**
 * Transactions for one connection: `wrap(fn)` runs `fn` inside BEGIN ...
 * COMMIT, rolled back when it throws; inside another of the connection's
 * transactions, a savepoint. `fn` must be synchronous (SQLite's drivers
 * are), so nothing else runs on the connection meanwhile.
 */
export function transactions(
  exec: (sql: string) => void,
): <A extends unknown[], R>(fn: (...args: A) => R) => (...args: A) => R {
  let depth = 0;
  return (fn) =>
    (...args) => {
      const savepoint = depth > 0 ? `mpota_${depth}` : null;
      exec(savepoint ? `SAVEPOINT ${savepoint}` : "BEGIN");
      depth++;
      try {
        const result = fn(...args);
        exec(savepoint ? `RELEASE ${savepoint}` : "COMMIT");
        return result;
      } catch (error) {
        try {
          exec(savepoint ? `ROLLBACK TO ${savepoint}; RELEASE ${savepoint}` : "ROLLBACK");
        } catch {
          // SQLite already rolled the transaction back itself (a full disk, an I/O error).
        }
        throw error;
      } finally {
        depth--;
      }
    };
}

/**
 * `fn`, computed once per object and remembered while that object lives. The datastores hand
 * out the same object while a record is unchanged, so what is derived from it (a lease's
 * identity, a decoded value, a view) is computed once, not on every event. The objects passed in
 * are never changed afterwards.
 */
export function oncePer<K extends object, V>(fn: (key: K) => V): (key: K) => V {
  const seen = new WeakMap<K, V>();
  return (key) => {
    if (seen.has(key)) return seen.get(key) as V;
    const value = fn(key);
    seen.set(key, value);
    return value;
  };
}

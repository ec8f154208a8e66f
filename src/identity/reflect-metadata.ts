/**
 * @peculiar/x509 resolves its services through tsyringe, which refuses to load without the
 * Reflect metadata API. The package leaves the polyfill to its user; tsyringe only needs these
 * three calls, so a small WeakMap store stands in for a polyfill dependency.
 * Import this module before "@peculiar/x509".
 */
type MetadataStore = WeakMap<object, Map<unknown, unknown>>;
type ReflectWithMetadata = typeof Reflect & {
  getMetadata?: (key: unknown, target: object) => unknown;
  getOwnMetadata?: (key: unknown, target: object) => unknown;
  defineMetadata?: (key: unknown, value: unknown, target: object) => void;
};

const reflect = Reflect as ReflectWithMetadata;

if (typeof reflect.getMetadata !== "function") {
  const store: MetadataStore = new WeakMap();
  const getOwnMetadata = (key: unknown, target: object): unknown => store.get(target)?.get(key);
  Object.assign(reflect, {
    getOwnMetadata,
    getMetadata(key: unknown, target: object): unknown {
      for (let current: object | null = target; current !== null; current = Object.getPrototypeOf(current)) {
        const value = getOwnMetadata(key, current);
        if (value !== undefined) return value;
      }
      return undefined;
    },
    defineMetadata(key: unknown, value: unknown, target: object): void {
      let entries = store.get(target);
      if (entries === undefined) {
        entries = new Map();
        store.set(target, entries);
      }
      entries.set(key, value);
    },
  });
}

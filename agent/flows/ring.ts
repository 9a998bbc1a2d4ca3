/**
 * The last `capacity` records, oldest first: what `twilld flows` without --follow shows. Fixed
 * memory whatever the rate; the oldest record makes room for the newest.
 */
export class RecordRing<T> {
  private readonly items: T[] = [];
  /** Where the oldest is, once the ring is full. */
  private start = 0;

  constructor(readonly capacity = 1000) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`ring capacity must be a whole number of at least 1, not ${capacity}`);
  }

  push(item: T): void {
    if (this.items.length < this.capacity) {
      this.items.push(item);
      return;
    }
    this.items[this.start] = item;
    this.start = (this.start + 1) % this.capacity;
  }

  /** Oldest first. */
  list(): T[] {
    return [...this.items.slice(this.start), ...this.items.slice(0, this.start)];
  }

  get size(): number {
    return this.items.length;
  }
}

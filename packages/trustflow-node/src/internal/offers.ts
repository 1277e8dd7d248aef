import type { ServiceOffer } from '../types.js';

interface Cached {
  offer: ServiceOffer;
  peerId: string;
  expiresAt: number;
}

/**
 * Offers learned from other peers, keyed by peer and offer id, each kept for `ttlMs`. Bounded:
 * past `maxEntries` the entry closest to expiry is dropped. Expired entries are removed on every
 * read and by `sweep()` (the node runs it on an unref'd timer).
 */
export class OfferCache {
  private readonly entries = new Map<string, Cached>();
  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries: number,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  put(peerId: string, offers: readonly ServiceOffer[]): void {
    const expiresAt = this.now() + this.ttlMs;
    for (const offer of offers) {
      const key = `${peerId}\n${offer.id}`;
      this.entries.delete(key);
      if (this.entries.size >= this.maxEntries) {
        // Map keeps insertion order and every insert uses the same TTL: the first is the oldest.
        const oldest = this.entries.keys().next();
        if (!oldest.done) this.entries.delete(oldest.value);
      }
      this.entries.set(key, { offer, peerId, expiresAt });
    }
  }

  /** Offers (not expired) matching `query`, with the peer that offered them. */
  find(query: string): { peerId: string; offer: ServiceOffer }[] {
    this.sweep();
    const out: { peerId: string; offer: ServiceOffer }[] = [];
    for (const entry of this.entries.values()) {
      if (matchesOffer(entry.offer, query)) out.push({ peerId: entry.peerId, offer: entry.offer });
    }
    return out;
  }

  sweep(): number {
    const now = this.now();
    let removed = 0;
    for (const [key, entry] of this.entries) {
      if (entry.expiresAt <= now) {
        this.entries.delete(key);
        removed++;
      }
    }
    return removed;
  }

  clear(): void {
    this.entries.clear();
  }
}

/** Case-insensitive match of every word of the query against name, description and tags. */
export function matchesOffer(offer: ServiceOffer, query: string): boolean {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  if (words.length === 0) return true;
  const text = [offer.id, offer.name, offer.description ?? '', ...(offer.tags ?? [])]
    .join(' ')
    .toLowerCase();
  return words.every((word) => text.includes(word));
}

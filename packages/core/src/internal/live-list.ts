import type { LiveNode, ResourceHandle } from '../types.js';

class Node<R> implements LiveNode<R> {
  prev: Node<R> | undefined = undefined;
  next: Node<R> | undefined = undefined;
  constructor(
    public resource: R | undefined,
    public handle: ResourceHandle | undefined,
    public list: LiveList<R> | undefined,
  ) {}
}

/**
 * The resources a plugin holds while they are open (to release them on disable, or to list
 * them), in a list threaded through one small node per resource.
 *
 * Not a Set: a Set whose members come and go reallocates its table every so many additions, and
 * the table it leaves behind, dead but in the old generation by then, still points at the
 * members that were live when it was copied. V8's young-generation collections take every such
 * pointer as a root, so those resources, and everything they hold, survive and are promoted:
 * under TCP connect/close churn that was about 3 MB a scavenge and a heap ten times its live
 * size. Removing a node here clears every pointer it had.
 */
export class LiveList<R> {
  private head: Node<R> | undefined = undefined;
  private count = 0;
  private sweepAt = 64;

  get size(): number {
    return this.count;
  }

  /**
   * Adds a resource and its handle; keep the node to remove it. When the list has doubled since
   * its last sweep, nodes whose handle was released elsewhere are dropped first.
   */
  add(resource: R, handle: ResourceHandle): LiveNode<R> {
    if (this.count >= this.sweepAt) {
      for (let n = this.head; n !== undefined; ) {
        const next = n.next;
        if (n.handle?.released !== false) this.remove(n);
        n = next;
      }
      this.sweepAt = Math.max(64, this.count * 2);
    }
    const node = new Node(resource, handle, this);
    const head = this.head;
    if (head !== undefined) {
      node.next = head;
      head.prev = node;
    }
    this.head = node;
    this.count++;
    return node;
  }

  /** Removes a node (once; later calls do nothing) and clears what it pointed at. */
  remove(liveNode: LiveNode<R>): void {
    const node = liveNode as Node<R>;
    if (node.list !== this) return;
    const { prev, next } = node;
    if (prev === undefined) this.head = next;
    else prev.next = next;
    if (next !== undefined) next.prev = prev;
    node.prev = undefined;
    node.next = undefined;
    node.list = undefined;
    node.resource = undefined;
    node.handle = undefined;
    this.count--;
  }

  /** The nodes, newest first (a copy: removing while iterating it is safe). */
  nodes(): LiveNode<R>[] {
    const out: LiveNode<R>[] = [];
    for (let n = this.head; n !== undefined; n = n.next) out.push(n);
    return out;
  }

  /** Removes every node; returns what they held. */
  drain(): { resource: R | undefined; handle: ResourceHandle | undefined }[] {
    const out: { resource: R | undefined; handle: ResourceHandle | undefined }[] = [];
    for (const n of this.nodes()) {
      out.push({ resource: n.resource, handle: n.handle });
      this.remove(n);
    }
    this.sweepAt = 64;
    return out;
  }
}

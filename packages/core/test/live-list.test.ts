import { describe, expect, it } from 'vitest';
import { createResourceTracker, LiveList, type ResourceHandle } from '../src/index.js';

function handles(n: number): ResourceHandle[] {
  const tracker = createResourceTracker({ scanIntervalMs: 0 });
  return Array.from({ length: n }, () => tracker.track({}, { kind: 'test' }));
}

describe('LiveList', () => {
  it('adds, removes once, and clears what a removed node pointed at', () => {
    const list = new LiveList<object>();
    const [a, b, c] = handles(3);
    const resources = [{}, {}, {}];
    const nodes = [a!, b!, c!].map((h, i) => list.add(resources[i]!, h));
    expect(list.size).toBe(3);
    list.remove(nodes[1]!);
    list.remove(nodes[1]!);
    expect(list.size).toBe(2);
    expect(nodes[1]!.resource).toBeUndefined();
    expect(nodes[1]!.handle).toBeUndefined();
    expect(list.nodes().map((n) => n.resource)).toEqual([resources[2], resources[0]]);
    // the head and the tail can go too
    list.remove(nodes[2]!);
    list.remove(nodes[0]!);
    expect(list.size).toBe(0);
    expect(list.nodes()).toEqual([]);
  });

  it('a node of another list is left alone', () => {
    const one = new LiveList<object>();
    const two = new LiveList<object>();
    const [h] = handles(1);
    const node = one.add({}, h!);
    two.remove(node);
    expect(one.size).toBe(1);
    expect(node.handle).toBe(h);
  });

  it('drain() empties the list and returns what it held', () => {
    const list = new LiveList<string>();
    const hs = handles(2);
    list.add('a', hs[0]!);
    list.add('b', hs[1]!);
    const drained = list.drain();
    expect(drained.map((d) => d.resource).sort()).toEqual(['a', 'b']);
    expect(drained.map((d) => d.handle)).toEqual(expect.arrayContaining(hs));
    expect(list.size).toBe(0);
  });

  it('drops nodes whose handle was released elsewhere once it has doubled', () => {
    const list = new LiveList<number>();
    const hs = handles(200);
    for (let i = 0; i < 64; i++) list.add(i, hs[i]!);
    for (let i = 0; i < 60; i++) hs[i]!.release();
    // the 65th addition sweeps the 60 released ones out first
    list.add(64, hs[64]!);
    expect(list.size).toBe(5);
    expect(list.nodes().map((n) => n.resource)).toEqual([64, 63, 62, 61, 60]);
  });
});

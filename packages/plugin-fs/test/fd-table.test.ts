import { describe, expect, it } from 'vitest';
import { FdTable } from '../src/internal/wrap.js';

describe('FdTable', () => {
  it('maps small and large descriptor numbers, and counts them', () => {
    const table = new FdTable<string>(8);
    table.set(3, 'a');
    table.set(7, 'b');
    table.set(100_000, 'c');
    table.set(3, 'a2');
    expect(table.size).toBe(3);
    expect([table.get(3), table.get(7), table.get(100_000), table.get(5)]).toEqual([
      'a2',
      'b',
      'c',
      undefined,
    ]);
    expect(table.entries()).toEqual([
      [3, 'a2'],
      [7, 'b'],
      [100_000, 'c'],
    ]);
    table.delete(7);
    table.delete(7);
    table.delete(100_000);
    table.delete(42);
    expect(table.size).toBe(1);
    expect(table.has(7)).toBe(false);
    table.clear();
    expect(table.size).toBe(0);
    expect(table.entries()).toEqual([]);
  });

  it('allows deleting while iterating its entries', () => {
    const table = new FdTable<number>();
    for (let fd = 3; fd < 10; fd++) table.set(fd, fd);
    for (const [fd] of table.entries()) if (fd % 2 === 0) table.delete(fd);
    expect(table.entries().map(([fd]) => fd)).toEqual([3, 5, 7, 9]);
  });
});

import { join } from 'node:path';
import { median, root, runChild } from '../lib.mjs';

export const title = 'buffer pool acquire+release against Buffer.alloc / allocUnsafe';

const script = join(root, 'bench', 'workloads', 'pool-alloc.mjs');
const KIB = 1024;
const LABEL = { alloc: 'Buffer.alloc', unsafe: 'Buffer.allocUnsafe', pool: 'pool acquire+release' };

export async function run({ quick }) {
  const reps = quick ? 3 : 5;
  const ops = quick ? '100000' : '400000';
  const rows = [];
  for (const size of [4 * KIB, 32 * KIB, 80 * KIB]) {
    // each configuration in its own process, interleaved: alloc unsafe pool alloc unsafe pool ...
    const samples = { alloc: [], unsafe: [], pool: [] };
    const rss = { alloc: 0, unsafe: 0, pool: 0 };
    for (let i = 0; i < reps; i++) {
      for (const mode of Object.keys(samples)) {
        const result = await runChild(script, { args: [mode, String(size), ops] });
        samples[mode].push(result);
        rss[mode] = Math.max(rss[mode], result.peakRssBytes ?? 0);
      }
    }
    for (const mode of Object.keys(samples)) {
      rows.push({
        case: `get, write, drop a ${size / KIB} KiB buffer (CPU per op)`,
        config: LABEL[mode],
        value: median(samples[mode].map((r) => r.value)),
        unit: 'ns',
        better: 'lower',
        baseline: mode === 'alloc',
        target: mode === 'pool' && size >= 32 * KIB ? '> 1x (faster than Buffer.alloc)' : '',
        peakRssBytes: rss[mode],
      });
    }
    for (const mode of Object.keys(samples)) {
      rows.push({
        case: `GC pauses per 10k ops, ${size / KIB} KiB`,
        config: LABEL[mode],
        value: median(samples[mode].map((r) => r.gcMsPer10k)),
        unit: 'ms',
        better: 'lower',
        baseline: mode === 'alloc',
      });
    }
  }
  return rows;
}

import { join } from 'node:path';
import { median, root, runChild } from '../lib.mjs';

export const title = 'buffer pool acquire+release against Buffer.alloc / allocUnsafe';

const script = join(root, 'bench', 'workloads', 'pool-alloc.mjs');
const KIB = 1024;
const MODES = ['alloc', 'unsafe', 'pool'];
const LABEL = { alloc: 'Buffer.alloc', unsafe: 'Buffer.allocUnsafe', pool: 'pool acquire+release' };

export async function run({ quick }) {
  const reps = quick ? 3 : 5;
  const ops = quick ? '100000' : '300000';
  const rows = [];
  for (const size of [4 * KIB, 32 * KIB, 80 * KIB]) {
    // One process per run; each round runs the three modes back to back in a rotating order.
    // Ratios within a round (same machine load) are reported next to the medians.
    const rounds = [];
    const rss = { alloc: 0, unsafe: 0, pool: 0 };
    for (let i = 0; i < reps; i++) {
      const round = {};
      for (let k = 0; k < MODES.length; k++) {
        const mode = MODES[(i + k) % MODES.length];
        round[mode] = await runChild(script, { args: [mode, String(size), ops] });
        rss[mode] = Math.max(rss[mode], round[mode].peakRssBytes ?? 0);
      }
      rounds.push(round);
    }
    // lower is better: a speed-up over Buffer.alloc is alloc / pool
    const speedup = median(rounds.map((r) => r.alloc.value / r.pool.value));
    for (const mode of MODES) {
      rows.push({
        case: `get, write, drop a ${size / KIB} KiB buffer (CPU per op)`,
        config: LABEL[mode],
        value: median(rounds.map((r) => r[mode].value)),
        unit: 'ns',
        better: 'lower',
        baseline: mode === 'alloc',
        target:
          mode === 'pool'
            ? `${size >= 32 * KIB ? '> 1x Buffer.alloc; ' : ''}paired: ${speedup.toFixed(3)}x`
            : '',
        peakRssBytes: rss[mode],
      });
    }
    for (const mode of MODES) {
      rows.push({
        case: `GC pauses per 10k ops, ${size / KIB} KiB`,
        config: LABEL[mode],
        value: median(rounds.map((r) => r[mode].gcMsPer10k)),
        unit: 'ms',
        better: 'lower',
        baseline: mode === 'alloc',
      });
    }
  }
  return rows;
}

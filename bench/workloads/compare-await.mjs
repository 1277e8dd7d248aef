// An await-heavy loop: batches of 1000 awaits of an async function (the promise-hook cost that
// async_hooks-based tools pay on every promise). Awaits per second.
import { bench, finish } from './compare-common.mjs';

const step = async (x) => x + 1;
let x = 0;
async function batch() {
  for (let i = 0; i < 1000; i++) x = await step(x);
  return 1000;
}

const result = await bench(batch, { unit: 'awaits/s' });
await finish({ ...result, check: x > 0 });

// fs churn: open, read 4 KiB, close, with the callback API (the one most fs-heavy libraries
// still use) and 4 operations in flight. Files per second.
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bench, finish } from './compare-common.mjs';

const dir = fs.mkdtempSync(join(tmpdir(), 'tf-bench-fs-'));
const path = join(dir, 'data.bin');
fs.writeFileSync(path, Buffer.alloc(4096, 1));

const cycle = () =>
  new Promise((resolve, reject) => {
    fs.open(path, 'r', (err, fd) => {
      if (err) return reject(err);
      const buffer = Buffer.allocUnsafe(4096);
      fs.read(fd, buffer, 0, 4096, 0, (readErr, n) => {
        fs.close(fd, (closeErr) => {
          if (readErr || closeErr) return reject(readErr ?? closeErr);
          if (n !== 4096) return reject(new Error(`read ${n} bytes`));
          resolve(1);
        });
      });
    });
  });

const result = await bench(cycle, { concurrency: 4, unit: 'files/s' });
fs.rmSync(dir, { recursive: true, force: true });
await finish(result);

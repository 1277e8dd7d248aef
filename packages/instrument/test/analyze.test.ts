import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { analyzeCsv, formatAnalysis, renderHtml, runAnalyze } from '../src/cli/analyze.js';
import { csvLine, MONITOR_COLUMNS } from '../src/cli/monitor.js';

/** The few browser globals the page-side code below uses (the tests compile without the DOM lib). */
interface PageGlobals {
  Image: new () => { src: string; width: number; height: number; decode(): Promise<void> };
  document: {
    createElement(tag: 'canvas'): {
      width: number;
      height: number;
      getContext(kind: '2d'): {
        drawImage(image: unknown, x: number, y: number): void;
        getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray };
      } | null;
    };
  };
}

/** Deterministic noise in [-1, 1). */
function noise(seed: number) {
  let x = seed >>> 0;
  return () => {
    x = (Math.imul(x, 1_664_525) + 1_013_904_223) >>> 0;
    return x / 2 ** 31 - 1;
  };
}

/**
 * A monitor CSV like the Go node's: 35 h sampled every 30 s, RSS growing `mbPerHour` under a GC
 * sawtooth, fds swinging between 13 and 138, and a few error rows.
 */
function syntheticCsv(mbPerHour: number, hours = 35, seed = 7): string {
  const rand = noise(seed);
  const start = Date.UTC(2026, 0, 1);
  const rows = [csvLine(MONITOR_COLUMNS)];
  const n = Math.round((hours * 3600) / 30);
  for (let i = 0; i < n; i++) {
    const h = (i * 30) / 3600;
    const sawtooth = ((i % 40) / 40) * 12; // GC: climbs 12 MB, then drops
    const rss = 45 + mbPerHour * h + sawtooth + rand() * 1.5;
    const fds = i % 97 === 0 ? 138 : Math.round(20 + rand() * 7);
    const row: Record<string, string> = Object.fromEntries(MONITOR_COLUMNS.map((c) => [c, '']));
    row.timestamp = new Date(start + i * 30_000).toISOString();
    row.pid = '4242';
    row.cpu_percent = (2 + rand()).toFixed(1);
    row.rss_mb = rss.toFixed(2);
    row.file_descriptors = String(fds);
    row.threads = '11';
    if (i % 500 === 250) row.error = 'metrics: ECONNREFUSED, retrying';
    rows.push(csvLine(MONITOR_COLUMNS.map((c) => row[c]!)));
  }
  return rows.join('');
}

describe('trustflow analyze', () => {
  it('computes the slope of a known leak (the seed’s 3.1 MB/h)', () => {
    const a = analyzeCsv([{ name: 'leak.csv', text: syntheticCsv(3.1) }]);
    const rss = a.series.find((s) => s.name === 'rss_mb')!;
    expect(rss.growth.verdict).toBe('growing');
    expect(rss.growth.slopePerHour).toBeGreaterThan(3.0);
    expect(rss.growth.slopePerHour).toBeLessThan(3.2);
    expect(rss.growth.confidence).toBeGreaterThan(0.99);
    expect(a.rows).toBe(4200);
    expect(a.rowsWithErrors).toBe(8);
    expect(a.spanHours).toBeCloseTo(35, 1);
    const text = formatAnalysis(a);
    expect(text).toMatch(/rss_mb .* \+3\.\d\d MB\/h .* GROWING/);
    expect(text).toContain('verdict: rss_mb grows 3.');
  });

  it('reports no leak for a flat series, and the fd variance', () => {
    const a = analyzeCsv([{ name: 'flat.csv', text: syntheticCsv(0) }]);
    for (const s of a.series) expect(s.growth.verdict).not.toBe('growing');
    const rss = a.series.find((s) => s.name === 'rss_mb')!;
    expect(Math.abs(rss.growth.slopePerHour)).toBeLessThan(0.1);
    const fds = a.series.find((s) => s.name === 'file_descriptors')!.points.map((p) => p.v);
    const mean = fds.reduce((x, y) => x + y, 0) / fds.length;
    const variance = fds.reduce((x, v) => x + (v - mean) ** 2, 0) / (fds.length - 1);
    expect(a.fds!.variance).toBeCloseTo(variance, 6);
    expect(a.fds!.min).toBeGreaterThanOrEqual(13);
    expect(a.fds!.max).toBe(138);
    expect(formatAnalysis(a)).toContain('verdict: no sustained growth');
  });

  it('reads rotated files in order and skips rows of the wrong width with a warning', () => {
    const full = syntheticCsv(1, 2).split('\n');
    const header = full[0]!;
    const older = [header, ...full.slice(1, 100)].join('\n');
    const newer = [header, ...full.slice(100, 240), '2026-01-01T00:00:00Z,1,2'].join('\n');
    const a = analyzeCsv([
      { name: 'm.csv.1', text: older },
      { name: 'm.csv', text: newer },
    ]);
    expect(a.rows).toBe(239);
    expect(a.warnings).toEqual(['m.csv line 142: 3 fields, expected 15; skipped']);
  });

  it('writes a self-contained HTML report from the CLI', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tf-analyze-'));
    const csv = join(dir, 'monitor.csv');
    await writeFile(csv, syntheticCsv(3.1, 6));
    const html = join(dir, 'report.html');
    const out: string[] = [];
    const original = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((t: string) => {
      out.push(t);
      return true;
    }) as typeof process.stdout.write;
    let code: number;
    try {
      code = await runAnalyze([csv, '--html', html]);
    } finally {
      process.stdout.write = original;
    }
    expect(code).toBe(0);
    expect(out.join('')).toContain(`report written to ${html}`);
    const page = await readFile(html, 'utf8');
    // nothing to fetch: no scripts, stylesheets, images or fonts from anywhere
    expect(page).not.toMatch(/<script|<link|<img|@import|url\(|src=/i);
    expect(page.match(/https?:\/\/[^"]+/g)?.every((u) => u === 'http://www.w3.org/2000/svg')).toBe(
      true,
    );
    expect(page.match(/<svg /g)).toHaveLength(4);
  });

  it('shows its charts in headless Chromium (screenshot)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tf-analyze-'));
    const html = join(dir, 'report.html');
    await writeFile(html, renderHtml(analyzeCsv([{ name: 'leak.csv', text: syntheticCsv(3.1) }])));
    const browser = await chromium.launch({
      executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
      const requests: string[] = [];
      page.on('request', (r) => requests.push(r.url()));
      await page.goto(pathToFileURL(html).href);
      expect(requests).toEqual([pathToFileURL(html).href]);
      const chart = page.locator('svg[data-series="rss_mb"]');
      const box = (await chart.boundingBox())!;
      expect(box.width).toBe(640);
      expect(box.height).toBe(220);
      const png = await chart.screenshot({
        path: join(process.env.TF_SHOT_DIR ?? dir, 'rss_mb.png'),
      });
      // Count the data line's blue and the growing trend line's red in the screenshot itself.
      const colours = await page.evaluate(async (b64) => {
        const { Image, document } = globalThis as unknown as PageGlobals;
        const img = new Image();
        img.src = `data:image/png;base64,${b64}`;
        await img.decode();
        const canvas = document.createElement('canvas');
        canvas.width = img.width;
        canvas.height = img.height;
        const ctx = canvas.getContext('2d')!;
        ctx.drawImage(img, 0, 0);
        const data = ctx.getImageData(0, 0, img.width, img.height).data;
        let blue = 0;
        let red = 0;
        for (let i = 0; i < data.length; i += 4) {
          const [r, g, b] = [data[i]!, data[i + 1]!, data[i + 2]!];
          if (b > 150 && r < 80 && g < 140) blue++;
          if (r > 170 && g < 80 && b < 80) red++;
        }
        return { blue, red, width: img.width, height: img.height };
      }, png.toString('base64'));
      expect(colours.width).toBeGreaterThanOrEqual(640);
      expect(colours.blue).toBeGreaterThan(1000);
      expect(colours.red).toBeGreaterThan(200);
      expect(await page.locator('svg').count()).toBe(4);
      expect(await page.locator('tr.growing td').first().textContent()).toBe('rss_mb');
    } finally {
      await browser.close();
    }
  });
});

// Checks shared by the notebook tests (notebook.live.test.ts, lessons.test.ts): an executed
// notebook is small, holds no copy of plotly.js, and its charts draw offline in nbconvert's HTML
// (written beside it, where plotly.min.js is) and on our site.

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { Browser, Page } from 'playwright-core';

import { readNotebook, renderSite } from '../scripts/lessons/render';

export const MAX_NOTEBOOK_BYTES = 500 * 1024;
/** a line of plotly.js's licence header: present wherever a copy of plotly.js is */
export const PLOTLY_MARK = 'Copyright 2012-';
/** console messages that would come from our chart code */
export const OURS = /plotly|ilPlotly|il-plot|inference-lab/i;

/** Charts on the page: how many chart divs, how many hold plotly's SVG, what the others say. */
export async function charts(page: Page): Promise<{ divs: number; drawn: number; text: string[] }> {
  return page.evaluate(() => {
    const divs = Array.from(document.querySelectorAll('.il-plot'));
    return { divs: divs.length, drawn: divs.filter((d) => d.querySelector('svg.main-svg')).length, text: divs.map((d) => (d.querySelector('svg') ? '' : (d.textContent ?? ''))) };
  });
}

export async function waitDrawn(page: Page, n: number, timeout = 60_000): Promise<void> {
  await page
    .waitForFunction((k) => Array.from(document.querySelectorAll('.il-plot')).filter((d) => d.querySelector('svg.main-svg')).length >= k, n, { timeout })
    .catch(() => undefined);
}

export interface SavedNotebookCheck {
  file: string;
  bytes: number;
  hasPlotlyCopy: boolean;
  /** chart outputs in the notebook */
  charts: number;
  /** per page (nbconvert HTML, site page): charts drawn, errors from our code, network requests */
  pages: { page: 'nbconvert' | 'site'; drawn: number; errors: string[]; network: string[]; text: string[] }[];
}

/** Convert `ipynb` to HTML beside it, render it on a site in `siteDir`, open both offline. */
export async function checkSavedNotebook(browser: Browser, python: string, ipynb: string, siteDir: string): Promise<SavedNotebookCheck> {
  const raw = fs.readFileSync(ipynb, 'utf8');
  const nb = readNotebook(ipynb);
  const count = nb.cells.flatMap((c) => c.outputs ?? []).filter((o) => o.data && 'application/vnd.plotly.v1+json' in o.data).length;
  const r = spawnSync(python, ['-m', 'nbconvert', '--to', 'html', ipynb], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`nbconvert --to html ${ipynb} failed:\n${r.stderr}`);
  const slug = path.basename(ipynb, '.ipynb');
  await renderSite([{ slug, title: slug, notebook: nb }], siteDir, { machine: null, mode: 'test', date: 'test' });
  const pages: SavedNotebookCheck['pages'] = [];
  for (const [kind, file] of [['nbconvert', ipynb.replace(/\.ipynb$/, '.html')], ['site', path.join(siteDir, `${slug}.html`)]] as const) {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors: string[] = [];
    const network: string[] = [];
    page.on('console', (m) => m.type() === 'error' && OURS.test(m.text()) && errors.push(m.text()));
    page.on('pageerror', (e) => !/require|MathJax|define/.test(String(e)) && errors.push(String(e)));
    // offline: anything but file:// is refused (nbconvert's template asks a CDN for require.js and MathJax)
    await page.route(/^(?!file:)/, (route) => {
      network.push(route.request().url());
      return route.abort();
    });
    try {
      await page.goto(`file://${file}`, { waitUntil: 'load' });
      await waitDrawn(page, count);
      const got = await charts(page);
      pages.push({ page: kind, drawn: got.drawn, errors, network, text: got.text });
    } finally {
      await page.close();
    }
  }
  return { file: ipynb, bytes: Buffer.byteLength(raw), hasPlotlyCopy: raw.includes(PLOTLY_MARK), charts: count, pages };
}

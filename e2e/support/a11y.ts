import fs from 'node:fs';
// Accessibility and small-screen checks shared by the specs (issue 8 item 10): axe-core
// (the npm package, injected into the page under test) must find no serious or critical
// violation, and a phone-width viewport must not scroll the page sideways.
import type { Page } from '@playwright/test';

/** axe-core's browser bundle, from node_modules (never fetched from a CDN). */
const AXE_JS = require.resolve('axe-core/axe.min.js');

/** Impacts that fail a page; "minor" and "moderate" are reported by axe but let through. */
const FAILING = new Set(['serious', 'critical']);

type AxeNode = { target: unknown[]; failureSummary?: string };
type AxeViolation = { id: string; impact?: string | null; help: string; helpUrl: string; nodes: AxeNode[] };

/**
 * Runs axe-core on the page as it is now; returns a readable list of the serious and
 * critical violations ("" when there are none), one block per rule with each offending
 * element's selector and axe's summary of what to fix. `alsoFail` names rules that fail
 * whatever axe's impact for them (axe rates e.g. `page-has-heading-one` "moderate").
 */
export async function axeViolations(page: Page, alsoFail: string[] = []): Promise<string> {
  if (!(await page.evaluate(() => typeof (window as any).axe === 'object'))) {
    // Evaluated through the devtools protocol, not as an inline <script>: the page's
    // Content-Security-Policy (script-src 'self') rightly refuses inline scripts.
    await page.evaluate(fs.readFileSync(AXE_JS, 'utf8'));
  }
  const violations: AxeViolation[] = await page.evaluate(async () => {
    const result = await (window as any).axe.run(document, { resultTypes: ['violations'] });
    return result.violations;
  });
  return violations
    .filter((v) => FAILING.has(v.impact ?? '') || alsoFail.includes(v.id))
    .map((v) => {
      const nodes = v.nodes
        .map((n) => `    ${JSON.stringify(n.target)}: ${(n.failureSummary ?? '').replace(/\s+/g, ' ').trim()}`)
        .join('\n');
      return `[${v.impact}] ${v.id}: ${v.help} (${v.helpUrl})\n${nodes}`;
    })
    .join('\n');
}

/** The page's width beyond the viewport, in CSS pixels (0 = no horizontal page scroll). */
export async function horizontalOverflow(page: Page): Promise<{ scrollWidth: number; viewport: number; widest: string }> {
  return page.evaluate(() => {
    const root = document.scrollingElement ?? document.documentElement;
    const viewport = window.innerWidth;
    // When the page does overflow, name the element that sticks out furthest (outside any
    // box that scrolls or clips on its own), to say what to fix.
    let widest = '';
    let right = viewport;
    const clipped = (el: Element) => {
      for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
        if (getComputedStyle(a).overflowX !== 'visible') return true;
      }
      return false;
    };
    const all = root.scrollWidth > viewport ? Array.from(document.body.querySelectorAll('*')) : [];
    for (const el of all) {
      if (clipped(el)) continue;
      const r = el.getBoundingClientRect().right + window.scrollX;
      if (r > right) {
        right = r;
        widest = `${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}${el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\s+/).join('.') : ''}`;
      }
    }
    return { scrollWidth: root.scrollWidth, viewport, widest };
  });
}

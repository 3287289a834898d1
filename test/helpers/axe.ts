import type { Test } from 'tap';
import { AxeBuilder } from '@axe-core/playwright';
import type { BrowserContext, Page } from 'playwright-core';

/** Debian's Chromium, which playwright-core drives as it is (no browser download). */
export const CHROMIUM = '/usr/bin/chromium';
/** The WCAG 2.1 A and AA rules of axe (not its best practices). */
export const WCAG = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];

/** Axe finds no WCAG 2.1 A/AA violation on the page as it is now (each one found is printed). */
export async function assertAccessible(t: Test, page: Page, what: string) {
  const { violations } = await new AxeBuilder({ page }).withTags(WCAG).analyze();
  const found = violations.map((violation) => ({
    id: violation.id,
    impact: violation.impact,
    help: violation.help,
    nodes: violation.nodes.map((node) => ({ target: node.target.join(' '), html: node.html, summary: node.failureSummary })),
  }));
  if (found.length) t.comment(`axe on ${what} (${page.url()}):\n${JSON.stringify(found, null, 2)}`);
  t.same(
    found.map((violation) => violation.id),
    [],
    `${what}: no WCAG 2.1 A/AA violation`,
    { violations: found },
  );
}

/**
 * axe runs inside the page, so it cannot run where JavaScript is off (it hangs:
 * dequelabs/axe-core-npm#529). The DOM the JavaScript-less browser built is served again, at the
 * same address (for the same styles), under a CSP that lets no page script run, to a page axe
 * can run in: what is checked is what a visitor without JavaScript has.
 */
export async function assertAccessibleWithoutScripts(t: Test, checker: BrowserContext, scriptless: Page, what: string) {
  const html = await scriptless.content();
  const address = new URL(scriptless.url());
  address.hash = '';
  const page = await checker.newPage();
  try {
    await page.route(
      (url) => url.href === address.href,
      (route) => route.fulfill({ status: 200, contentType: 'text/html; charset=utf-8', headers: { 'content-security-policy': "script-src 'none'" }, body: html }),
    );
    await page.goto(address.href);
    t.equal(await page.evaluate('typeof window.htmx'), 'undefined', `${what}: no page script ran`);
    await assertAccessible(t, page, `${what}, without JavaScript`);
  } finally {
    await page.close();
  }
}

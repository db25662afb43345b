/**
 * The demo stack (embedded IdP, sample API, SPA, gateway on http://localhost) driven by a real
 * Chromium: login through the IdP's form, API call with the gateway-held token, the user view,
 * the cookie's HttpOnly flag as the page sees it, no token anywhere the page's JS can reach,
 * and logout (RP-initiated, through the IdP) after which the API answers 401.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, expect, test, vi } from 'vitest';
import { DEMO_PASSWORD, DEMO_USER, startDemo, type Demo } from '../../demo/run.ts';

const CHROMIUM = '/usr/bin/chromium';
const COOKIE_NAME = '__Host-Http-bff-session';
const SCREENSHOT = '/tmp/bff-demo-e2e.png';

let demo: Demo;
let browser: Browser;
let context: BrowserContext;
let page: Page;
const pageErrors: string[] = [];
const visited: string[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (or run .ci/run)`);
  demo = await startDemo({ port: 0, idpPort: 0, logLevel: 'silent' });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless=new',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  context = await browser.newContext({ viewport: { width: 1000, height: 760 } });
  page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.on('pageerror', (err) => pageErrors.push(err.message));
  page.on('console', (message) => {
    // Expected 401s (API after logout) are fine; the IdP's pages have no favicon.
    const where = message.location().url;
    if (message.type() === 'error' && !/status of 401/.test(message.text()) && !where.endsWith('/favicon.ico')) {
      pageErrors.push(`${message.text()} (${where})`);
    }
  });
  page.on('framenavigated', (frame) => {
    if (frame === page.mainFrame()) visited.push(frame.url());
  });
}, 45_000);

afterAll(async () => {
  await context?.close().catch(() => undefined);
  await browser?.close().catch(() => undefined);
  await demo?.close();
});

async function statusAfterClick(buttonId: string, expected: string): Promise<unknown> {
  await page.click(`#${buttonId}`);
  await page.waitForFunction((text) => document.getElementById('status')?.textContent === text, expected);
  return JSON.parse((await page.textContent('#output')) ?? 'null');
}

test('login, API call, user view, no token reachable from the page, logout', async () => {
  await page.goto(`${demo.url}/`);
  await expect.poll(() => page.textContent('#user')).toBe('nobody');

  // Log in through the IdP's own form.
  await page.click('#login');
  await page.waitForURL((url) => url.origin === demo.idp.issuer);
  await page.fill('#login', DEMO_USER);
  await page.fill('#password', DEMO_PASSWORD);
  await page.click('#login-submit');
  await page.waitForURL(`${demo.url}/`);
  await expect.poll(() => page.textContent('#user')).toBe('Alice');

  const api = (await statusAfterClick('call-api', 'GET /api/hello: 200')) as { message: string; claims: { sub: string; iss: string } };
  expect(api.message).toBe('hello alice');
  expect(api.claims).toMatchObject({ sub: 'alice', iss: demo.idp.issuer });

  const me = (await statusAfterClick('whoami', 'GET /auth/user: 200')) as {
    sub: string;
    claims: Record<string, unknown>;
    logoutUrl: string;
  };
  expect(me.sub).toBe('alice');
  expect(me.claims).toMatchObject({ name: 'Alice', email: 'alice@example.com' });
  expect(me.logoutUrl.startsWith(`${demo.url}/auth/logout?sid=`)).toBe(true);

  // The browser holds the session cookie, but the page's JavaScript cannot see it.
  const session = (await context.cookies(demo.url)).find((cookie) => cookie.name === COOKIE_NAME);
  expect(session).toMatchObject({ httpOnly: true, secure: true, sameSite: 'Strict', path: '/' });
  const documentCookie = await page.evaluate(() => document.cookie);
  expect(documentCookie).not.toContain(COOKIE_NAME);
  expect(documentCookie).not.toContain(session?.value ?? '<no session cookie>');

  // The token the API received is nowhere the page can read.
  const accessToken = demo.api.acceptedTokens.at(-1);
  expect(accessToken).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
  const reachable = await page.evaluate(() => {
    const dump = (storage: Storage) =>
      Object.keys(storage)
        .map((key) => `${key}=${storage.getItem(key)}`)
        .join('\n');
    return [
      dump(localStorage),
      dump(sessionStorage),
      document.cookie,
      document.documentElement.outerHTML,
      JSON.stringify(performance.getEntries()),
    ].join('\n');
  });
  const signature = (accessToken as string).split('.')[2] as string;
  // The scan does see what the page shows (the user view)…
  expect(reachable.includes('alice@example.com')).toBe(true);
  // …but not the token, nor its signature alone.
  expect(reachable.includes(accessToken as string)).toBe(false);
  expect(reachable.includes(signature)).toBe(false);

  await page.screenshot({ path: SCREENSHOT, fullPage: true });

  // Log out: through the gateway and the IdP's end-session endpoint, back to the SPA.
  visited.length = 0;
  await page.click('#logout');
  await vi.waitFor(
    () => {
      expect(visited.some((url) => url.startsWith(`${demo.idp.issuer}/session/end`))).toBe(true);
      expect(visited.at(-1)).toBe(`${demo.url}/`);
    },
    { timeout: 15_000, interval: 100 },
  );
  await page.waitForLoadState('load');
  await expect.poll(() => page.textContent('#user')).toBe('nobody');
  expect((await context.cookies(demo.url)).some((cookie) => cookie.name === COOKIE_NAME)).toBe(false);

  const after = (await statusAfterClick('call-api', 'GET /api/hello: 401')) as { error: string };
  expect(after.error).toBe('unauthenticated');

  // The session is gone on the server too: the old cookie no longer works.
  const replay = await fetch(`${demo.url}/api/hello`, { headers: { cookie: `${COOKIE_NAME}=${session?.value}`, 'x-csrf': '1' } });
  expect(replay.status).toBe(401);

  expect(pageErrors).toEqual([]);
});

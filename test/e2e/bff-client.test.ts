/**
 * bff-client (client/bff-client.js) in headless Chromium against the demo stack (real gateway,
 * embedded IdP, sample API): the CSRF header, step-up through the IdP's one-time code, the
 * silent check, the session list and "log out other devices", the login navigation when a
 * session has ended (and its opt-out), the expiry event, logout.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { DEMO_PASSWORD, DEMO_USER, startDemo, type Demo } from '../../demo/run.ts';

const CHROMIUM = '/usr/bin/chromium';

let demo: Demo;
let browser: Browser;
const contexts: BrowserContext[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (or run .ci/run)`);
  demo = await startDemo({ port: 0, idpPort: 0, logLevel: 'silent' });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-sync'],
  });
}, 45_000);

afterAll(async () => {
  for (const context of contexts) await context.close().catch(() => undefined);
  await browser?.close().catch(() => undefined);
  await demo?.close();
});

/** A device: its own browser context, logged in through the demo page and the IdP's form. */
async function device(): Promise<Page> {
  const context = await browser.newContext();
  contexts.push(context);
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  await page.goto(`${demo.url}/`);
  await page.click('#login');
  await page.waitForURL((url) => url.origin === demo.idp.issuer);
  await page.fill('#login', DEMO_USER);
  await page.fill('#password', DEMO_PASSWORD);
  await page.click('#login-submit');
  await page.waitForURL(`${demo.url}/`);
  await expect.poll(() => page.textContent('#user')).toBe('Alice');
  return page;
}

/**
 * Runs `body` in the page with the shipped module's `createBffClient` in scope. A string, not a
 * function: the test runner would rewrite a function's dynamic import() for Node.
 */
function withClient<T>(page: Page, body: string): Promise<T> {
  return page.evaluate(`(async () => { const { createBffClient } = await import('/bff-client.js'); ${body} })()`) as Promise<T>;
}

test('fetch adds the CSRF header; user() exposes acr and auth_time; expiring fires before the idle expiry', async () => {
  const page = await device();
  const result = await withClient<{
    plain: number;
    wrapped: number;
    user: Record<string, unknown>;
    expiring: { reason: string; at: number };
  }>(
    page,
    `const plain = (await fetch('/api/hello')).status;
     const bff = createBffClient({ expiryWarningMs: 60 * 60_000 });
     const wrapped = (await bff.fetch('/api/hello')).status;
     const expiring = new Promise((resolve) => bff.addEventListener('expiring', (e) => resolve({ reason: e.detail.reason, at: e.detail.expiresAt.getTime() })));
     const user = await bff.user();
     return { plain, wrapped, user, expiring: await expiring };`,
  );
  expect(result.plain).toBe(403);
  expect(result.wrapped).toBe(200);
  expect(result.user).toMatchObject({ sub: 'alice' });
  expect(Object.keys(result.user)).toEqual(expect.arrayContaining(['acr', 'auth_time']));
  // The demo's idle timeout (30 min) comes before its absolute one (8 h).
  expect(result.expiring.reason).toBe('idle');
  expect(Math.abs(result.expiring.at - Date.parse((result.user.session as { idleExpiresAt: string }).idleExpiresAt))).toBeLessThan(5_000);
});

test('step-up: 401 step_up_required surfaces as an event; the one-time code login makes the call pass', async () => {
  const page = await device();
  await page.click('#sensitive');
  await page.waitForFunction(() => document.getElementById('status')?.textContent === 'GET /api/sensitive: 401');
  expect(JSON.parse((await page.textContent('#output')) ?? '{}')).toMatchObject({
    error: 'step_up_required',
    loginUrl: '/auth/login?returnTo=%2Fapi%2Fsensitive&acr_values=mfa',
  });
  await page.waitForSelector('#step-up:not([hidden])');

  const requested: string[] = [];
  page.on('request', (request) => requested.push(request.url()));
  await page.click('#step-up-go');
  await page.waitForURL((url) => url.origin === demo.idp.issuer && url.pathname.startsWith('/interaction/'));
  // The client sends the user back to the page, not to the API path.
  const login = new URL(requested.find((url) => url.includes('/auth/login?')) as string);
  expect(Object.fromEntries(login.searchParams)).toEqual({ returnTo: '/', acr_values: 'mfa' });
  await page.fill('#login', DEMO_USER);
  await page.fill('#password', DEMO_PASSWORD);
  await page.fill('#otp', '123456');
  await page.click('#login-submit');
  await page.waitForURL(`${demo.url}/`);
  await expect.poll(() => page.textContent('#acr')).toBe('mfa');
  await page.click('#sensitive');
  await page.waitForFunction(() => document.getElementById('status')?.textContent === 'GET /api/sensitive: 200');
  expect(JSON.parse((await page.textContent('#output')) ?? '{}')).toMatchObject({
    message: 'sensitive data for alice',
    claims: { sub: 'alice' },
  });
});

test('sessions, log out other devices, the login navigation after the session ended, and its opt-out', async () => {
  const laptop = await device();
  const phone = await device();
  const listed = await withClient<Array<{ current: boolean; device: string }>>(laptop, 'return createBffClient().sessions();');
  expect(listed.length).toBeGreaterThanOrEqual(2);
  expect(listed.filter((entry) => entry.current)).toHaveLength(1);
  expect(listed[0]).toMatchObject({ current: true, device: 'Chrome on Linux' });

  await laptop.click('#end-others');
  await laptop.waitForFunction(() => document.getElementById('status')?.textContent === 'Log out other devices: 200');
  expect(await laptop.textContent('#output')).toMatch(/^[1-9]\d* other session\(s\) ended\.$/);
  expect(await withClient<unknown[]>(laptop, 'return createBffClient().sessions();')).toHaveLength(1);

  // The phone's session is gone: with the opt-out the 401 comes back to the app...
  const optOut = await withClient<{ status: number; body: { error: string } }>(
    phone,
    `const res = await createBffClient({ redirectOnSessionEnd: false }).fetch('/api/hello');
     return { status: res.status, body: await res.json() };`,
  );
  expect(optOut).toEqual({ status: 401, body: { error: 'unauthenticated', message: expect.any(String) } });
  expect(phone.url()).toBe(`${demo.url}/`);
  // ...by default the client navigates to the login, coming back to the current page.
  await phone.evaluate(() => history.replaceState(null, '', '/?tab=orders'));
  const loginRequest = phone.waitForRequest((request) => request.url().includes('/auth/login?'));
  // The phone's IdP session is still alive: the IdP answers at once and the login comes back.
  const callback = phone.waitForResponse((response) => response.url().startsWith(`${demo.url}/auth/callback?`));
  void withClient(phone, "await createBffClient().fetch('/api/hello');").catch(() => undefined);
  const login = new URL((await loginRequest).url());
  expect(login.searchParams.get('returnTo')).toBe('/?tab=orders');
  expect((await callback).headers().location).toBe(`${demo.url}/?tab=orders`);
  await phone.waitForURL(`${demo.url}/?tab=orders`, { waitUntil: 'load' });
  await expect.poll(() => phone.textContent('#user')).toBe('Alice');
});

test('silent check comes back with and without a session; logout ends both', async () => {
  const page = await device();
  await page.click('#silent');
  await page.waitForURL(`${demo.url}/`);
  await expect.poll(() => page.textContent('#user')).toBe('Alice');

  await page.click('#logout');
  await page.waitForURL((url) => url.origin === demo.url && url.pathname === '/', { waitUntil: 'load' });
  await expect.poll(() => page.textContent('#user')).toBe('nobody');

  // No gateway session and no IdP session: the silent check returns with error=login_required.
  await page.click('#silent');
  await page.waitForFunction(() => document.getElementById('status')?.textContent === 'Login: 400');
  expect(await page.textContent('#output')).toBe('The login came back with error=login_required');
  // loginError() removed the parameter from the address bar.
  expect(page.url()).toBe(`${demo.url}/`);
  expect(await page.textContent('#user')).toBe('nobody');
});

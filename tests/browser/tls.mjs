// Chromium over https + wss: loads `ws6455 serve --tls-cert ...`'s test page over https, lets
// the page connect back (it picks wss:// on https:), sends a line through its form, and echoes
// 1 MiB with the browser's own WebSocket. Run by tests/test_tls.py (throwaway certificate:
// --ignore-certificate-errors). Usage: node tests/browser/tls.mjs https://127.0.0.1:PORT/
// Prints "ok wss ..." and exits 0, or prints why and exits 1. Every step has a timeout.
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

const URL_ = process.argv[2];
const NODE_MODULES = process.env.WS6455_NODE_MODULES || '/tmp/ws6455-browser/node_modules';
const CHROMIUM = process.env.WS6455_CHROMIUM || '/usr/bin/chromium';
const watchdog = setTimeout(() => { console.log('FAIL watchdog: 80 s'); process.exit(1); }, 80_000);

const require = createRequire(path.join(NODE_MODULES, 'noop.js'));
const { chromium } = require('playwright-core');
const dir = mkdtempSync(path.join(os.tmpdir(), 'ws6455-chromium-tls-'));
let context = null;
let rc = 1;
try {
  context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM, headless: true, chromiumSandbox: false, timeout: 30_000,
    ignoreHTTPSErrors: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
           '--disable-component-update', '--no-first-run', '--disable-sync', '--disable-quic',
           '--ignore-certificate-errors'],
  });
  const page = context.pages()[0] ?? await context.newPage();
  const resp = await page.goto(URL_, { timeout: 15_000 });
  if (!resp || resp.status() !== 200) throw new Error(`page: status ${resp?.status()}`);
  await page.click('#connect', { timeout: 10_000 });
  await page.waitForFunction(() => document.getElementById('log').textContent.includes('-- open wss://'),
                             null, { timeout: 10_000 });
  await page.fill('#text', 'hello over wss');
  await page.click('#send');
  await page.waitForFunction(() => document.getElementById('log').textContent.includes('<< hello over wss'),
                             null, { timeout: 10_000 });
  const big = await page.evaluate(() => new Promise((resolve) => {
    const ws = new WebSocket('wss://' + location.host + '/');
    ws.binaryType = 'arraybuffer';
    const n = 1 << 20;
    const data = new Uint8Array(n);
    for (let i = 0; i < n; i++) data[i] = (i * 7) & 255;
    ws.onopen = () => ws.send(data);
    ws.onmessage = (e) => {
      const got = new Uint8Array(e.data);
      let same = got.length === n;
      for (let i = 0; same && i < n; i++) same = got[i] === data[i];
      ws.close(1000);
      resolve(same ? 'same' : 'differs');
    };
    ws.onerror = () => resolve('error');
    setTimeout(() => resolve('timeout'), 15_000);
  }));
  if (big !== 'same') throw new Error(`1 MiB echo: ${big}`);
  console.log(`ok wss: the https page connected back over wss, a line and 1 MiB echoed`);
  rc = 0;
} catch (e) {
  console.log(`FAIL ${String(e?.message ?? e).split('\n')[0]}`);
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
  clearTimeout(watchdog);
}
process.exit(rc);

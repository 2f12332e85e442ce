// `ws6455 serve` against a real browser: Debian's Chromium driven by playwright-core.
//
// Usage: node tests/browser/interop.mjs path/to/ws6455
//   WS6455_NODE_MODULES  node_modules holding playwright-core (default /tmp/ws6455-browser/node_modules)
//   WS6455_CHROMIUM      the browser (default /usr/bin/chromium)
//   WS6455_SCREENSHOT    where the test page's screenshot goes (default /tmp/ws6455-page.png)
//
// The browser's own WebSocket (inside page.evaluate) talks to `ws6455 serve --port 0` in echo
// mode and echo mode with --deflate, and the served echo page's UI is driven; in chat mode two
// pages of the served chat client (docs/chat.md) are driven through their UI (fill, click) and
// checked on their DOM.
// 127.0.0.1 only; every step has a timeout; the servers are killed and the browser closed on
// every path out. Prints "ok   NAME" / "FAIL NAME detail" and "N passed, N failed"; exits 1 on
// any failure. tests/test_browser.py is the meson wrapper (skips when something is missing).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

const BIN = path.resolve(process.argv[2] ?? 'build/tools/ws6455');
const SERVE_ARGS = process.argv.slice(3);  // e.g. --backend io_uring --threads 2
const NODE_MODULES = process.env.WS6455_NODE_MODULES || '/tmp/ws6455-browser/node_modules';
const CHROMIUM = process.env.WS6455_CHROMIUM || '/usr/bin/chromium';
const SCREENSHOT = process.env.WS6455_SCREENSHOT || '/tmp/ws6455-page.png';
const STEP_MS = 10_000;      // one evaluate / one navigation
const BIG_STEP_MS = 20_000;  // 1 MiB round trips
const WATCHDOG_MS = 110_000; // the whole run (the wrapper's hard limit is 120 s)

const t0 = Date.now();
let passed = 0;
let failed = 0;
const servers = new Set();
let context = null;
let userDataDir = null;
const notes = new Set();

function ok(name) {
  passed++;
  console.log(`ok   ${name}`);
}
function fail(name, detail) {
  failed++;
  const line = detail ? ' ' + String(detail).split('\n')[0] : '';  // playwright appends a call log
  console.log(`FAIL ${name}${line}`);
}
function expect(cond, detail) {
  if (!cond) throw new Error(detail);
}
function withTimeout(promise, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}
async function test(name, fn) {
  try {
    await fn();
    ok(name);
  } catch (e) {
    fail(name, String(e?.message ?? e).split('\n')[0]);
  }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------ servers

function startServer(args) {
  return withTimeout(new Promise((resolve, reject) => {
    const proc = spawn(BIN, ['serve', '--host', '127.0.0.1', '--port', '0', ...SERVE_ARGS, ...args],
                       { stdio: ['ignore', 'pipe', 'pipe'] });
    const srv = { proc, args, stderr: '', exited: null, port: 0 };
    servers.add(srv);
    srv.exit = new Promise((r) => proc.on('exit', (code, signal) => { srv.exited = { code, signal }; r(srv.exited); }));
    let out = '';
    proc.stderr.on('data', (d) => { srv.stderr += d; });
    proc.on('error', (e) => reject(e));
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /^listening on ws:\/\/127\.0\.0\.1:(\d+)\/\n/.exec(out);
      if (m) {
        srv.port = Number(m[1]);
        srv.http = `http://127.0.0.1:${srv.port}`;
        srv.ws = `ws://127.0.0.1:${srv.port}`;
        resolve(srv);
      } else if (out.includes('\n')) {
        reject(new Error(`unexpected first line ${JSON.stringify(out)}`));
      }
    });
    srv.exit.then((e) => reject(new Error(`serve exited before listening: ${JSON.stringify(e)} ${srv.stderr}`)));
  }), 10_000, `serve ${args.join(' ')}`);
}

async function stopServer(srv, signal = 'SIGKILL') {
  if (!srv || !servers.has(srv)) return srv?.exited;
  if (srv.exited === null) srv.proc.kill(signal);
  try {
    await withTimeout(srv.exit, 6_000, 'server exit');
  } catch {
    srv.proc.kill('SIGKILL');
    await withTimeout(srv.exit, 3_000, 'server exit after SIGKILL').catch(() => {});
  }
  servers.delete(srv);
  return srv.exited;
}

function killEverythingSync() {
  for (const s of servers) if (s.exited === null) try { s.proc.kill('SIGKILL'); } catch {}
}

async function cleanup() {
  for (const s of [...servers]) await stopServer(s).catch(() => {});
  if (context) {
    const c = context;
    context = null;
    await withTimeout(c.close(), 10_000, 'browser close').catch((e) => console.log(`note: ${e.message}`));
  }
  if (userDataDir) {
    try { rmSync(userDataDir, { recursive: true, force: true }); } catch {}
    userDataDir = null;
  }
}

process.on('exit', killEverythingSync);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    console.log(`FAIL interrupted by ${sig}`);
    killEverythingSync();
    cleanup().finally(() => process.exit(1));
  });
}
const watchdog = setTimeout(() => {
  console.log(`FAIL watchdog: the run took more than ${WATCHDOG_MS / 1000} s`);
  killEverythingSync();
  cleanup().finally(() => process.exit(1));
}, WATCHDOG_MS);

// ------------------------------------------------------------------ in-page helpers

// Installed in every page before its own scripts (context.addInitScript). Sockets live in the
// page under a name; only small results cross back to Node.
function pageHelpers() {
  const socks = new Map();
  const timeout = (p, ms, what) => {
    let timer;
    return Promise.race([p, new Promise((_, rej) => {
      timer = setTimeout(() => rej(new Error(`${what}: timed out after ${ms} ms`)), ms);
    })]).finally(() => clearTimeout(timer));
  };
  const describe = (d) => typeof d === 'string'
    ? `text(${d.length} chars: ${JSON.stringify(d.slice(0, 40))})` : `binary(${d.byteLength} bytes)`;
  const sock = (name) => {
    const s = socks.get(name);
    if (!s) throw new Error(`no socket ${name}`);
    return s;
  };
  function open(name, url, protocols, ms = 5000) {
    return timeout(new Promise((resolve, reject) => {
      const ws = protocols === undefined ? new WebSocket(url) : new WebSocket(url, protocols);
      ws.binaryType = 'arraybuffer';
      const s = { ws, queue: [], waiters: [], closed: null, closeWaiters: [] };
      socks.set(name, s);
      ws.onmessage = (e) => {
        const w = s.waiters.shift();
        if (w) w.resolve(e.data); else s.queue.push(e.data);
      };
      ws.onclose = (e) => {
        s.closed = { code: e.code, reason: e.reason, wasClean: e.wasClean };
        for (const w of s.closeWaiters) w(s.closed);
        for (const w of s.waiters) w.reject(new Error(`closed while waiting for a message: ${JSON.stringify(s.closed)}`));
        s.closeWaiters = [];
        s.waiters = [];
        reject(new Error(`closed before open: ${JSON.stringify(s.closed)}`));
      };
      ws.onerror = () => {};
      ws.onopen = () => resolve({ protocol: ws.protocol, extensions: ws.extensions, url: ws.url });
    }), ms, `open ${url}`);
  }
  function recv(name, ms = 5000) {
    const s = sock(name);
    if (s.queue.length) return Promise.resolve(s.queue.shift());
    if (s.closed) return Promise.reject(new Error(`closed: ${JSON.stringify(s.closed)}`));
    let w;
    const p = new Promise((resolve, reject) => { w = { resolve, reject }; s.waiters.push(w); });
    return timeout(p, ms, `message on ${name}`).catch((e) => {
      const i = s.waiters.indexOf(w);
      if (i >= 0) s.waiters.splice(i, 1);
      throw e;
    });
  }
  function makeText(spec) {
    if (typeof spec === 'string') return spec;
    let out = '';
    const unit = spec.unit;
    while (out.length < spec.chars) out += unit;
    return out.slice(0, spec.chars - (spec.chars % unit.length)); // whole units: no lone surrogate
  }
  function makeBinary(n) {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i += 65536) crypto.getRandomValues(b.subarray(i, Math.min(n, i + 65536)));
    return b;
  }
  async function echoText(name, spec, ms) {
    const msg = makeText(spec);
    sock(name).ws.send(msg);
    const got = await recv(name, ms);
    if (typeof got !== 'string') throw new Error(`sent text(${msg.length}), got ${describe(got)}`);
    if (got !== msg) throw new Error(`sent text(${msg.length} chars), got ${describe(got)}`);
    return msg.length;
  }
  async function echoBinary(name, n, ms) {
    const msg = makeBinary(n);
    sock(name).ws.send(msg.buffer);
    const got = await recv(name, ms);
    if (!(got instanceof ArrayBuffer)) throw new Error(`sent binary(${n}), got ${describe(got)}`);
    const g = new Uint8Array(got);
    if (g.length !== n) throw new Error(`sent ${n} bytes, got ${g.length}`);
    for (let i = 0; i < n; i++) if (g[i] !== msg[i]) throw new Error(`byte ${i} differs`);
    return n;
  }
  async function burst(name, n, ms) {
    const ws = sock(name).ws;
    for (let i = 0; i < n; i++) {
      if (i % 2) ws.send(`m${i}`); else ws.send(new TextEncoder().encode(`m${i}`).buffer);
    }
    for (let i = 0; i < n; i++) {
      const got = await recv(name, ms);
      const text = typeof got === 'string' ? got : new TextDecoder().decode(got);
      const kind = typeof got === 'string' ? 'text' : 'binary';
      if (text !== `m${i}` || kind !== (i % 2 ? 'text' : 'binary'))
        throw new Error(`message ${i}: expected m${i}, got ${kind} ${JSON.stringify(text)}`);
    }
    return n;
  }
  function send(name, data) {
    sock(name).ws.send(data);
  }
  function waitClose(name, ms = 5000) {
    const s = sock(name);
    if (s.closed) return Promise.resolve(s.closed);
    return timeout(new Promise((r) => s.closeWaiters.push(r)), ms, `close of ${name}`);
  }
  function close(name, code, reason, ms = 5000) {
    sock(name).ws.close(code, reason);
    return waitClose(name, ms);
  }
  function pending(name) {
    return sock(name).queue.map(describe);
  }
  window.__ws = { open, recv, echoText, echoBinary, burst, send, close, waitClose, pending };
}

// The server's close reply: §5.5.1 has it echo the code ("typically"); the reason is the
// replier's choice. ws6455 echoes the code with an empty reason (lib/connection.cpp); an echoed
// reason is accepted too. The browser's onclose reports the reply's code and reason.
function checkCloseEcho(c, code, reason) {
  expect(c.wasClean === true && c.code === code && (c.reason === '' || c.reason === reason),
         `onclose ${JSON.stringify(c)}`);
  notes.add(`close ${code}: the server's reply carries ${c.reason === '' ? 'no reason' : 'the reason back'}`);
}

const ev = (page, what, fn, arg, ms = STEP_MS) => withTimeout(page.evaluate(fn, arg), ms, what);

async function newPage(url) {
  const page = await withTimeout(context.newPage(), STEP_MS, 'new page');
  page.setDefaultTimeout(STEP_MS);
  page.setDefaultNavigationTimeout(STEP_MS);
  page.__errors = [];
  page.on('pageerror', (e) => page.__errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const where = m.location()?.url ?? '';
    // The page has no favicon; Chromium's request for one gets serve's 404 (reported, not a failure).
    if (/\/favicon\.ico$/.test(where)) notes.add(`GET /favicon.ico: ${m.text()}`);
    else page.__errors.push(`console: ${m.text()} ${where}`);
  });
  if (url) {
    const resp = await page.goto(url, { waitUntil: 'load' });
    expect(resp && resp.status() === 200, `GET ${url}: ${resp && resp.status()}`);
  }
  return page;
}

// ------------------------------------------------------------------ suites

async function serverStopsCleanly(srv, page, label) {
  // SIGTERM: the server closes every connection with 1001 and exits 0; the browser sees it.
  await test(`${label}: SIGTERM closes the browser's socket with 1001 and serve exits 0`, async () => {
    await ev(page, 'open', ([u]) => window.__ws.open('bye', u), [srv.ws + '/']);
    srv.proc.kill('SIGTERM');
    const c = await ev(page, 'close', () => window.__ws.waitClose('bye', 8000));
    const e = await withTimeout(srv.exit, 8000, 'serve exit');
    servers.delete(srv);
    expect(c.code === 1001 && c.wasClean === true, `onclose ${JSON.stringify(c)}`);
    expect(e.code === 0, `serve exit ${JSON.stringify(e)} stderr=${JSON.stringify(srv.stderr)}`);
  });
}

async function echoSuite(deflate) {
  const label = deflate ? 'echo+deflate' : 'echo';
  const started = Date.now();
  let srv;
  try {
    // A 16 MiB message limit (serve's default is 64 MiB): the oversize case stays quick.
    srv = await startServer(['--mode', 'echo', '--max-message', String(16 << 20), ...(deflate ? ['--deflate'] : [])]);
  } catch (e) {
    fail(`${label}: serve starts`, e.message);
    return;
  }
  let page;
  try {
    page = await newPage(srv.http + '/');
  } catch (e) {
    fail(`${label}: page loads`, e.message);
    await stopServer(srv);
    return;
  }

  let opened = null;
  await test(`${label}: open; ws.extensions ${deflate ? 'has permessage-deflate' : 'is empty'}; no subprotocol`, async () => {
    opened = await ev(page, 'open', ([u]) => window.__ws.open('s', u), [srv.ws + '/']);
    if (deflate) expect(/(^|,\s*)permessage-deflate(;|,|$)/.test(opened.extensions), `extensions=${JSON.stringify(opened.extensions)}`);
    else expect(opened.extensions === '', `extensions=${JSON.stringify(opened.extensions)}`);
    expect(opened.protocol === '', `protocol=${JSON.stringify(opened.protocol)}`);
  });
  if (!opened) {
    await stopServer(srv);
    await page.close().catch(() => {});
    return;
  }

  const texts = [
    ['text ASCII', 'hello from Chromium'],
    ['text emoji and non-ASCII', 'héllo wörld ✓ — 👋🌍🚀 𝄞 日本語'],
    ['text 1 MiB ASCII', { unit: 'abcdefghijklmnopqrstuvwxyz0123456789', chars: 1 << 20 }],
    ['text ~1 MiB mixed UTF-8', { unit: 'aé€😀', chars: (1 << 20) / 2 }],
  ];
  for (const [name, spec] of texts) {
    await test(`${label}: ${name}`, async () => {
      await ev(page, name, ([s, ms]) => window.__ws.echoText('s', s, ms), [spec, BIG_STEP_MS - 2000], BIG_STEP_MS);
    });
  }
  for (const n of [0, 1, 64 << 10, 1 << 20]) {
    await test(`${label}: binary ${n} bytes (random)`, async () => {
      await ev(page, `binary ${n}`, ([k, ms]) => window.__ws.echoBinary('s', k, ms), [n, BIG_STEP_MS - 2000], BIG_STEP_MS);
    });
  }
  await test(`${label}: 200 interleaved text/binary messages come back in order`, async () => {
    await ev(page, 'burst', () => window.__ws.burst('s', 200, 5000), undefined, BIG_STEP_MS);
  });
  await test(`${label}: subprotocol: the first offer is selected (accept_any)`, async () => {
    const o = await ev(page, 'open', ([u]) => window.__ws.open('p', u, ['ws6455.test', 'chat']), [srv.ws + '/any/path']);
    expect(o.protocol === 'ws6455.test', `protocol=${JSON.stringify(o.protocol)}`);
    await ev(page, 'echo', () => window.__ws.echoText('p', 'via subprotocol', 5000));
    const c = await ev(page, 'close', () => window.__ws.close('p', 1000, ''));
    expect(c.wasClean && c.code === 1000, `onclose ${JSON.stringify(c)}`);
  });
  await test(`${label}: a message over the 16 MiB --max-message: the server closes with 1009`, async () => {
    await ev(page, 'open', ([u]) => window.__ws.open('big', u), [srv.ws + '/']);
    const c = await ev(page, 'oversize', () => {
      window.__ws.send('big', new Uint8Array((16 << 20) + 1).buffer);
      return window.__ws.waitClose('big', 15000);
    }, undefined, BIG_STEP_MS);
    expect(c.code === 1009 && c.wasClean === true, `onclose ${JSON.stringify(c)}`);
    await ev(page, 'echo after', () => window.__ws.echoText('s', 'the other socket is fine', 5000));
  });
  await test(`${label}: close 4000 with a reason: wasClean, code 4000 echoed`, async () => {
    const reason = 'done: ✓ bye';
    const c = await ev(page, 'close', ([r]) => window.__ws.close('s', 4000, r), [reason]);
    checkCloseEcho(c, 4000, reason);
  });

  if (!deflate) await pageUiSuite(srv, label);
  await serverStopsCleanly(srv, page, label);
  await test(`${label}: no page errors`, async () => {
    expect(page.__errors.length === 0, page.__errors.join(' | '));
  });
  await page.close().catch(() => {});
  await stopServer(srv);
  console.log(`# ${label}: ${Date.now() - started} ms`);
}

async function pageUiSuite(srv, label) {
  // The served page's own UI: connect, type, send, see the echo, close.
  let page;
  await test(`${label} page: title and defaults`, async () => {
    page = await newPage(srv.http + '/');
    const h1 = await page.locator('h1').textContent();
    expect(h1 === 'ws6455 echo', `h1=${JSON.stringify(h1)}`);
    const p = await page.locator('#path').inputValue();
    expect(p === '/', `path=${JSON.stringify(p)}`);
    expect(await page.locator('#send').isDisabled(), '#send enabled before connecting');
  });
  if (!page) return;
  const log = page.locator('#log');
  await test(`${label} page: connect, type, click send, the echo appears`, async () => {
    await page.click('#connect');
    await log.filter({ hasText: `-- open ${srv.ws}/` }).waitFor();
    expect(await page.locator('#text').isEnabled(), '#text still disabled after open');
    await page.fill('#text', 'hello from the page ✓');
    await page.click('#send');
    await log.filter({ hasText: '<< hello from the page ✓' }).waitFor();
    const t = await log.textContent();
    expect(t.includes('>> hello from the page ✓'), `log=${JSON.stringify(t)}`);
    expect((await page.locator('#text').inputValue()) === '', 'input not cleared');
  });
  await test(`${label} page: Enter in the input sends too`, async () => {
    await page.fill('#text', 'sent with Enter');
    await page.press('#text', 'Enter');
    await log.filter({ hasText: '<< sent with Enter' }).waitFor();
  });
  await test(`${label} page: close button: "-- close 1000", UI back to disconnected`, async () => {
    await page.click('#close');
    await log.filter({ hasText: /-- close 1000( bye)?\s*$/ }).waitFor();
    expect(await page.locator('#connect').isEnabled(), '#connect disabled after close');
    expect(await page.locator('#send').isDisabled(), '#send enabled after close');
  });
  await test(`${label} page: screenshot to ${SCREENSHOT}`, async () => {
    await page.screenshot({ path: SCREENSHOT, fullPage: true, timeout: STEP_MS });
  });
  await test(`${label} page: no page errors`, async () => {
    expect(page.__errors.length === 0, page.__errors.join(' | '));
  });
  await page.close().catch(() => {});
}

// The chat page (docs/chat.md's JSON protocol) driven through its UI: two pages with their own
// names join a room, talk, see each other in "who is here", switch rooms, leave, close.
// DOM: #name #connect #close #me; #room #join; #rooms li[data-room=R] (button.room, button.leave);
// #current; #who li; #messages p.msg ("from: content") and p.note; #text #send; #log.

// Polls the texts of `sel` in `page` until want(texts) holds; fails with what it last saw.
async function until(page, sel, want, what, ms = STEP_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const got = await withTimeout(page.locator(sel).allTextContents(), STEP_MS, what);
    if (want(got)) return got;
    if (Date.now() > deadline) throw new Error(`${what}: ${sel} is ${JSON.stringify(got).slice(0, 400)}`);
    await sleep(50);
  }
}
const sameSet = (a, b) => JSON.stringify([...a].sort()) === JSON.stringify([...b].sort());
const waitWho = (page, names, what) => until(page, '#who li', (got) => sameSet(got, names), what);
const waitMessage = (page, from, content, what) =>
  until(page, '#messages p.msg', (got) => got.includes(`${from}: ${content}`), what);
const waitNote = (page, note, what) => until(page, '#messages p.note', (got) => got.includes(note), what);
const waitCurrent = (page, room, what) => until(page, '#current', (got) => got[0] === room, what);
const waitRooms = (page, names, what) =>
  until(page, '#rooms li button.room', (got) => sameSet(got.map((t) => t.replace(/ \(\d+\)$/, '')), names), what);

// The user switches to the page first: a background tab's animation frames are throttled, and
// playwright's click waits on them (about 1 s a click otherwise).
async function click(page, sel) {
  await page.bringToFront();
  await page.click(sel);
}
async function joinByUi(page, room) {
  await page.bringToFront();
  await page.fill('#room', room);
  await page.click('#join');
}
async function sendByUi(page, text, enter = false) {
  await page.bringToFront();
  await page.fill('#text', text);
  if (enter) await page.press('#text', 'Enter');
  else await page.click('#send');
}

async function chatSuite() {
  const label = 'chat';
  const started = Date.now();
  let srv;
  try {
    srv = await startServer(['--mode', 'chat']);
  } catch (e) {
    fail(`${label}: serve starts`, e.message);
    return;
  }
  const pages = [];
  try {
    for (let i = 0; i < 2; i++) pages.push(await newPage(srv.http + '/'));
  } catch (e) {
    fail(`${label}: pages load`, e.message);
    await stopServer(srv);
    return;
  }
  const [pa, pb] = pages;
  const A = 'alice';
  const B = 'björn ✓';  // non-ASCII, with a space: percent-encoded in ?name=
  const hi = 'hello r1 from alice';
  const intl = 'héllo wörld ✓ — 👋🌍🚀 𝄞 日本語 <b>&amp;</b>';  // and markup, shown as text

  let connected = false;
  await test(`${label} page: title; before connecting only name and connect are enabled`, async () => {
    expect((await pa.locator('h1').textContent()) === 'ws6455 chat', 'h1');
    expect(await pa.locator('#connect').isEnabled(), '#connect disabled');
    for (const id of ['#close', '#room', '#join', '#text', '#send'])
      expect(await pa.locator(id).isDisabled(), `${id} enabled before connecting`);
    expect((await pa.locator('#current').textContent()) === '(no room)', '#current');
  });
  await test(`${label} page: two pages connect with their names (welcome)`, async () => {
    for (const [p, name] of [[pa, A], [pb, B]]) {
      await p.bringToFront();
      await p.fill('#name', name);
      await p.click('#connect');
      await until(p, '#log', (t) => t[0].includes(`-- open ${srv.ws}/chat?name=${encodeURIComponent(name)}`), 'open');
      await until(p, '#me', (t) => t[0].startsWith(`you are ${name} on `), `welcome of ${name}`);
      expect(await p.locator('#room').isEnabled(), '#room disabled after open');
      expect(await p.locator('#text').isDisabled(), '#text enabled before joining a room');
    }
    connected = true;
  });
  if (connected) {
    await test(`${label} page: both join r1 by the UI; each shows both in "who is here"`, async () => {
      await joinByUi(pa, 'r1');
      await waitCurrent(pa, 'r1', 'A: current room');
      await waitWho(pa, [A], 'A alone in r1');
      await joinByUi(pb, 'r1');
      await waitCurrent(pb, 'r1', 'B: current room');
      await waitWho(pb, [A, B], 'B: who');
      await waitWho(pa, [A, B], 'A: who');
      await waitNote(pa, `${B} joined`, 'A: the note of B joining');
      expect(await pa.locator('#text').isEnabled(), '#text disabled in a room');
    });
    await test(`${label} page: A sends through the form; B shows it from A (and so does A)`, async () => {
      await sendByUi(pa, hi);
      await waitMessage(pb, A, hi, 'B: messages');
      await waitMessage(pa, A, hi, 'A: messages');
      expect((await pa.locator('#text').inputValue()) === '', 'input not cleared');
    });
    await test(`${label} page: a non-ASCII message (Enter) round trip, markup shown as text`, async () => {
      await sendByUi(pb, intl, true);
      await waitMessage(pa, B, intl, 'A: messages');
      await waitMessage(pb, B, intl, 'B: messages');
      expect((await pa.locator('#messages b').count()) === 0, 'markup in a message became an element');
    });
    await test(`${label} page: a third client joining by path shows up in who, and leaves on close`, async () => {
      const u = `${srv.ws}/chat/r1?name=carol`;
      await ev(pa, 'open', ([url]) => window.__ws.open('carol', url), [u]);
      await waitWho(pa, [A, B, 'carol'], 'A: who with carol');
      await waitWho(pb, [A, B, 'carol'], 'B: who with carol');
      await ev(pa, 'close', () => window.__ws.close('carol', 1000, ''));
      await waitWho(pa, [A, B], 'A: who after carol closed');
      await waitWho(pb, [A, B], 'B: who after carol closed');
      await waitNote(pb, 'carol left', 'B: the note of carol leaving');
    });
    await test(`${label} page: rooms: A joins r2 (current), talks there; B sees none of it`, async () => {
      await joinByUi(pa, 'r2');
      await waitCurrent(pa, 'r2', 'A: current room');
      await waitRooms(pa, ['r1', 'r2'], 'A: rooms');
      await waitWho(pa, [A], 'A: who in r2');
      await sendByUi(pa, 'only in r2');
      await waitMessage(pa, A, 'only in r2', 'A: r2 messages');
      const r2 = await pa.locator('#messages p.msg').allTextContents();
      expect(!r2.includes(`${A}: ${hi}`), `r1's message shown in r2: ${JSON.stringify(r2)}`);
      await sendByUi(pb, 'r1 while A is in r2');
      await waitMessage(pb, B, 'r1 while A is in r2', 'B: messages');
      await until(pa, '#rooms li[data-room="r1"] button.room', (t) => t[0] === 'r1 (1)', 'A: r1 unread');
      const seen = await pb.locator('#messages').textContent();
      expect(!seen.includes('only in r2'), `B shows r2's message: ${JSON.stringify(seen)}`);
    });
    await test(`${label} page: A switches back to r1: its messages and members`, async () => {
      await click(pa, '#rooms li[data-room="r1"] button.room');
      await waitCurrent(pa, 'r1', 'A: current room');
      await waitMessage(pa, B, 'r1 while A is in r2', 'A: r1 messages');
      await waitMessage(pa, B, intl, 'A: r1 messages');
      await waitWho(pa, [A, B], 'A: who in r1');
      await until(pa, '#rooms li[data-room="r1"] button.room', (t) => t[0] === 'r1', 'A: r1 read');
    });
    await test(`${label} page: the server's errors are shown (a 129-byte room name)`, async () => {
      await joinByUi(pa, 'x'.repeat(129));
      await until(pa, '#log', (t) => /!! error: \S/.test(t[0]), 'A: log');
      await waitRooms(pa, ['r1', 'r2'], 'A: rooms after the error');
    });
    await test(`${label} page: A leaves r1 by its button; B sees A left`, async () => {
      await click(pa, '#rooms li[data-room="r1"] button.leave');
      await waitRooms(pa, ['r2'], 'A: rooms after leaving r1');
      await waitCurrent(pa, 'r2', 'A: current room after leaving r1');
      await waitWho(pb, [B], 'B: who after A left');
      await waitNote(pb, `${A} left`, 'B: the note of A leaving');
      await sendByUi(pb, 'after A left');
      await waitMessage(pb, B, 'after A left', 'B: messages');
      await sleep(200);
      const seen = await pa.locator('#messages').textContent();
      expect(!seen.includes('after A left'), `A still gets r1: ${JSON.stringify(seen)}`);
    });
    await test(`${label} page: close button: "-- close 1000", controls back to disconnected`, async () => {
      await click(pb, '#close');
      await until(pb, '#log', (t) => /-- close 1000( bye)?\s*$/.test(t[0]), 'B: log');
      expect(await pb.locator('#connect').isEnabled(), '#connect disabled after close');
      for (const id of ['#close', '#room', '#text', '#send'])
        expect(await pb.locator(id).isDisabled(), `${id} enabled after close`);
      expect((await pb.locator('#rooms button.leave').count()) === 0, 'leave buttons after close');
      await waitWho(pb, [], 'B: who after close');
    });
    await test(`${label} page: screenshot to ${SCREENSHOT.replace(/\.png$/, '')}-chat.png`, async () => {
      await pa.screenshot({ path: SCREENSHOT.replace(/\.png$/, '') + '-chat.png', fullPage: true, timeout: STEP_MS });
    });
  }

  await serverStopsCleanly(srv, pa, label);
  await test(`${label}: no page errors`, async () => {
    const errs = pages.flatMap((p) => p.__errors);
    expect(errs.length === 0, errs.join(' | '));
  });
  for (const p of pages) await p.close().catch(() => {});
  await stopServer(srv);
  console.log(`# ${label}: ${Date.now() - started} ms`);
}

// ------------------------------------------------------------------ main

async function main() {
  let chromium;
  try {
    const require = createRequire(path.join(NODE_MODULES, 'noop.js'));
    ({ chromium } = require('playwright-core'));
  } catch (e) {
    fail('load playwright-core', `from ${NODE_MODULES}: ${e.message}`);
    return;
  }
  userDataDir = mkdtempSync(path.join(os.tmpdir(), 'ws6455-chromium-'));
  const launchStart = Date.now();
  try {
    // launchPersistentContext: playwright refuses --user-data-dir in args; this is how it takes one.
    context = await withTimeout(chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      chromiumSandbox: false,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
             '--disable-component-update', '--no-first-run', '--disable-sync', '--disable-quic'],
      timeout: 30_000,
      viewport: { width: 900, height: 640 },
    }), 35_000, 'chromium launch');
  } catch (e) {
    fail('launch chromium', e.message.split('\n')[0]);
    return;
  }
  await context.addInitScript(pageHelpers);
  const browser = context.browser();
  console.log(`# ${CHROMIUM} ${browser ? browser.version() : ''} launched in ${Date.now() - launchStart} ms`);
  for (const p of context.pages()) await p.close().catch(() => {});

  await echoSuite(false);
  await echoSuite(true);
  await chatSuite();
}

try {
  await main();
} catch (e) {
  fail('unexpected error', String(e?.message ?? e));
  console.log(e?.stack ?? '');
} finally {
  await cleanup();
}
for (const n of notes) console.log(`# note: ${n}`);
console.log(`# total ${((Date.now() - t0) / 1000).toFixed(1)} s`);
console.log(`${passed} passed, ${failed} failed`);
clearTimeout(watchdog);
process.exit(failed || !passed ? 1 : 0);

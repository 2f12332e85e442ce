// Peer for `./run bench --echo`: an echo server on Node's `ws` (npm), as its README shows it:
// every message goes back with the type it came in. No permessage-deflate (ws's server
// default, set explicitly), no bufferutil/utf-8-validate addons unless npm installed them.
//
//   node bench/node_ws_echo.mjs [HOST] [PORT]        (default 127.0.0.1 8080)
// `ws` is resolved from $WS6455_NODE_MODULES (a node_modules directory; bench/echo.py
// installs ws under /tmp/ws6455-node when it is missing), else from the usual places.
import { createRequire } from 'node:module';
import path from 'node:path';

const base = process.env.WS6455_NODE_MODULES
  ? path.join(process.env.WS6455_NODE_MODULES, 'noop.js')
  : import.meta.url;
const require = createRequire(base);
const { WebSocketServer } = require('ws');

const host = process.argv[2] || '127.0.0.1';
const port = Number(process.argv[3] || 8080);
const wss = new WebSocketServer({ host, port, perMessageDeflate: false, backlog: 4096 });

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
wss.on('listening', () => console.error(`node_ws_echo: listening on ${host}:${port}`));
wss.on('error', (err) => {
  console.error(`node_ws_echo: ${err.message}`);
  process.exit(1);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));

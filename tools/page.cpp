// The pages `ws6455 serve` answers at GET / (see page.hpp). Element ids are what
// tests/browser/*.mjs drive: keep them.
#include "page.hpp"

namespace ws6455::tools {
namespace {

// Echo mode: a path, connect/close, a log of what went and came back.
constexpr const char* echo_page = R"html(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ws6455</title><link rel="icon" href="data:,">
<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:50em}#log{border:1px solid #ccc;margin-bottom:.5em;
height:20em;overflow:auto;padding:.5em;white-space:pre-wrap;font-family:monospace}input{font:inherit}</style>
</head><body>
<h1>ws6455 echo</h1>
<p>Path <input id="path" value="/" size="30"> <button id="connect">connect</button>
<button id="close" disabled>close</button></p>
<div id="log"></div>
<form id="form"><input id="text" size="50" autocomplete="off" placeholder="message" disabled>
<button id="send" disabled>send</button></form>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let ws = null;
function log(s) { const d = $("log"); d.textContent += s + "\n"; d.scrollTop = d.scrollHeight; }
function ui(open) { $("text").disabled = $("send").disabled = $("close").disabled = !open; $("connect").disabled = open; }
$("connect").onclick = () => {
  $("connect").disabled = true;  // one socket at a time, even on a double click
  if (ws) ws.close();
  let path = $("path").value;
  if (!path.startsWith("/")) path = "/" + path;
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
  try { ws = new WebSocket(url); } catch (err) { log("-- error " + err.message); ui(false); return; }
  ws.onopen = () => { log("-- open " + url); ui(true); $("text").focus(); };
  ws.onmessage = (e) => log("<< " + (typeof e.data === "string" ? e.data : "[binary]"));
  ws.onclose = (e) => { log("-- close " + e.code + " " + e.reason); ui(false); };
  ws.onerror = () => log("-- error");
};
$("close").onclick = () => ws && ws.close(1000, "bye");
$("form").onsubmit = (e) => { e.preventDefault(); if (ws && $("text").value) { ws.send($("text").value); log(">> " + $("text").value); $("text").value = ""; } };
</script></body></html>
)html";

// Chat mode (docs/chat.md): connects to /chat?name=NAME, joins and leaves rooms by JSON,
// shows the current room's messages and members; errors go to the log.
constexpr const char* chat_page = R"html(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ws6455 chat</title><link rel="icon" href="data:,">
<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:56em}input{font:inherit}
#main{display:grid;grid-template-columns:14em 1fr;gap:1em}h2{font-size:1em;margin:.6em 0 .2em}
#messages,#log{border:1px solid #ccc;overflow:auto;padding:.5em;white-space:pre-wrap}
#messages{height:18em}#messages p{margin:0 0 .2em}.from{font-weight:bold}.note{color:#777}
#log{height:5em;margin-top:1em;font-family:monospace;color:#555}
ul{list-style:none;padding:0;margin:0}li{margin:.15em 0}li.current .room{font-weight:bold}#join-form{margin:.4em 0}</style>
</head><body>
<h1>ws6455 chat</h1>
<form id="conn">Name <input id="name" size="20" maxlength="64" placeholder="(the server picks)">
<button id="connect">connect</button> <button id="close" type="button" disabled>close</button>
<span id="me"></span></form>
<div id="main"><div>
<h2>Rooms</h2><ul id="rooms"></ul>
<form id="join-form"><input id="room" size="10" placeholder="room" disabled> <button id="join" disabled>join</button></form>
<h2>Who is here</h2><ul id="who"></ul>
</div><div>
<h2 id="current">(no room)</h2>
<div id="messages"></div>
<form id="form"><input id="text" size="50" autocomplete="off" placeholder="message" disabled>
<button id="send" disabled>send</button></form>
</div></div>
<div id="log"></div>
<script>
"use strict";
// User data goes in through textContent and attributes only, never as HTML.
const $ = (id) => document.getElementById(id);
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
let ws = null, me = "", current = null;
let rooms = new Map();  // name -> {lines: [{from, content} | {note}], who: [names], unread, leaving}
const live = () => ws !== null && ws.readyState === WebSocket.OPEN;
function log(s) { const d = $("log"); d.textContent += s + "\n"; d.scrollTop = d.scrollHeight; }
function send(msg) { if (live()) ws.send(JSON.stringify(msg)); }
function add(room, line) {
  const r = rooms.get(room);
  if (!r) return;
  r.lines.push(line);
  if (r.lines.length > 500) r.lines.shift();
  if (room !== current && line.from !== undefined) r.unread++;
}
function select(name) { current = name; if (rooms.has(name)) rooms.get(name).unread = 0; render(); }

function render() {
  const on = live();
  $("connect").disabled = $("name").disabled = ws !== null;
  $("close").disabled = ws === null;
  $("room").disabled = $("join").disabled = !on;
  $("text").disabled = $("send").disabled = !on || !rooms.has(current);
  const items = [];
  for (const [name, r] of rooms) {
    const li = el("li", name === current ? "current" : "");
    li.dataset.room = name;
    const b = el("button", "room", r.unread ? name + " (" + r.unread + ")" : name);
    b.onclick = () => select(name);
    li.append(b);
    if (on) {
      const x = el("button", "leave", "leave");
      x.onclick = () => { r.leaving = true; send({ type: "leave", room: name }); };
      li.append(" ", x);
    }
    items.push(li);
  }
  $("rooms").replaceChildren(...items);
  const r = rooms.get(current);
  $("current").textContent = r ? current : "(no room)";
  $("who").replaceChildren(...(r ? [...r.who].sort() : []).map((n) => el("li", "", n)));
  const m = $("messages");
  m.replaceChildren(...(r ? r.lines : []).map((l) => {
    if (l.note) return el("p", "note", l.note);
    const p = el("p", "msg");
    p.append(el("span", "from", l.from), ": ", el("span", "content", l.content));
    return p;
  }));
  m.scrollTop = m.scrollHeight;
}

function receive(m) {
  const r = rooms.get(m.room);
  if (m.type === "welcome") {
    me = m.name;
    $("me").textContent = "you are " + m.name + " on " + m.instance;
  } else if (m.type === "joined") {
    if (!r) {  // the first news of a room one is not in: one's own join
      rooms.set(m.room, { lines: [], who: [m.who], unread: 0, leaving: false });
      current = m.room;
    } else r.who.push(m.who);
    add(m.room, { note: m.who + " joined" });
  } else if (m.type === "members") {
    if (r && Array.isArray(m.who)) r.who = m.who.slice();
  } else if (m.type === "left") {
    if (!r) return;
    if (m.who === me && r.leaving) {  // ours (names are labels: another may have the same)
      rooms.delete(m.room);
      if (current === m.room) current = rooms.keys().next().value ?? null;
      return;
    }
    const i = r.who.indexOf(m.who);
    if (i >= 0) r.who.splice(i, 1);
    add(m.room, { note: m.who + " left" });
  } else if (m.type === "chat") {
    add(m.room, { from: String(m.from), content: String(m.content) });
  } else if (m.type === "error") {
    log("!! error: " + m.reason);
  } else {
    log("?? " + JSON.stringify(m).slice(0, 200));
  }
}

$("conn").onsubmit = (e) => {
  e.preventDefault();
  if (ws) return;  // one socket at a time
  const name = $("name").value.trim();
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/chat" +
              (name ? "?name=" + encodeURIComponent(name) : "");
  rooms = new Map();
  current = null;
  me = "";
  $("me").textContent = "";
  try { ws = new WebSocket(url); } catch (err) { log("-- error " + err.message); render(); return; }
  ws.onopen = () => { log("-- open " + url); render(); $("room").focus(); };
  ws.onmessage = (e) => {
    let m;
    try { m = JSON.parse(e.data); } catch { log("?? not JSON: " + String(e.data).slice(0, 200)); return; }
    if (m && typeof m === "object") receive(m);
    render();
  };
  ws.onclose = (e) => {
    log("-- close " + e.code + " " + e.reason);
    ws = null;
    for (const r of rooms.values()) r.who = [];  // the rooms stay readable; nobody is here
    render();
  };
  ws.onerror = () => log("-- error");
  render();
};
$("close").onclick = () => ws && ws.close(1000, "bye");
$("join-form").onsubmit = (e) => {
  e.preventDefault();
  const room = $("room").value.trim();
  if (!room || !live()) return;
  $("room").value = "";
  if (rooms.has(room)) select(room);
  else send({ type: "join", room });
};
$("form").onsubmit = (e) => {
  e.preventDefault();
  const text = $("text").value;
  if (!text || !live() || !rooms.has(current)) return;
  send({ type: "chat", room: current, content: text });
  $("text").value = "";
  $("text").focus();
};
</script></body></html>
)html";

}  // namespace

std::string make_page(bool chat) { return chat ? chat_page : echo_page; }

bool answer_page(const http_request& req, io::http_reply& reply, std::string_view page) {
  if (req.path() != "/") {
    reply.status = 404;
    reply.body = "not found\n";
    return false;
  }
  reply.status = 200;
  reply.content_type = "text/html; charset=utf-8";
  reply.body = page;
  return true;
}

}  // namespace ws6455::tools

// Load generator for bench/yjs.py: R rooms x C y-websocket providers (y-websocket@1.5.4, disableBc), each
// client inserting a small tagged string at `rate` per second. Every receiving client parses the tags out of
// the remote inserts and records now - send time (one process, one clock). Prints one JSON line.
// Usage: node yjs_load.mjs '{"url": "...", "params": {...}, "rooms": 50, "clients": 10, "rate": 5,
//                            "duration": 10, "warmup": 2, "textKB": 10, "prefix": "bench"}'
// Several worker processes split the rooms (roomStart/roomEnd) and start sending at `startAt` (epoch ms);
// a room lives in one process, so sender and receivers share a clock. `raw` adds every latency sample.
// `"provider": "hocuspocus"` connects with @hocuspocus/provider 4.7 (HocuspocusProvider, one socket per client,
// `ws` as its WebSocket) instead: Hocuspocus prefixes every message with the document name, so its own
// provider is the client that speaks its protocol. Everything else (rooms, clients, rates, tags) is the same.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

const cfg = JSON.parse(process.argv[2])
const hocuspocus = cfg.provider === 'hocuspocus'
const { HocuspocusProvider } = hocuspocus ? await import('@hocuspocus/provider') : {}

function connect (name, doc) {
  if (hocuspocus) {
    return new HocuspocusProvider({ url: cfg.url, name, document: doc, WebSocketPolyfill: WebSocket })
  }
  return new WebsocketProvider(cfg.url, name, doc, {
    WebSocketPolyfill: WebSocket, disableBc: true, params: cfg.params || {}, resyncInterval: -1
  })
}
process.setMaxListeners(0)
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const sentAt = new Map() // tag -> ms
const latencies = []
let recording = false
let sent = 0
let received = 0
let expected = 0
const TAG = /~(\d+)\.(\d+)\.(\d+)~/g

const clients = []
const first = cfg.roomStart || 0
const last = cfg.roomEnd === undefined ? cfg.rooms : cfg.roomEnd
for (let r = first; r < last; r++) {
  for (let c = 0; c < cfg.clients; c++) {
    const doc = new Y.Doc()
    const provider = connect(`${cfg.prefix}-${r}`, doc)
    const text = doc.getText('content')
    // only the structs this transaction added are scanned (a text observer's delta walks the whole text)
    doc.on('afterTransaction', (tr) => {
      if (tr.local) return
      const now = performance.now()
      tr.afterState.forEach((clock, client) => {
        const before = tr.beforeState.get(client) || 0
        if (clock <= before) return
        const structs = doc.store.clients.get(client)
        for (let i = Y.findIndexSS(structs, before); i < structs.length; i++) {
          const str = structs[i].content && structs[i].content.str
          if (typeof str !== 'string') continue
          for (const m of str.matchAll(TAG)) {
            const s = sentAt.get(m[0])
            if (s !== undefined && s.rec) { latencies.push(now - s.t); received++ }
          }
        }
      })
    })
    clients.push({ r, c, doc, provider, text })
  }
  if (r % 10 === 9) await sleep(50) // do not open every socket at once
}

const deadline = Date.now() + 60000
while (!clients.every((x) => x.provider.synced)) {
  if (Date.now() > deadline) { console.log(JSON.stringify({ error: 'initial sync timed out' })); process.exit(1) }
  await sleep(50)
}
// each room holds about textKB of text before the measurement (inserted once, by its first client)
const filler = 'lorem ipsum dolor sit amet '.repeat(Math.ceil(cfg.textKB * 1024 / 27)).slice(0, cfg.textKB * 1024)
for (const x of clients) if (x.c === 0 && x.text.length < cfg.textKB * 1024) x.text.insert(0, filler)
while (!clients.every((x) => x.text.length >= cfg.textKB * 1024)) {
  if (Date.now() > deadline) { console.log(JSON.stringify({ error: 'filler did not spread' })); process.exit(1) }
  await sleep(50)
}

if (cfg.hold) { // memory phase: rooms loaded, then every client leaves; the server keeps the rooms
  for (const x of clients) x.provider.destroy()
  console.log(JSON.stringify({ ready: true, rooms: cfg.rooms }))
  await sleep(cfg.hold * 1000)
  process.exit(0)
}
// every worker process starts sending at the same wall-clock moment
if (cfg.startAt) await sleep(Math.max(0, cfg.startAt - Date.now()))
const late = cfg.startAt ? Date.now() - cfg.startAt > 500 : false
let seq = 0
const timers = []
const interval = 1000 / cfg.rate
for (const x of clients) {
  const start = Math.random() * interval
  timers.push(setTimeout(() => {
    timers.push(setInterval(() => {
      const tag = `~${x.r}.${x.c}.${seq++}~`
      sentAt.set(tag, { t: performance.now(), rec: recording })
      if (recording) { sent++; expected += cfg.clients - 1 }
      const pos = Math.floor(Math.random() * (x.text.length + 1))
      x.text.insert(pos, tag)
    }, interval))
  }, start))
}
await sleep(cfg.warmup * 1000)
recording = true
const recordStart = Date.now() // epoch ms: the bench reads the server's CPU time over this window
const t0 = performance.now()
await sleep(cfg.duration * 1000)
recording = false
const recordEnd = Date.now()
const window = (performance.now() - t0) / 1000
for (const t of timers) { clearTimeout(t); clearInterval(t) }
await sleep(1500) // late deliveries of recorded sends still count
latencies.sort((a, b) => a - b)
const q = (p) => latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] : null
const texts = new Map()
let diverged = 0
for (const x of clients) {
  const t = x.text.toString()
  if (!texts.has(x.r)) texts.set(x.r, t)
  else if (texts.get(x.r) !== t) diverged++
}
const line = JSON.stringify({
  sent, sentPerSec: sent / window, received, expected, deliveriesPerSec: received / window,
  p50: q(0.5), p99: q(0.99), max: latencies.length ? latencies[latencies.length - 1] : null,
  divergedClients: diverged, window, late, recordStart, recordEnd,
  latencies: cfg.raw ? latencies.map((x) => Math.round(x * 100) / 100) : undefined
}) + '\n'
for (const x of clients) x.provider.destroy()
process.stdout.write(line, () => process.exit(0)) // a pipe is written asynchronously: exit after the flush

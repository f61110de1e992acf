// Load generator for bench/yjs.py: R rooms x C y-websocket providers (y-websocket@1.5.4, disableBc), each
// client inserting a small tagged string at `rate` per second. Every receiving client parses the tags out of
// the remote inserts and records now - send time (one process, one clock). Prints one JSON line.
// Usage: node yjs_load.mjs '{"url": "...", "params": {...}, "rooms": 50, "clients": 10, "rate": 5,
//                            "duration": 10, "warmup": 2, "textKB": 10, "prefix": "bench"}'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

const cfg = JSON.parse(process.argv[2])
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
for (let r = 0; r < cfg.rooms; r++) {
  for (let c = 0; c < cfg.clients; c++) {
    const doc = new Y.Doc()
    const provider = new WebsocketProvider(cfg.url, `${cfg.prefix}-${r}`, doc, {
      WebSocketPolyfill: WebSocket, disableBc: true, params: cfg.params || {}, resyncInterval: -1
    })
    const text = doc.getText('content')
    text.observe((event, tr) => {
      if (tr.local) return
      const now = performance.now()
      for (const d of event.delta) {
        if (typeof d.insert !== 'string') continue
        for (const m of d.insert.matchAll(TAG)) {
          const s = sentAt.get(m[0])
          if (s !== undefined && s.rec) { latencies.push(now - s.t); received++ }
        }
      }
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
const t0 = performance.now()
await sleep(cfg.duration * 1000)
recording = false
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
console.log(JSON.stringify({
  sent, sentPerSec: sent / window, received, expected, deliveriesPerSec: received / window,
  p50: q(0.5), p99: q(0.99), max: latencies.length ? latencies[latencies.length - 1] : null,
  divergedClients: diverged, window
}))
for (const x of clients) x.provider.destroy()
process.exit(0)

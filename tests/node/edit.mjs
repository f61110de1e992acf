// One WebsocketProvider: connect, optionally insert text, wait until the text equals `expect` (if given),
// print the text. Usage: node edit.mjs '<json>' with {"server", "room", "token", "insert"?, "expect"?, "timeout"?}
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

const cfg = JSON.parse(process.argv[2])
const deadline = Date.now() + (cfg.timeout || 10000)
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const doc = new Y.Doc()
const provider = new WebsocketProvider(cfg.server, cfg.room, doc, {
  WebSocketPolyfill: WebSocket, disableBc: true, params: { token: cfg.token }
})
const text = doc.getText(cfg.name || 'content')
let closed = null
provider.on('connection-close', (ev) => { if (ev) closed = { code: ev.code, reason: String(ev.reason) } })
while (!provider.synced && Date.now() < deadline && !closed) await sleep(20)
if (cfg.insert) text.insert(text.length, cfg.insert)
if (cfg.expect !== undefined) {
  while (text.toString() !== cfg.expect && Date.now() < deadline) await sleep(20)
}
await sleep(cfg.linger || 300)
console.log(JSON.stringify({ synced: provider.synced, text: text.toString(), closed }))
provider.destroy()
process.exit(0)

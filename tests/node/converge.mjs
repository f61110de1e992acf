// N WebsocketProviders (y-websocket@1.5.4, disableBc: true) edit one room concurrently and must converge,
// see each other's presence, and see a leaver's presence removed. Usage: node converge.mjs '<json>'
// json: {"server": "ws://host:port/yjs" or "servers": [...] (peer i uses servers[i % n]), "room", "tokens": [...]}
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

const cfg = JSON.parse(process.argv[2])
process.setMaxListeners(0)
const deadline = Date.now() + (cfg.timeout || 15000)
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
async function until (what, fn) {
  while (!fn()) {
    if (Date.now() > deadline) throw new Error('timeout waiting for ' + what)
    await sleep(20)
  }
}

const servers = cfg.servers || [cfg.server]
const peers = cfg.tokens.map((token, i) => {
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(servers[i % servers.length], cfg.room, doc, {
    WebSocketPolyfill: WebSocket, disableBc: true, params: { token }, connect: true
  })
  provider.awareness.setLocalState({ user: 'peer' + i })
  return { doc, provider, text: doc.getText('content'), map: doc.getMap('meta') }
})

try {
  await until('synced', () => peers.every((p) => p.provider.synced))
  // concurrent edits: every peer inserts at position 0 and sets its own map key, at the same moment
  peers.forEach((p, i) => { p.text.insert(0, `[edit-${i}]`); p.map.set('k' + i, i) })
  await until('convergence', () => {
    const texts = peers.map((p) => p.text.toString())
    return texts.every((t) => t === texts[0]) && peers.every((_, i) => texts[0].includes(`[edit-${i}]`)) &&
      peers.every((p) => p.map.size === peers.length)
  })
  // presence: everyone sees everyone else
  await until('presence', () => peers.every((p) => {
    const users = [...p.provider.awareness.getStates().values()].map((s) => s.user)
    return peers.every((_, i) => users.includes('peer' + i))
  }))
  // a late joiner gets the whole document from the server
  const lateDoc = new Y.Doc()
  const late = new WebsocketProvider(servers[servers.length - 1], cfg.room, lateDoc, {
    WebSocketPolyfill: WebSocket, disableBc: true, params: { token: cfg.tokens[0] }
  })
  await until('late joiner synced', () => late.synced && lateDoc.getText('content').toString() === peers[0].text.toString())
  // a leaver's presence disappears for the others
  const leaver = peers[peers.length - 1]
  const leaverId = leaver.doc.clientID
  leaver.provider.destroy()
  await until('presence removal', () => peers.slice(0, -1).every((p) => !p.provider.awareness.getStates().has(leaverId)))
  const result = {
    ok: true,
    text: peers[0].text.toString(),
    stateVectorsEqual: peers.slice(0, -1).every((p) =>
      Buffer.compare(Buffer.from(Y.encodeStateVector(p.doc)), Buffer.from(Y.encodeStateVector(peers[0].doc))) === 0)
  }
  console.log(JSON.stringify(result))
  late.destroy()
  peers.forEach((p) => p.provider.destroy())
  process.exit(0)
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e), texts: peers.map((p) => p.text.toString()) }))
  process.exit(1)
}

// The Hocuspocus server for bench/yjs.py: @hocuspocus/server 4.7 with @hocuspocus/extension-sqlite on a
// file (its defaults otherwise: the document is stored 2 s after the last change, at most 10 s apart).
// Usage: node yjs_hocuspocus.mjs PORT DATABASE_FILE ; prints `listening PORT` once it accepts connections.
import { Server } from '@hocuspocus/server'
import { SQLite } from '@hocuspocus/extension-sqlite'

const [port, database] = [Number(process.argv[2]), process.argv[3]]
const server = new Server({
  port, address: '127.0.0.1', quiet: true, extensions: [new SQLite({ database })]
})
await server.listen()
console.log(`listening ${server.address.port}`)

// Parse one feed document with three independent consumers; print {consumer: [item titles]} as JSON.
// Usage: node parse_feed.mjs FILE rss|atom|json   (exit 1 with the error when a consumer throws)
import { readFileSync } from 'node:fs'
import { extractFromJson, extractFromXml } from '@extractus/feed-extractor'
import { parseFeed } from '@rowanmanning/feed-parser'
import Parser from 'rss-parser'

const [file, kind] = process.argv.slice(2)
const body = readFileSync(file, 'utf8')
const out = {}
try {
  if (kind === 'json') {
    out.extractus = extractFromJson(JSON.parse(body)).entries.map((e) => e.title)
  } else {
    out.extractus = extractFromXml(body).entries.map((e) => e.title)
    out['rss-parser'] = (await new Parser().parseString(body)).items.map((i) => i.title)
    out['feed-parser'] = parseFeed(body).items.map((i) => i.title)
  }
} catch (err) {
  console.error(String(err && err.stack ? err.stack : err))
  process.exit(1)
}
console.log(JSON.stringify(out))

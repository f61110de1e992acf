// tsdav (an independent JS CalDAV/CardDAV client) against a server: discovery, PUT, time-range query,
// sync-collection deltas after a PUT and after a DELETE, multiget, address books and vCards.
// Usage: node dav_check.mjs SERVER_URL USER PASSWORD   -> prints one JSON object with what it saw.
import { createDAVClient } from 'tsdav';

const [serverUrl, username, password] = process.argv.slice(2);
const out = {};
const event = (uid, day) =>
  `BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//tsdav check//EN\r\nBEGIN:VEVENT\r\nUID:${uid}\r\n` +
  `DTSTAMP:20260101T000000Z\r\nDTSTART:202603${day}T100000Z\r\nDTEND:202603${day}T110000Z\r\nSUMMARY:${uid}\r\n` +
  'END:VEVENT\r\nEND:VCALENDAR\r\n';

const client = await createDAVClient({
  serverUrl, credentials: { username, password }, authMethod: 'Basic', defaultAccountType: 'caldav',
});
const calendars = await client.fetchCalendars();
out.calendars = calendars.map((c) => c.displayName);
const calendar = calendars.find((c) => c.displayName === 'tsdav');
out.syncToken = Boolean(calendar.syncToken);
out.ctag = Boolean(calendar.ctag);
const put = await client.createCalendarObject({ calendar, filename: 'ts-1.ics', iCalString: event('ts-1', '10') });
out.put = put.status;
await client.createCalendarObject({ calendar, filename: 'ts-2.ics', iCalString: event('ts-2', '20') });
const ranged = await client.fetchCalendarObjects({
  calendar, timeRange: { start: '2026-03-09T00:00:00Z', end: '2026-03-11T00:00:00Z' },
});
out.timeRange = ranged.map((o) => o.url.split('/').pop());
const multi = await client.calendarMultiGet({
  url: calendar.url, props: { 'd:getetag': {}, 'c:calendar-data': {} }, objectUrls: [`${calendar.url}ts-2.ics`], depth: '1',
});
out.multiget = multi.map((r) => (r.props?.calendarData?._cdata ?? r.props?.calendarData ?? '').includes('UID:ts-2'));
const before = await client.propfind({ url: calendar.url, props: { 'd:sync-token': {} }, depth: '0' });
const token = before[0].props.syncToken;
await client.createCalendarObject({ calendar, filename: 'ts-3.ics', iCalString: event('ts-3', '21') });
const afterPut = await client.syncCollection({
  url: calendar.url, props: { 'd:getetag': {} }, syncLevel: 1, syncToken: token,
});
out.afterPut = afterPut.map((r) => [r.href.split('/').pop(), r.status]);
const state = await client.propfind({ url: calendar.url, props: { 'd:sync-token': {} }, depth: '0' });
const token2 = state[0].props.syncToken;
await client.deleteCalendarObject({ calendarObject: { url: `${calendar.url}ts-1.ics` } });
const afterDelete = await client.syncCollection({
  url: calendar.url, props: { 'd:getetag': {} }, syncLevel: 1, syncToken: token2,
});
out.afterDelete = afterDelete.map((r) => [r.href.split('/').pop(), r.status]);

const cardClient = await createDAVClient({
  serverUrl, credentials: { username, password }, authMethod: 'Basic', defaultAccountType: 'carddav',
});
const books = await cardClient.fetchAddressBooks();
out.books = books.map((b) => b.displayName);
const book = books.find((b) => b.displayName === 'tsdav contacts');
await cardClient.createVCard({
  addressBook: book, filename: 'c1.vcf',
  vCardString: 'BEGIN:VCARD\r\nVERSION:3.0\r\nUID:c1\r\nFN:Card One\r\nEMAIL:c1@example.org\r\nEND:VCARD\r\n',
});
const cards = await cardClient.fetchVCards({ addressBook: book });
out.cards = cards.map((c) => c.data.includes('FN:Card One'));
console.log(JSON.stringify(out));

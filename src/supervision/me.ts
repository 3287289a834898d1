import { Readable } from 'node:stream';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { stringify } from 'csv-stringify';
import Type from 'typebox';
import { decodeCursor, encodeCursor, isTimeKey } from '../pagination.js';
import { spreadsheetText } from '../spreadsheet.js';
import type { TypedApp } from '../plugins/typed-app.js';
import { frameOf } from '../portal/frame.js';
import { wantsFragment } from '../portal/pages.js';
import type { Translator } from '../portal/i18n.js';
import { citizensOnly, personOf, sendPersonalPage, type PagesPlugin, type SupervisionContext } from './context.js';
import { accessLog, accessLogAll, type AccessLogEntry } from '../audit/trail.js';
import { namesFor, type Names } from './names.js';

const ENTRIES_PER_PAGE = 50;

/** A time as China reads it, for a spreadsheet: `2026-03-02 17:05:09` (Asia/Shanghai, UTC+8). */
const chinaTime = new Intl.DateTimeFormat('sv-SE', { timeZone: 'Asia/Shanghai', dateStyle: 'short', timeStyle: 'medium' });

/** An entry as the page and the CSV show it: names in the person's language, the purpose exactly as the agency sent it. */
function shown(entry: AccessLogEntry, tr: Translator, names: Names) {
  const en = tr.locale === 'en';
  const actionKey = `me.action.${entry.action}`;
  return {
    occurredAt: new Date(entry.occurred_at),
    agency: (en ? entry.agency_name_en : entry.agency_name) ?? entry.agency ?? '',
    agencyCode: entry.agency ?? '',
    action: tr.t(actionKey) === actionKey ? entry.action : tr.t(actionKey),
    resource: (en ? entry.resource_title : entry.resource_name) ?? entry.resource ?? '',
    resourceCode: entry.resource ?? '',
    purpose: entry.purpose ?? '',
    legalBasis: entry.legal_basis ?? '',
    fields: (entry.fields ?? []).map((field) => (entry.resource ? names.item(entry.resource, field) : field)),
  };
}

/** GET /me: who used records about me, when, why; newest first, a page at a time. */
function accessLogPageRoute(app: TypedApp, context: SupervisionContext) {
  app.get(
    '/me',
    { schema: { hide: true, querystring: Type.Object({ cursor: Type.Optional(Type.String({ maxLength: 300 })) }) }, preHandler: citizensOnly },
    async (request, reply) => {
      const ref = app.subjectRef(personOf(request).person as string);
      const { cursor } = request.query;
      const { items, next } = await accessLog(app.db, ref, ENTRIES_PER_PAGE, cursor ? decodeCursor(cursor, isTimeKey) : undefined);
      const names = await namesFor(app, [], items.flatMap((entry) => (entry.resource ? [entry.resource] : [])));
      const template = wantsFragment(request, 'me-list') ? 'supervision/templates/partials/me-list.eta' : 'supervision/templates/me.eta';
      return sendPersonalPage(request, reply, context, template, (frame) => ({
        title: frame.t('me.title'),
        entries: items.map((entry) => shown(entry, frame.tr, names(frame.locale))),
        next: next ? frame.href('/me', { cursor: encodeCursor(next) }) : null,
        first: cursor ? frame.href('/me') : null,
        csv: frame.href('/me/access-log.csv'),
      }));
    },
  );
}

/** GET /me/access-log.csv: the same, all of it, for a spreadsheet (UTF-8 with a BOM, so that Excel reads the Chinese). */
function accessLogCsvRoute(app: TypedApp) {
  app.get('/me/access-log.csv', { schema: { hide: true }, preHandler: citizensOnly }, async (request, reply) => {
    const ref = app.subjectRef(personOf(request).person as string);
    const tr = frameOf(request).tr;
    const columns = ['time', 'agency', 'agency_code', 'action', 'resource', 'resource_code', 'purpose', 'legal_basis', 'fields'];
    const namesByResource = new Map<string, Names>();
    async function* rows() {
      for await (const entry of accessLogAll(app.db, ref)) {
        const code = entry.resource ?? '';
        if (!namesByResource.has(code)) namesByResource.set(code, (await namesFor(app, [], code ? [code] : []))(tr.locale));
        const row = shown(entry, tr, namesByResource.get(code) as Names);
        yield {
          time: chinaTime.format(row.occurredAt),
          agency: row.agency,
          agency_code: row.agencyCode,
          action: row.action,
          resource: row.resource,
          resource_code: row.resourceCode,
          purpose: row.purpose,
          legal_basis: row.legalBasis,
          fields: row.fields.join('、'),
        };
      }
    }
    return reply
      .header('cache-control', 'no-store')
      .header('content-disposition', 'attachment; filename="access-log.csv"')
      .header('content-language', tr.locale)
      .type('text/csv; charset=utf-8')
      .send(Readable.from(rows()).pipe(stringify({ bom: true, cast: { string: spreadsheetText }, header: true, columns: columns.map((column) => ({ key: column, header: tr.t(`me.csv.${column}`) })) })));
  });
}

/** The citizen's page (我的数据使用记录): who used records about them; nothing else is open to a citizen's session. */
export const citizenPages: PagesPlugin = (parent, context) => {
  const app = parent.withTypeProvider<TypeBoxTypeProvider>();
  accessLogPageRoute(app, context);
  accessLogCsvRoute(app);
};

import type { FastifyInstance } from 'fastify';
import { findAgency, type Resource } from '../catalog/index.js';
import type { Locale } from '../portal/i18n.js';

/** What a page calls the agencies, resources and data items it shows, in its language (the code when the catalog has none). */
export interface Names {
  agency(code: string): string;
  resource(code: string): string;
  item(resource: string, field: string): string;
}

/** The catalog entries of the agencies and resources a page names, read once per page. */
export async function namesFor(app: FastifyInstance, agencyCodes: string[], resourceCodes: string[]): Promise<(locale: Locale) => Names> {
  const agencies = new Map(await Promise.all([...new Set(agencyCodes)].map(async (code) => [code, await findAgency(app.db, code)] as const)));
  const resources = new Map<string, Resource | undefined>(
    await Promise.all([...new Set(resourceCodes)].map(async (code) => [code, (await app.catalogCache.find(code))?.document] as const)),
  );
  return (locale) => {
    const en = locale === 'en';
    return {
      agency: (code) => {
        const agency = agencies.get(code);
        return agency ? (en ? agency.name_en : agency.name) : code;
      },
      resource: (code) => {
        const resource = resources.get(code);
        return resource ? (en ? resource.title : resource.name) : code;
      },
      item: (code, field) => {
        const item = resources.get(code)?.items.find((one) => one.name === field);
        return item ? (en ? item.title_en : item.title) : field;
      },
    };
  };
}

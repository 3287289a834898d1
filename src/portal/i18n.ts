import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Negotiator from 'negotiator';
import type { FastifyRequest } from 'fastify';
import { projectRoot } from '../paths.js';

/** The portal's languages, Chinese first: the first is the default. */
export const LOCALES = ['zh-Hans', 'en'] as const;
export type Locale = (typeof LOCALES)[number];

type Catalogue = Record<string, string>;

/** One message catalogue per language, keyed by meaning (`search.submit`), not by the Chinese text. */
export const messagesDir = join(projectRoot, 'src', 'portal', 'messages');
/** The catalogues of every folder of pages (the portal's, the supervision's), merged: a key is in one only. */
export const messagesDirs = [messagesDir, join(projectRoot, 'src', 'supervision', 'messages')];

function readCatalogue(locale: Locale): Catalogue {
  const merged: Catalogue = {};
  for (const dir of messagesDirs) {
    const part = JSON.parse(readFileSync(join(dir, `${locale}.json`), 'utf8')) as Catalogue;
    for (const [key, text] of Object.entries(part)) {
      if (key in merged) throw new Error(`message ${key} is in more than one catalogue (${dir})`);
      merged[key] = text;
    }
  }
  return merged;
}

const catalogues: Record<Locale, Catalogue> = { 'zh-Hans': readCatalogue('zh-Hans'), en: readCatalogue('en') };

export function isLocale(value: unknown): value is Locale {
  return typeof value === 'string' && (LOCALES as readonly string[]).includes(value);
}

/**
 * The language of a page: `?lang=` when it names one of ours, else the first of Accept-Language
 * that we have (any `zh-…` is Chinese, any `en-…` English), else Chinese.
 */
export function chooseLocale(request: FastifyRequest): { locale: Locale; asked: boolean } {
  const lang = (request.query as { lang?: unknown } | undefined)?.lang;
  if (isLocale(lang)) return { locale: lang, asked: true };
  const accepted = new Negotiator({ headers: { 'accept-language': request.headers['accept-language'] ?? '' } }).languages();
  for (const tag of accepted) {
    const primary = tag.toLowerCase().split('-')[0];
    if (primary === 'zh') return { locale: 'zh-Hans', asked: false };
    if (primary === 'en') return { locale: 'en', asked: false };
  }
  return { locale: 'zh-Hans', asked: false };
}

const BYTE_UNITS = ['byte', 'kilobyte', 'megabyte', 'gigabyte'] as const;
const TIME_ZONE = 'Asia/Shanghai';

export interface Translator {
  locale: Locale;
  /** The text for a key, `{name}` replaced by params; a missing key shows as itself (a test keeps none missing). */
  t(key: string, params?: Record<string, string | number>): string;
  number(value: number): string;
  date(value: Date | string): string;
  dateTime(value: Date | string): string;
  size(bytes: number): string;
}

const translators = new Map<Locale, Translator>();

export function translator(locale: Locale): Translator {
  const known = translators.get(locale);
  if (known) return known;
  const messages = catalogues[locale];
  const numbers = new Intl.NumberFormat(locale);
  const dates = new Intl.DateTimeFormat(locale, { dateStyle: 'medium', timeZone: TIME_ZONE });
  const dateTimes = new Intl.DateTimeFormat(locale, { dateStyle: 'medium', timeStyle: 'short', timeZone: TIME_ZONE });
  const sizes = BYTE_UNITS.map((unit) => new Intl.NumberFormat(locale, { style: 'unit', unit, unitDisplay: 'short', maximumFractionDigits: 1 }));
  const made: Translator = {
    locale,
    t(key, params) {
      const text = messages[key] ?? key;
      return params ? text.replace(/\{(\w+)\}/g, (whole, name: string) => (name in params ? String(params[name]) : whole)) : text;
    },
    number: (value) => numbers.format(value),
    date: (value) => dates.format(new Date(value)),
    dateTime: (value) => dateTimes.format(new Date(value)),
    size(bytes) {
      let unit = 0;
      let value = bytes;
      while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
        value /= 1024;
        unit += 1;
      }
      return (sizes[unit] as Intl.NumberFormat).format(value);
    },
  };
  translators.set(locale, made);
  return made;
}

/** The keys of a catalogue (for the test that keeps every language complete). */
export function catalogueKeys(locale: Locale): string[] {
  return Object.keys(catalogues[locale]).sort();
}

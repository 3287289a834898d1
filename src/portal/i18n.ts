import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyRequest } from 'fastify';
import Negotiator from 'negotiator';
import { projectRoot } from '../paths.js';

/** The portal's languages: Chinese first (the default), English beside it. */
export const LOCALES = ['zh-Hans', 'en'] as const;
export type Locale = (typeof LOCALES)[number];

type Catalogue = Record<string, string>;

const messagesDir = join(projectRoot, 'src', 'portal', 'messages');

/** One message catalogue per language, keyed by meaning (`search.submit`), read once. */
export const catalogues: Record<Locale, Catalogue> = Object.fromEntries(
  LOCALES.map((locale) => [locale, JSON.parse(readFileSync(join(messagesDir, `${locale}.json`), 'utf8')) as Catalogue]),
) as Record<Locale, Catalogue>;

/**
 * What Accept-Language may name for each language, most specific first. Any Chinese tag is
 * taken for Simplified Chinese, the only Chinese there is (a reader of zh-TW is better served by
 * it than by English).
 */
const TAGS: Array<[string, Locale]> = [
  ['zh-Hans', 'zh-Hans'],
  ['zh-CN', 'zh-Hans'],
  ['zh-SG', 'zh-Hans'],
  ['zh-TW', 'zh-Hans'],
  ['zh-HK', 'zh-Hans'],
  ['zh', 'zh-Hans'],
  ['en', 'en'],
  ['en-US', 'en'],
  ['en-GB', 'en'],
];

export interface LocaleChoice {
  locale: Locale;
  /** true when `?lang=` chose it: links carry it on, so that the choice sticks. */
  explicit: boolean;
}

/** `?lang=en` or `?lang=zh-Hans` first, then Accept-Language (RFC 9110 §12.5.4), then Chinese. */
export function chooseLocale(request: FastifyRequest): LocaleChoice {
  const asked = (request.query as { lang?: unknown } | undefined)?.lang;
  if (asked === 'en' || asked === 'zh-Hans') return { locale: asked, explicit: true };
  const header = request.headers['accept-language'];
  if (!header) return { locale: 'zh-Hans', explicit: false };
  const best = new Negotiator({ headers: { 'accept-language': header } }).language(TAGS.map(([tag]) => tag));
  const match = TAGS.find(([tag]) => tag.toLowerCase() === best?.toLowerCase());
  return { locale: match?.[1] ?? 'zh-Hans', explicit: false };
}

export interface Translator {
  locale: Locale;
  /** The message for a key, with `{name}` placeholders filled; the key itself when missing (a test checks none is). */
  t(key: string, values?: Record<string, string | number>): string;
  number(value: number): string;
  date(value: Date | string | null | undefined): string;
  dateTime(value: Date | string | null | undefined): string;
  /** Bytes as people read them: 1.2 MB, 640 KB. */
  size(bytes: number): string;
}

const formatters = new Map<Locale, { number: Intl.NumberFormat; date: Intl.DateTimeFormat; dateTime: Intl.DateTimeFormat; decimal: Intl.NumberFormat }>();
function formattersOf(locale: Locale) {
  let known = formatters.get(locale);
  if (!known) {
    const tag = locale === 'en' ? 'en-GB' : 'zh-Hans-CN';
    known = {
      number: new Intl.NumberFormat(tag),
      decimal: new Intl.NumberFormat(tag, { maximumFractionDigits: 1 }),
      // Times as the province keeps them.
      date: new Intl.DateTimeFormat(tag, { dateStyle: 'medium', timeZone: 'Asia/Shanghai' }),
      dateTime: new Intl.DateTimeFormat(tag, { dateStyle: 'medium', timeStyle: 'short', timeZone: 'Asia/Shanghai' }),
    };
    formatters.set(locale, known);
  }
  return known;
}

export function translator(locale: Locale): Translator {
  const catalogue = catalogues[locale];
  const format = formattersOf(locale);
  const when = (value: Date | string | null | undefined, with_: Intl.DateTimeFormat) => {
    if (value === null || value === undefined) return '—';
    const date = typeof value === 'string' ? new Date(value) : value;
    return Number.isNaN(date.getTime()) ? '—' : with_.format(date);
  };
  return {
    locale,
    t(key, values) {
      const text = catalogue[key] ?? key;
      return values ? text.replace(/\{(\w+)\}/g, (whole, name: string) => (name in values ? String(values[name]) : whole)) : text;
    },
    number: (value) => format.number.format(value),
    date: (value) => when(value, format.date),
    dateTime: (value) => when(value, format.dateTime),
    size(bytes) {
      const units = ['B', 'KB', 'MB', 'GB'];
      let value = bytes;
      let unit = 0;
      while (value >= 1024 && unit < units.length - 1) {
        value /= 1024;
        unit += 1;
      }
      return `${unit === 0 ? format.number.format(value) : format.decimal.format(value)} ${units[unit]}`;
    },
  };
}

import type { FastifyRequest } from 'fastify';
import { chooseLocale, LOCALES, translator, type Locale, type Translator } from './i18n.js';

export type Params = Record<string, string | number | undefined | null>;

/** What every page's layout needs: the language, its texts, and links that keep the language. */
export interface Frame {
  locale: Locale;
  tr: Translator;
  /** `t` of the page's language (templates call it most). */
  t: Translator['t'];
  /** A link within the portal, with `lang` kept when the visitor chose it by `?lang=`. */
  href(path: string, params?: Params): string;
  /** This page in each language (the language switch and `<link rel="alternate" hreflang>`). */
  languages: Array<{ locale: Locale; label: string; url: string; current: boolean }>;
  /** The path of this page, for the navigation's aria-current. */
  path: string;
  /** Whether the language was chosen by `?lang=` (forms then carry it on). */
  asked: boolean;
}

export function query(params: Params): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value !== undefined && value !== null && value !== '') search.set(key, String(value));
  const text = search.toString();
  return text ? `?${text}` : '';
}

/** The frame of a request's page. */
export function frameOf(request: FastifyRequest): Frame {
  const { locale, asked } = chooseLocale(request);
  const tr = translator(locale);
  const url = new URL(request.url, 'http://portal.invalid');
  const here = Object.fromEntries(url.searchParams);
  return {
    locale,
    tr,
    t: tr.t,
    href: (path, params = {}) => `${path}${query({ ...params, ...(asked ? { lang: locale } : {}) })}`,
    languages: LOCALES.map((other) => ({
      locale: other,
      label: translator(other).t('language.name'),
      url: `${url.pathname}${query({ ...here, lang: other })}`,
      current: other === locale,
    })),
    path: url.pathname,
    asked,
  };
}

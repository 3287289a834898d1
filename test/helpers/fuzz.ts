/**
 * Requests generated from the gateway's OpenAPI document, for property-based tests (fast-check):
 * each operation's parameters and body, as the schemas describe them, then bent the ways hostile
 * or broken clients bend them: wrong types, missing and extra fields, huge and empty strings,
 * deep JSON, Unicode edge cases, SQL and path metacharacters, bad cursors, bad Range and
 * conditional headers. What the values mean in a world (real resource codes, record keys, ids,
 * tokens) comes from the test as hints, by parameter or property name.
 */
import fc from 'fast-check';

export type JsonSchema = Record<string, any>;

export interface OperationParameter {
  name: string;
  in: 'path' | 'query' | 'header';
  required: boolean;
  schema: JsonSchema;
}

/** One operation of the document: a method on a path template. */
export interface Operation {
  method: string;
  /** The OpenAPI path template, e.g. `/v1/resources/{code}/records/{key}`. */
  path: string;
  /** `GET /v1/…`, how tests and reports name it. */
  name: string;
  parameters: OperationParameter[];
  body?: { mediaType: string; schema: JsonSchema };
  /** Alternatives of scopes, any one of which is enough (OpenAPI security); undefined when anonymous callers may call. */
  security?: string[][];
}

/** The request a case sends, in the shape `app.inject` takes. */
export interface FuzzRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  payload?: string;
  /** Which credentials it carries (a label of the world's token pool), for the report and the audit rule. */
  credentials: string;
}

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

/** Every operation of an OpenAPI 3 document, with `$ref`s left for the generator to follow. */
export function operationsOf(document: JsonSchema): Operation[] {
  const operations: Operation[] = [];
  for (const [path, item] of Object.entries<JsonSchema>(document.paths ?? {})) {
    for (const method of METHODS) {
      const operation = item[method];
      if (!operation) continue;
      const parameters = ((operation.parameters ?? []) as JsonSchema[]).map((parameter) => ({
        name: String(parameter.name),
        in: parameter.in as OperationParameter['in'],
        required: Boolean(parameter.required),
        schema: parameter.schema ?? {},
      }));
      const content = operation.requestBody?.content as Record<string, { schema?: JsonSchema }> | undefined;
      const [mediaType, media] = Object.entries(content ?? {})[0] ?? [];
      operations.push({
        method: method.toUpperCase(),
        path,
        name: `${method.toUpperCase()} ${path}`,
        parameters,
        ...(mediaType ? { body: { mediaType, schema: media?.schema ?? {} } } : {}),
        ...(operation.security ? { security: (operation.security as Array<Record<string, string[]>>).map((alternative) => Object.values(alternative).flat()) } : {}),
      });
    }
  }
  return operations;
}

/** A lone surrogate's bytes as CESU-8 would send them: not UTF-8, which a decoder must refuse. */
function surrogateBytes(unit: number): string {
  return [0xe0 | (unit >> 12), 0x80 | ((unit >> 6) & 0x3f), 0x80 | (unit & 0x3f)].map((byte) => `%${byte.toString(16).toUpperCase()}`).join('');
}

/**
 * Percent-encode text as a client puts it in a URL: UTF-8 (RFC 3986); a lone surrogate, which has
 * no UTF-8 form, goes out as the bytes a careless encoder makes of it.
 */
export function percentEncode(text: string): string {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    const next = text.charCodeAt(i + 1);
    if (unit >= 0xd800 && unit <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
      out += encodeURIComponent(text.slice(i, i + 2));
      i += 1;
    } else if (unit >= 0xd800 && unit <= 0xdfff) {
      out += surrogateBytes(unit);
    } else {
      out += encodeURIComponent(text[i] as string);
    }
  }
  return out;
}

/**
 * A header value as Node hands it over from the wire: one character per byte (latin1). Text is
 * sent as its UTF-8 bytes (what curl does); bytes the HTTP parser refuses before any route sees
 * them (NUL, CR, LF and other controls but tab, DEL) are left out, since no request carries them.
 */
export function headerBytes(text: string): string {
  const bytes = /[^\x00-\xff]/.test(text) ? Buffer.from(text, 'utf8').toString('latin1') : text;
  return bytes.replace(/[\x00-\x08\x0a-\x1f\x7f]/g, '');
}

const fullWidth = (digits: string) => digits.replace(/[0-9]/g, (d) => String.fromCharCode(0xff10 + Number(d)));

/** Strings that have broken parsers, drivers and databases before. */
export const NASTY_STRINGS: readonly string[] = [
  '',
  ' ',
  '\t',
  '\u0000',
  'a\u0000b',
  '%00',
  '\uD800',
  '\uDFFF',
  'x\uD83D',
  '\uDE00x',
  '\u202Eabc',
  'abc\u200F',
  '\u200B',
  '\uFEFF',
  '\u2028\u2029',
  'e\u0301',
  '\u{20000}',
  '👩‍👩‍👧‍👦',
  fullWidth('330106199001011234'),
  '٣٣٠١٠٦',
  '\xff\xfe\xfd',
  '\xed\xa0\x80',
  '\xc0\x80',
  "' OR '1'='1",
  "'; drop table clients; --",
  '"',
  '\\',
  '%',
  '_',
  '%_%',
  '$1',
  '::text',
  "E'\\x00'",
  'NULL',
  'null',
  'undefined',
  'true',
  '../../etc/passwd',
  '..',
  '.',
  '/',
  '//',
  '%2e%2e%2f',
  '..%2f..%2f',
  '..\\..\\windows',
  'C:\\',
  'file:///etc/passwd',
  '~',
  '~~',
  'a~b~c',
  '?',
  '#',
  '&',
  '=',
  '+',
  ',',
  ';',
  '<script>alert(1)</script>',
  '{{7*7}}',
  '${7*7}',
  '%s%s%n',
  'NaN',
  'Infinity',
  '-0',
  '1e309',
  '0x10',
  '9'.repeat(400),
  '-1',
  '2020-02-30',
  '0000-00-00',
  '0000-01-01',
  '2016-12-31T23:59:60Z',
  '+275760-09-13T00:00:00Z',
  '1970-01-01T00:00:00+24:00',
  '{}',
  '[]',
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'hasOwnProperty',
  'W/"x"',
  '*',
  'bytes=0-0',
];

/** Single UTF-16 units of every kind, lone surrogates included: strings no UTF-8 can carry. */
const anyUnit = fc.oneof(
  fc.integer({ min: 0, max: 0xffff }).map((unit) => String.fromCharCode(unit)),
  fc.constantFrom('\u0000', '\uD800', '\uDBFF', '\uDC00', '\uDFFF', '\u202E', '\u200F', '\uFEFF', '\uFFFE', '\uFFFF'),
);

/** Long strings: over the schemas' limits, or near the body limit. */
const hugeText = fc
  .tuple(fc.constantFrom(600, 5_000, 70_000, 400_000), fc.constantFrom('a', '中', '\u0000', '🐉', "'", '%'))
  .map(([length, unit]) => unit.repeat(length));

export const hostileText: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...NASTY_STRINGS) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 24 }) },
  { weight: 2, arbitrary: fc.string({ unit: anyUnit, maxLength: 12 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 24 }) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom(...NASTY_STRINGS), fc.string({ maxLength: 8 }), fc.constantFrom(...NASTY_STRINGS)).map((parts) => parts.join('')) },
  { weight: 1, arbitrary: hugeText },
);

/** Names that are not an object's own property in JavaScript, or barely names at all. */
export const hostileKey = fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', '', ' ', 'a.b', 'A', 'x'.repeat(300), '\u0000', '\uD800', '$where', '1', '-1', 'id_number\u200B');

/** JSON nested this deep, as text (JSON.stringify of such a value would itself overflow). */
export const deepJson: fc.Arbitrary<string> = fc
  .tuple(fc.constantFrom(64, 1_000, 20_000, 200_000), fc.boolean())
  .map(([depth, arrays]) => (arrays ? `${'['.repeat(depth)}${']'.repeat(depth)}` : `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`));

/** A value nested deep inside JSON (bounded so that JSON.stringify copes). */
const deepValue: fc.Arbitrary<unknown> = fc.integer({ min: 10, max: 2_000 }).map((depth) => {
  let value: unknown = 'deep';
  for (let i = 0; i < depth; i++) value = i % 2 ? [value] : { a: value };
  return value;
});

/** Numbers at and beyond every boundary a schema or a database column has. */
const edgeNumbers: fc.Arbitrary<number> = fc.constantFrom(0, -0, -1, 1.5, 2 ** 31, -(2 ** 31) - 1, 2 ** 53, 2 ** 63, 1e308, -1e308, Number.MIN_VALUE, 4294967296);

/** Any value of a type the schema did not ask for. */
export const wrongValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  edgeNumbers,
  hostileText,
  fc.constant([]),
  fc.constant({}),
  fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 3 }),
  fc.dictionary(fc.oneof(hostileKey, fc.string({ maxLength: 6 })), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }),
  deepValue,
);

/** RFC 3339 date-times, with the corners a parser gets wrong (leap seconds, offsets, far years). */
const dateTimes: fc.Arbitrary<string> = fc.oneof(
  fc.date({ min: new Date('1900-01-01T00:00:00Z'), max: new Date('2100-01-01T00:00:00Z'), noInvalidDate: true }).map((date) => date.toISOString()),
  fc.constantFrom(
    '2016-12-31T23:59:60Z',
    '1990-12-31T15:59:60-08:00',
    '2026-01-01T00:00:00+14:00',
    '2026-01-01T00:00:00-23:59',
    '2026-01-01t00:00:00z',
    '0001-01-01T00:00:00Z',
    '9999-12-31T23:59:59.999999999Z',
    '2024-02-29T00:00:00Z',
    '2026-06-01T12:00:00.5+00:00',
  ),
);

/** Values for names the world knows: real codes, keys, ids, tokens, items of its datasets. */
export type Hints = Record<string, fc.Arbitrary<unknown>>;

/**
 * Arbitraries from the document's JSON Schemas: `valid` keeps to a schema (enough to get past
 * validation and reach the handler), `fuzzed` mostly does and otherwise bends it.
 */
export class SchemaFuzzer {
  constructor(
    private readonly document: JsonSchema,
    private readonly hints: Hints,
  ) {}

  private resolve(schema: JsonSchema): JsonSchema {
    let resolved = schema;
    while (typeof resolved?.$ref === 'string') {
      const name = resolved.$ref.replace(/^#\/components\/schemas\//, '');
      resolved = this.document.components?.schemas?.[name] ?? {};
    }
    return resolved ?? {};
  }

  /** A hint for this name in this operation (`{path} name`), or for the name anywhere. */
  hint(operation: Operation | undefined, name: string | undefined): fc.Arbitrary<unknown> | undefined {
    if (!name) return undefined;
    return (operation && this.hints[`${operation.path} ${name}`]) ?? this.hints[name];
  }

  valid(schema: JsonSchema, name?: string, operation?: Operation): fc.Arbitrary<unknown> {
    const hinted = this.hint(operation, name);
    const plain = this.plainValid(this.resolve(schema), operation);
    return hinted ? fc.oneof({ weight: 6, arbitrary: hinted }, { weight: 1, arbitrary: plain }) : plain;
  }

  private plainValid(schema: JsonSchema, operation?: Operation): fc.Arbitrary<unknown> {
    if (Array.isArray(schema.anyOf) || Array.isArray(schema.oneOf)) {
      const branches = (schema.anyOf ?? schema.oneOf) as JsonSchema[];
      return fc.oneof(...branches.map((branch) => this.valid(branch, undefined, operation)));
    }
    if (schema.const !== undefined) return fc.constant(schema.const);
    if (Array.isArray(schema.enum)) return fc.constantFrom(...(schema.enum as unknown[]));
    const type = Array.isArray(schema.type) ? schema.type.find((t: string) => t !== 'null') : schema.type;
    switch (type) {
      case 'string':
        return this.validString(schema);
      case 'integer':
        return fc.integer({ min: schema.minimum ?? -1_000, max: schema.maximum ?? Math.max(1_000, (schema.minimum ?? 0) + 1_000) });
      case 'number':
        return fc.double({ min: schema.minimum ?? -1e6, max: schema.maximum ?? 1e6, noNaN: true });
      case 'boolean':
        return fc.boolean();
      case 'array':
        return fc.array(this.valid(schema.items ?? {}, undefined, operation), {
          minLength: schema.minItems ?? 0,
          maxLength: Math.min(schema.maxItems ?? 4, Math.max(4, schema.minItems ?? 0)),
        });
      case 'object':
      default:
        if (type === undefined && !schema.properties && !schema.additionalProperties) return fc.jsonValue({ maxDepth: 2 });
        return this.validObject(schema, operation);
    }
  }

  private validString(schema: JsonSchema): fc.Arbitrary<string> {
    if (schema.format === 'date-time') return dateTimes;
    if (typeof schema.pattern === 'string') {
      const pattern = fc.stringMatching(new RegExp(schema.pattern));
      return schema.maxLength === undefined ? pattern : pattern.filter((s) => s.length <= schema.maxLength);
    }
    const minLength = schema.minLength ?? 0;
    return fc.string({ unit: 'grapheme', minLength, maxLength: Math.max(minLength, Math.min(schema.maxLength ?? 40, 40)) });
  }

  private validObject(schema: JsonSchema, operation?: Operation): fc.Arbitrary<Record<string, unknown>> {
    const properties = (schema.properties ?? {}) as Record<string, JsonSchema>;
    const required = new Set<string>(schema.required ?? []);
    const shape: Record<string, fc.Arbitrary<unknown>> = {};
    for (const [name, property] of Object.entries(properties)) shape[name] = this.valid(property, name, operation);
    const fixed = fc.record(shape, { requiredKeys: [...required].filter((name) => name in shape) });
    const extra = schema.additionalProperties;
    if (!extra || Object.keys(properties).length > 0) return fixed as fc.Arbitrary<Record<string, unknown>>;
    const values = typeof extra === 'object' ? this.valid(extra, undefined, operation) : fc.jsonValue({ maxDepth: 1 });
    return fc.dictionary(fc.string({ minLength: 1, maxLength: 12 }), values, { minKeys: schema.minProperties ?? 0, maxKeys: Math.min(schema.maxProperties ?? 4, 4) });
  }

  /** Mostly valid; otherwise bent. */
  fuzzed(schema: JsonSchema, name?: string, operation?: Operation): fc.Arbitrary<unknown> {
    return fc.oneof({ weight: 6, arbitrary: this.valid(schema, name, operation) }, { weight: 4, arbitrary: this.bent(schema, operation) });
  }

  /** A hostile value of the schema's type (over its bounds, odd text), or a value of another type. */
  bent(schema: JsonSchema, operation?: Operation): fc.Arbitrary<unknown> {
    const resolved = this.resolve(schema);
    const type = Array.isArray(resolved.type) ? resolved.type[0] : resolved.type;
    const sameType: fc.Arbitrary<unknown> =
      type === 'integer' || type === 'number'
        ? fc.oneof(edgeNumbers, fc.constant((resolved.minimum ?? 0) - 1), fc.constant((resolved.maximum ?? 1e9) + 1))
        : type === 'array'
          ? fc.oneof(fc.constant([]), fc.array(this.fuzzed(resolved.items ?? {}, undefined, operation), { minLength: 1, maxLength: 4 }), fc.array(fc.constant('x'), { minLength: 201, maxLength: 260 }))
          : type === 'object'
            ? this.bentObject(resolved, operation)
            : hostileText;
    return fc.oneof({ weight: 3, arbitrary: sameType }, { weight: 1, arbitrary: wrongValue });
  }

  /** An object with a field bent, one missing, or one too many. */
  bentObject(schema: JsonSchema, operation?: Operation): fc.Arbitrary<unknown> {
    const properties = Object.keys((schema.properties ?? {}) as Record<string, JsonSchema>);
    return this.valid(schema, undefined, operation).chain((value) => {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) return fc.constant(value);
      const object = value as Record<string, unknown>;
      const names = [...new Set([...properties, ...Object.keys(object)])];
      const bend = names.length
        ? fc.constantFrom(...names).chain((name) =>
            fc.oneof(
              this.fuzzed((schema.properties?.[name] as JsonSchema) ?? schema.additionalProperties ?? {}, name, operation).map((bent) => ({ ...object, [name]: bent })),
              fc.constant(Object.fromEntries(Object.entries(object).filter(([key]) => key !== name))),
            ),
          )
        : fc.constant(object);
      const extra = fc.tuple(fc.oneof(hostileKey, fc.string({ maxLength: 10 })), fc.jsonValue({ maxDepth: 2 })).map(([key, extraValue]) => {
        const copy: Record<string, unknown> = { ...object };
        Object.defineProperty(copy, key, { value: extraValue, enumerable: true, configurable: true, writable: true });
        return copy;
      });
      return fc.oneof({ weight: 3, arbitrary: bend }, { weight: 1, arbitrary: extra });
    });
  }
}

/** A value as text in a URL or a header: strings as they are, anything else as JSON. */
export function asText(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value) ?? String(value);
}

/** Path segments that break routers: empty, bad escapes, encoded slashes and dots. */
const rawSegments = fc.constantFrom('', '%', '%zz', '%E4%B8', '%00', '..', '.', '%2F', '%2e%2e', 'a%2Fb', '%C0%AE%C0%AE', '%u002e', ';x=1', '%20');

/** Query strings a hand wrote: stray ampersands, bad escapes, keys without values. */
const rawQueries = fc.constantFrom('&', '&&=', '=', '%', '%zz=1', 'limit', 'limit=', 'limit=1&limit=2', 'a[b][c]=1', 'where[code][eq]', '__proto__[x]=1', 'constructor[prototype][x]=1', '%00=%00', '+=+');

/** Conditional requests, Range, content negotiation and content types, well and badly formed. */
const protocolHeaderValues: Record<string, fc.Arbitrary<string>> = {
  'if-none-match': fc.oneof(fc.constantFrom('*', '"x"', 'W/"x"', '"', 'W/', ',,,', '"a", W/"b", *', 'W/"330000-AMR-00001-1.1-csv"', `"${'x'.repeat(5000)}"`), hostileText),
  'if-modified-since': fc.oneof(
    fc.date({ min: new Date('1970-01-01T00:00:00Z'), max: new Date('2200-01-01T00:00:00Z'), noInvalidDate: true }).map((date) => date.toUTCString()),
    fc.constantFrom('0', '-1', 'Thu, 01 Jan 1970 00:00:00 GMT', 'Fri, 31 Dec 275760 00:00:00 GMT', 'yesterday', '2026-13-45', '9'.repeat(40)),
    hostileText,
  ),
  'if-range': fc.oneof(fc.constantFrom('"x"', 'W/"x"', 'Thu, 01 Jan 1970 00:00:00 GMT', 'tomorrow', '"'), hostileText),
  'if-match': fc.constantFrom('*', '"x"', 'W/"x"'),
  'if-unmodified-since': fc.constantFrom('Thu, 01 Jan 1970 00:00:00 GMT', 'garbage'),
  range: fc.oneof(
    fc.constantFrom('bytes=0-0', 'bytes=0-99', 'bytes=-1', 'bytes=-0', 'bytes=100-', 'bytes=5-1', 'bytes=0-1,4-5', 'bytes=0-1,0-1,0-1', 'bytes=99999999999999999999-', 'bytes=-99999999999999999999', 'bytes=', 'bytes=a-b', 'items=0-9', 'bytes=0-0,'.repeat(400), 'bytes=1-2;3-4', ' bytes = 0 - 1'),
    fc.tuple(fc.integer({ min: -5, max: 300_000 }), fc.integer({ min: -5, max: 300_000 })).map(([a, b]) => `bytes=${a}-${b}`),
    hostileText,
  ),
  accept: fc.oneof(fc.constantFrom('*/*', 'application/json', 'text/csv', 'application/problem+json', 'text/html', 'application/xml', 'text/csv;q=0', 'application/*;q=abc', ''), hostileText),
  'accept-encoding': fc.constantFrom('gzip', 'br', 'deflate', 'gzip;q=0', 'br;q=abc', 'identity;q=0', '*', '*;q=0', 'gzip, br, zstd', 'x-unknown', ''),
  'accept-language': fc.constantFrom('zh-CN', 'en', '*', 'xx-invalid-;;;'),
  'x-request-id': fc.oneof(fc.constantFrom('fuzz-1', 'a b', '\u00ff', '../x', 'x'.repeat(200)), hostileText),
};
export const protocolHeaders: fc.Arbitrary<Record<string, string>> = fc
  .uniqueArray(fc.constantFrom(...Object.keys(protocolHeaderValues)), { minLength: 1, maxLength: 3 })
  .chain((names) => fc.record(Object.fromEntries(names.map((name) => [name, protocolHeaderValues[name] as fc.Arbitrary<string>]))));

/** Content types a body must not come with, or malformed ones. */
const wrongJsonTypes = fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/json; charset=latin1', 'application/merge-patch+json', 'application/xml', 'application/json;;', 'application/jsonx', '*/*', 'json', 'application/json; charset=utf-8; charset=utf-16');
const wrongFormTypes = fc.constantFrom('application/json', 'text/plain', 'application/x-www-form-urlencoded; charset=latin1', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded;;');

function formBody(value: unknown): string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return percentEncode(asText(value));
  return Object.entries(value as Record<string, unknown>)
    .flatMap(([key, v]) => (Array.isArray(v) ? v : [v]).map((item) => `${percentEncode(key)}=${percentEncode(asText(item))}`))
    .join('&');
}

/** What the world adds to every request: its credentials. */
export interface RequestWorld {
  /** An `Authorization` header (or none) and the label that names it. */
  credentials(operation: Operation): fc.Arbitrary<{ label: string; authorization?: string }>;
}

/** One place a request can be bent: what it holds when valid, and when bent. */
interface Site {
  valid: fc.Arbitrary<Partial<RequestParts>>;
  bent: fc.Arbitrary<Partial<RequestParts>>;
}

interface RequestParts {
  path: Record<string, string>;
  query: string[];
  headers: Record<string, string>;
  payload: string | undefined;
  contentType: string | undefined;
}

const pair = (key: string, value: unknown) => `${percentEncode(key)}=${percentEncode(asText(value))}`;

/**
 * Requests for one operation. Each place a request can go wrong (a path parameter, a query
 * parameter, the query's extra keys, a header, the protocol headers, the body) is valid in most
 * cases, so that requests get past validation and into the handlers, and bent in one or a few;
 * the credentials are drawn on their own.
 */
export function requestsFor(operation: Operation, fuzzer: SchemaFuzzer, world: RequestWorld): fc.Arbitrary<FuzzRequest> {
  const sites: Site[] = [];
  for (const parameter of operation.parameters) {
    const { name, schema } = parameter;
    if (parameter.in === 'path') {
      sites.push({
        valid: fuzzer.valid(schema, name, operation).map((value) => ({ path: { [name]: percentEncode(asText(value)) } })),
        bent: fc.oneof({ weight: 6, arbitrary: fuzzer.bent(schema, operation).map((value) => percentEncode(asText(value))) }, { weight: 1, arbitrary: rawSegments }).map((value) => ({ path: { [name]: value } })),
      });
    } else if (parameter.in === 'query') {
      const valid = fuzzer.valid(schema, name, operation).map((value) => ({ query: [pair(name, value)] }));
      sites.push({
        valid: parameter.required ? valid : fc.oneof(fc.constant({}), valid),
        bent: fc.oneof(
          { weight: 4, arbitrary: fuzzer.bent(schema, operation).map((value) => ({ query: [pair(name, value)] })) },
          { weight: 1, arbitrary: fc.array(fuzzer.fuzzed(schema, name, operation), { minLength: 2, maxLength: 3 }).map((values) => ({ query: values.map((value) => pair(name, value)) })) },
        ),
      });
    } else if (parameter.in === 'header') {
      const hint = fuzzer.hint(operation, `header:${name}`) ?? fuzzer.valid(schema, name, operation);
      sites.push({
        valid: hint.map((value) => ({ headers: { [name]: headerBytes(asText(value)) } })),
        bent: fc.oneof(fc.constant({}), fuzzer.bent(schema, operation).map((value) => ({ headers: { [name]: headerBytes(asText(value)) } }))),
      });
    }
  }
  const extra = fuzzer.hint(operation, 'query:extra') as fc.Arbitrary<string[]> | undefined;
  sites.push({
    valid: extra ? fc.oneof(fc.constant({}), extra.map((query) => ({ query }))) : fc.constant({}),
    bent: fc.oneof(
      fc.array(fc.tuple(fc.oneof(hostileKey, fc.string({ maxLength: 10 })), hostileText), { minLength: 1, maxLength: 2 }).map((pairs) => ({ query: pairs.map(([key, value]) => pair(key, value)) })),
      rawQueries.map((raw) => ({ query: [raw] })),
    ),
  });
  sites.push({
    valid: fc.oneof({ weight: 3, arbitrary: fc.constant({}) }, { weight: 1, arbitrary: protocolHeaders.map((headers) => ({ headers })) }),
    bent: protocolHeaders.map((headers) => ({ headers })),
  });
  if (operation.body) sites.push(bodySite(operation, fuzzer));

  const indices = sites.map((_site, index) => index);
  const bentSites = fc.oneof(
    { weight: 4, arbitrary: fc.constant([] as number[]) },
    { weight: 5, arbitrary: fc.constantFrom(...indices).map((index) => [index]) },
    { weight: 2, arbitrary: fc.subarray(indices, { minLength: Math.min(2, indices.length) }) },
  );
  const parts = bentSites.chain((bent) => fc.tuple(...sites.map((site, index) => (bent.includes(index) ? site.bent : site.valid))));
  const method = operation.method === 'GET' ? fc.constantFrom('GET', 'GET', 'GET', 'HEAD') : fc.constant(operation.method);

  return fc.record({ method, parts, credentials: world.credentials(operation) }).map(({ method, parts, credentials }) => {
    const request: RequestParts = { path: {}, query: [], headers: {}, payload: undefined, contentType: undefined };
    for (const part of parts) {
      Object.assign(request.path, part.path);
      request.query.push(...(part.query ?? []));
      Object.assign(request.headers, part.headers);
      if ('payload' in part) request.payload = part.payload;
      if ('contentType' in part) request.contentType = part.contentType;
    }
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(request.headers)) headers[name] = headerBytes(value);
    if (credentials.authorization !== undefined) headers.authorization = headerBytes(credentials.authorization);
    if (request.contentType !== undefined) headers['content-type'] = request.contentType;
    const path = operation.path.replace(/\{([^}]+)\}/g, (_match, name: string) => request.path[name] ?? '');
    return {
      method,
      url: `${path}${request.query.length ? `?${request.query.join('&')}` : ''}`,
      headers,
      ...(request.payload !== undefined ? { payload: request.payload } : {}),
      credentials: credentials.label,
    };
  });
}

function bodySite(operation: Operation, fuzzer: SchemaFuzzer): Site {
  const { mediaType, schema } = operation.body as { mediaType: string; schema: JsonSchema };
  const form = mediaType === 'application/x-www-form-urlencoded';
  const serialise = (value: unknown) => (form ? formBody(value) : JSON.stringify(value));
  const rightType = form ? 'application/x-www-form-urlencoded' : 'application/json';
  const body = (payload: fc.Arbitrary<string>, contentType: fc.Arbitrary<string> = fc.constant(rightType)) => fc.record({ payload, contentType });
  return {
    valid: body(fuzzer.valid(schema, 'body', operation).map(serialise)),
    bent: fc.oneof(
      { weight: 8, arbitrary: body(fuzzer.bentObject(schema, operation).map(serialise)) },
      { weight: 1, arbitrary: body(wrongValue.map(serialise)) },
      { weight: 2, arbitrary: body(fuzzer.valid(schema, 'body', operation).map(serialise), form ? wrongFormTypes : wrongJsonTypes) },
      { weight: 1, arbitrary: body(deepJson) },
      { weight: 1, arbitrary: body(fc.constantFrom('', '{', '{"a":1,}', 'nul', '\uFEFF{}', '{"a":"\\ud800"}', '{"a":"\\u0000"}', '{"__proto__":{"polluted":1}}', '{"constructor":{"prototype":{"polluted":1}}}', '[]'.repeat(10), '1e999999', '"\\u')) },
      { weight: 1, arbitrary: fc.constant({ payload: undefined, contentType: undefined }) },
    ),
  };
}

/** A fixed seed per operation, so that each operation's cases do not depend on the others'. */
export function seedFor(base: number, name: string): number {
  let hash = base | 0;
  for (let i = 0; i < name.length; i++) hash = (Math.imul(hash, 31) + name.charCodeAt(i)) | 0;
  return hash;
}

/** Base64url of JSON, as the gateway's cursors are: for positions that are well formed but wrong. */
export const cursorOf = (position: unknown) => Buffer.from(JSON.stringify(position) ?? 'null').toString('base64url');

/**
 * Cursors a client should never have: garbage, JSON of the wrong shape, positions of the right
 * shape holding wrong values (not times, not numbers, NUL, huge), and real cursors tampered with.
 */
export function badCursors(real: readonly string[]): fc.Arbitrary<string> {
  const leaf = fc.oneof({ weight: 3, arbitrary: hostileText }, { weight: 1, arbitrary: dateTimes }, { weight: 1, arbitrary: edgeNumbers }, { weight: 1, arbitrary: fc.constantFrom(null, true, {}, []) });
  const shapes = fc.oneof(
    leaf,
    fc.tuple(leaf, leaf),
    fc.array(leaf, { minLength: 1, maxLength: 3 }),
    fc.record({ o: fc.oneof(fc.constantFrom('', 'code', '-code', 'uscc', 'station_code'), hostileText), k: fc.array(leaf, { maxLength: 3 }) }),
    fc.jsonValue({ maxDepth: 2 }),
  );
  const tampered =
    real.length > 0
      ? fc.tuple(fc.constantFrom(...real), fc.nat(), fc.constantFrom('flip', 'cut', 'decode', 'decode')).chain(([cursor, at, how]) => {
          if (how === 'flip') {
            const index = at % cursor.length;
            return fc.constant(`${cursor.slice(0, index)}${cursor[index] === 'A' ? 'B' : 'A'}${cursor.slice(index + 1)}`);
          }
          if (how === 'cut') return fc.constant(cursor.slice(0, at % cursor.length));
          let position: unknown;
          try {
            position = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
          } catch {
            return fc.constant(cursor);
          }
          if (Array.isArray(position) && position.length > 0) {
            return fc.tuple(fc.nat({ max: position.length - 1 }), leaf).map(([index, value]) => cursorOf(position.map((old: unknown, i: number) => (i === index ? value : old))));
          }
          if (position && typeof position === 'object') {
            return leaf.map((value) => cursorOf({ ...(position as object), k: [value] }));
          }
          return leaf.map(cursorOf);
        })
      : fc.constant('');
  return fc.oneof(
    { weight: 4, arbitrary: shapes.map(cursorOf) },
    { weight: 3, arbitrary: tampered },
    { weight: 1, arbitrary: fc.base64String({ maxLength: 80 }) },
    { weight: 1, arbitrary: fc.uint8Array({ minLength: 28, maxLength: 90 }).map((bytes) => Buffer.from(bytes).toString('base64url')) },
    { weight: 1, arbitrary: hostileText },
    ...(real.length ? [{ weight: 1, arbitrary: fc.constantFrom(...real) }] : []),
  );
}

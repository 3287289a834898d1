import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { defineProblem } from '../errors.js';

/** The headers whose text the gateway keeps on the audit trail and shows to people. */
export const TEXT_HEADERS = ['x-purpose', 'x-on-behalf-of'] as const;

/** How to send Chinese text in one of those headers, for its OpenAPI description. */
export function howToSendText(header: string, example: string): string {
  return (
    `Chinese text: send it as UTF-8 bytes, as curl does (\`-H '${header}: ${example}'\`), or, from clients that send only ASCII ` +
    `(browsers' fetch, Python's http.client), in the RFC 8187 form \`UTF-8''\` + the percent-encoded UTF-8 ` +
    `(\`${header}: UTF-8''${encodeURIComponent(example)}\`). A value that is not valid UTF-8 is 400 \`invalid_header\`.`
  );
}

export const InvalidHeader = defineProblem<[string]>('invalid_header', '%s', 400);

// fatal: a byte sequence that is not UTF-8 is refused, never replaced by U+FFFD.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** RFC 8187 §3.2.1 ext-value: charset (only UTF-8 is defined), an optional language tag, the value. */
const EXT_VALUE = /^utf-8'[A-Za-z0-9-]*'/i;
/** The value part: printable ASCII, with '%' only as the start of an escape (RFC 8187 §3.2.1). */
const EXT_VALUE_CHARS = /^(?:%[0-9A-Fa-f]{2}|[\x21-\x24\x26-\x7e])*$/;
/** Line breaks and other control characters have no place in one line of text (tab aside). */
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;
const NON_ASCII = /[^\x00-\x7f]/;
/** A character no wire byte gives: the value was handed in as text (app.inject), not as latin1 bytes. */
const BEYOND_LATIN1 = /[^\x00-\xff]/;

/**
 * The text a header value stands for, or null when it is not valid UTF-8 (or holds line breaks).
 * Node hands header values over as latin1, one character per byte: the bytes are decoded again as
 * UTF-8 (what curl, Go and Java send), and an RFC 8187 `UTF-8''…` value is percent-decoded (what
 * ASCII-only clients can send). Pure ASCII that is not in that form is text as it stands.
 */
export function headerText(value: string): string | null {
  let text = value;
  if (NON_ASCII.test(value) && !BEYOND_LATIN1.test(value)) {
    try {
      text = utf8.decode(Buffer.from(value, 'latin1'));
    } catch {
      return null;
    }
  }
  const ext = EXT_VALUE.exec(text);
  if (ext) {
    const encoded = text.slice(ext[0].length);
    if (!EXT_VALUE_CHARS.test(encoded)) return null;
    try {
      // decodeURIComponent throws on bytes that are not UTF-8 (ECMA-262 Decode).
      text = decodeURIComponent(encoded);
    } catch {
      return null;
    }
  }
  return CONTROL.test(text) ? null : text;
}

/** `x-on-behalf-of` as people write it: `X-On-Behalf-Of`. */
function displayName(name: string): string {
  return name.replace(/(^|-)([a-z])/g, (_match, dash: string, letter: string) => dash + letter.toUpperCase());
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The first text header whose value was not valid UTF-8, refused once the caller is known. */
    invalidTextHeader: string | null;
  }
}

/**
 * Text in headers, decoded once for every reader (the audit trail, the exchange routes, header
 * schemas with their maxLength). Decoding comes before authentication, so that the record of a
 * refused token holds the text too; a value that is not UTF-8 is dropped there and refused with
 * 400 `invalid_header` before the body is read, after the route's own scope check, so that its
 * audit record names the caller.
 */
async function textHeaders(app: FastifyInstance) {
  app.decorateRequest('invalidTextHeader', null);

  app.addHook('onRequest', (request, _reply, done) => {
    for (const name of TEXT_HEADERS) {
      const value = request.headers[name];
      if (typeof value !== 'string') continue;
      const text = headerText(value);
      if (text !== null) {
        request.headers[name] = text;
      } else {
        delete request.headers[name];
        request.invalidTextHeader ??= name;
      }
    }
    done();
  });

  app.addHook('preParsing', (request, _reply, payload, done) => {
    if (!request.invalidTextHeader) return done(null, payload);
    const name = displayName(request.invalidTextHeader);
    done(
      new InvalidHeader(
        `${name} is not one line of valid UTF-8 text. Send it as UTF-8 bytes, or as ${name}: UTF-8''<percent-encoded UTF-8> (RFC 8187).`,
      ),
    );
  });
}

export default fp(textHeaders, { name: 'text-headers', fastify: '5.x', dependencies: ['errors'] });

import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';

/**
 * U+0000, which PostgreSQL text and jsonb cannot hold, and a surrogate without its pair, which no
 * UTF-8 can carry (I-JSON, RFC 7493 §2.1, forbids both in JSON text).
 */
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** RFC 6901: `~` and `/` escaped in a JSON pointer's tokens. */
const token = (name: string) => name.replaceAll('~', '~0').replaceAll('/', '~1');

/**
 * The JSON pointer of the first key or string in `value` that holds unstorable text, or
 * undefined. Walked with a stack of its own: a body may nest deeper than the call stack.
 */
export function unstorableAt(value: unknown): string | undefined {
  const pending: Array<[unknown, string]> = [[value, '']];
  while (pending.length > 0) {
    const [current, pointer] = pending.pop() as [unknown, string];
    if (typeof current === 'string') {
      if (UNSTORABLE.test(current)) return pointer;
    } else if (Array.isArray(current)) {
      for (let i = current.length - 1; i >= 0; i--) pending.push([current[i], `${pointer}/${i}`]);
    } else if (current !== null && typeof current === 'object') {
      for (const [key, item] of Object.entries(current)) {
        if (UNSTORABLE.test(key)) return `${pointer}/${token(key)}`;
        pending.push([item, `${pointer}/${token(key)}`]);
      }
    }
  }
  return undefined;
}

/** A 400 invalid_request in the shape of a validation error, naming where the text is. */
function unstorableText(context: 'params' | 'querystring' | 'body', pointer: string) {
  return Object.assign(new Error(`${context}${pointer} holds U+0000 or an unpaired surrogate`), {
    statusCode: 400,
    validationContext: context,
    validation: [{ instancePath: pointer, keyword: 'text', message: 'must not hold U+0000 or an unpaired surrogate', params: {} }],
  });
}

/**
 * Text in the path, the query and the body must be text the database and the audit trail can
 * keep: a NUL or a lone surrogate is refused with 400 before validation, instead of failing the
 * query that would compare it (a 500) or the audit record that would hold it (a 503, after the
 * data it describes was stored). Header text is the text-headers plugin's.
 */
async function requestText(app: FastifyInstance) {
  app.addHook('preValidation', async (request: FastifyRequest) => {
    for (const context of ['params', 'querystring', 'body'] as const) {
      const pointer = unstorableAt(context === 'querystring' ? request.query : request[context]);
      if (pointer !== undefined) throw unstorableText(context, pointer);
    }
  });
}

export default fp(requestText, { name: 'request-text', fastify: '5.x', dependencies: ['errors'] });

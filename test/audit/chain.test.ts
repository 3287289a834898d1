import t from 'tap';
import canonicalize from 'canonicalize';
import { canonicalRecord, recordHash, type AuditRecord } from '../../src/audit/chain.js';

// Deterministic variety: the values a record can hold, and some it should never, but might.
const strings = ['', 'records.verify', '性能测试 bench', 'say "hi"\\n', 'tab\there', '\u0000\u001f\u007f', '😀 emoji', 'é', '\u2028\u2029', '</script>'];
const numbers = [0, -0, 1, -1, 0.1, 123.456, 1e21, 1e-7, 2 ** 53, 5e-324, 1.7976931348623157e308, 12.5];
let seed = 7;
const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
const pick = <T>(list: readonly T[]): T => list[next() % list.length] as T;
const maybe = <T>(value: T): T | null => (next() % 4 === 0 ? null : value);

function record(): Omit<AuditRecord, 'hash'> {
  return {
    id: pick(strings),
    chain_id: 'c0ffee00-0000-4000-8000-000000000000',
    seq: next(),
    prev_hash: '0'.repeat(64),
    occurred_at: new Date(next() * 1000).toISOString(),
    request_id: maybe(pick(strings)),
    client_id: maybe(pick(strings)),
    agency: maybe(pick(strings)),
    on_behalf_of: maybe(pick(strings)),
    action: pick(strings),
    resource: maybe(pick(strings)),
    provider: maybe(pick(strings)),
    purpose: maybe(pick(strings)),
    legal_basis: maybe(pick(strings)),
    grant_id: maybe(pick(strings)),
    subject_refs: maybe(Array.from({ length: next() % 4 }, () => pick(strings))),
    fields: maybe(Array.from({ length: next() % 4 }, () => pick(strings))),
    row_count: maybe(next() % 1000),
    outcome: pick(['allowed', 'denied', 'error'] as const),
    status: maybe(pick([200, 304, 400, 403, 503])),
    reason: maybe(pick(strings)),
    latency_ms: maybe(pick(numbers)),
    bytes: maybe(pick(numbers)),
    client_address: maybe(pick(strings)),
  };
}

t.test('the canonical form of a record is RFC 8785 (canonicalize) byte for byte', async (t) => {
  let same = 0;
  for (let i = 0; i < 2000; i++) {
    const content = record();
    if (canonicalRecord(content) === canonicalize(content)) same += 1;
    else t.fail(`record ${i} differs: ${JSON.stringify(content)}`);
  }
  t.equal(same, 2000);
});

t.test('a record of another shape goes through the general algorithm', async (t) => {
  const content = { ...record(), extra: { nested: [1, 'two'] } } as unknown as Omit<AuditRecord, 'hash'>;
  t.equal(canonicalRecord(content), canonicalize(content));
  const missing = { ...record() } as Partial<AuditRecord>;
  delete missing.reason;
  t.equal(canonicalRecord(missing as Omit<AuditRecord, 'hash'>), canonicalize(missing));
  t.throws(() => canonicalRecord({ ...record(), purpose: 'lone \ud800 surrogate' }), /surrogate/, 'a lone surrogate is refused, as RFC 8785 says');
  t.throws(() => canonicalRecord({ ...record(), latency_ms: Number.NaN }), /NaN/);
});

t.test('the hash leaves the record\'s own hash out', async (t) => {
  const content = record();
  t.equal(recordHash({ ...content, hash: 'x' } as AuditRecord), recordHash(content));
  t.not(recordHash({ ...content, seq: content.seq + 1 }), recordHash(content));
});

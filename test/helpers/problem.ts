import type { Test } from 'tap';

interface InjectedResponse {
  statusCode: number;
  headers: Record<string, unknown>;
  json(): any;
}

/** Assert an RFC 9457 problem with our stable code; returns the parsed body for more checks. */
export function assertProblem(t: Test, response: InjectedResponse, status: number, code: string) {
  t.equal(response.statusCode, status, `status ${status}`);
  t.match(response.headers['content-type'], /^application\/problem\+json/);
  const body = response.json();
  t.equal(body.status, status);
  t.equal(body.code, code);
  t.equal(body.type, `urn:govdata-gateway:problem:${code}`);
  t.type(body.title, 'string');
  t.type(body.detail, 'string');
  t.equal(body.request_id, response.headers['x-request-id']);
  return body;
}

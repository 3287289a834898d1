import CircuitBreaker from 'opossum';
import { Agent, errors as undiciErrors, request } from 'undici';
import type { Resource, Upstream } from '../model/catalog.js';
import { defineProblem } from '../errors.js';

export const UpstreamUnavailable = defineProblem<[string, string]>('upstream_unavailable', "The provider's system for %s did not answer usably: %s.", 502);
export const UpstreamTimeout = defineProblem<[string, number]>('upstream_timeout', "The provider's system for %s did not answer within %d ms.", 504);

interface Call {
  method: 'GET' | 'POST';
  path: string;
  body?: unknown;
}

/**
 * Calls to providers' own endpoints (proxied resources): one keep-alive agent for all, a circuit
 * breaker per resource so that a provider that is down is answered for at once instead of tying
 * up connections, timeouts from the catalog entry, and the provider's credential from the
 * environment — never the caller's token.
 */
export class UpstreamClient {
  private readonly agent = new Agent({ keepAliveTimeout: 10_000, connections: 50 });
  private readonly breakers = new Map<string, CircuitBreaker<[Upstream, Call], unknown>>();

  constructor(private readonly env: NodeJS.ProcessEnv = process.env) {}

  private breaker(resource: Resource): CircuitBreaker<[Upstream, Call], unknown> {
    let breaker = this.breakers.get(resource.code);
    if (!breaker) {
      breaker = new CircuitBreaker((upstream: Upstream, call: Call) => this.send(resource, upstream, call), {
        // The undici timeouts below decide what is too slow; the breaker counts failures.
        timeout: false,
        errorThresholdPercentage: 50,
        volumeThreshold: 5,
        resetTimeout: 10_000,
      });
      this.breakers.set(resource.code, breaker);
    }
    return breaker;
  }

  async call(resource: Resource, call: Call): Promise<unknown> {
    const upstream = resource.upstream as Upstream;
    try {
      return await this.breaker(resource).fire(upstream, call);
    } catch (error) {
      if (error instanceof UpstreamUnavailable || error instanceof UpstreamTimeout) throw error;
      if ((error as { code?: string }).code === 'EOPENBREAKER') throw new UpstreamUnavailable(resource.code, 'it failed repeatedly, calls are paused');
      throw new UpstreamUnavailable(resource.code, (error as Error).message);
    }
  }

  private async send(resource: Resource, upstream: Upstream, call: Call): Promise<unknown> {
    const credential = upstream.credential_env ? this.env[upstream.credential_env] : undefined;
    const timeout = upstream.timeout_ms ?? 5000;
    let response;
    try {
      response = await request(`${upstream.url.replace(/\/$/, '')}${call.path}`, {
        method: call.method,
        dispatcher: this.agent,
        headersTimeout: timeout,
        bodyTimeout: timeout,
        headers: {
          accept: 'application/json',
          ...(call.body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...(credential ? { authorization: `Bearer ${credential}` } : {}),
        },
        ...(call.body !== undefined ? { body: JSON.stringify(call.body) } : {}),
      });
    } catch (error) {
      if (error instanceof undiciErrors.HeadersTimeoutError || error instanceof undiciErrors.BodyTimeoutError) {
        throw new UpstreamTimeout(resource.code, timeout);
      }
      throw new UpstreamUnavailable(resource.code, (error as { code?: string }).code ?? 'the connection failed');
    }
    if (response.statusCode === 404) {
      await response.body.dump();
      return undefined;
    }
    if (response.statusCode >= 400) {
      await response.body.dump();
      throw new UpstreamUnavailable(resource.code, `it answered ${response.statusCode}`);
    }
    try {
      return await response.body.json();
    } catch (error) {
      if (error instanceof undiciErrors.BodyTimeoutError) throw new UpstreamTimeout(resource.code, timeout);
      throw new UpstreamUnavailable(resource.code, 'its answer is not JSON');
    }
  }

  async close(): Promise<void> {
    for (const breaker of this.breakers.values()) breaker.shutdown();
    await this.agent.close();
  }
}
